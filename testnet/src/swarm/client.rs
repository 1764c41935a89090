//! A reader: one HTTP GET of the file from a gateway, timed, checked byte for byte, and
//! optionally paced like a video player.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::scenario::Stream;

/// What a reader saw.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Seconds from the request to the first body byte.
    pub ttfb_s: Option<f64>,
    /// Seconds from the request to the last byte, when the whole file came and matched.
    pub complete_s: Option<f64>,
    /// Body bytes received.
    pub bytes: u64,
    /// Why the read failed, if it did.
    pub error: Option<String>,
    /// For a stream: seconds from the request until playback started.
    pub startup_s: Option<f64>,
    /// For a stream: times playback stalled after it had started.
    pub rebuffers: u32,
    /// For a stream: seconds spent stalled after playback started.
    pub stalled_s: f64,
}

/// The expected file, generated the same way the harness made it.
pub trait Expected: Sync {
    /// Compares `got` with the file's bytes at `offset`.
    fn matches(&self, offset: u64, got: &[u8]) -> bool;
}

/// Reads `http://{addr}/ipfs/{cid}` to its end (connecting from whichever network namespace
/// the calling thread is in). `stream` paces the reads as a player would; `deadline` bounds
/// the whole read.
pub fn read_file(
    addr: SocketAddr,
    cid: &str,
    len: u64,
    expected: &dyn Expected,
    stream: Option<Stream>,
    deadline: Instant,
) -> Reading {
    let start = Instant::now();
    let mut player = stream.map(Player::new);
    let mut reading = Reading::default();
    if let Err(e) = fetch(addr, cid, len, expected, &mut player, deadline, start, &mut reading) {
        reading.error = Some(format!("{e:#}"));
    }
    if let Some(p) = player {
        reading.startup_s = p.started.map(|t| t.duration_since(start).as_secs_f64());
        reading.rebuffers = p.rebuffers;
        reading.stalled_s = p.stalled.as_secs_f64();
    }
    reading
}

#[allow(clippy::too_many_arguments)]
fn fetch(
    addr: SocketAddr,
    cid: &str,
    len: u64,
    expected: &dyn Expected,
    player: &mut Option<Player>,
    deadline: Instant,
    start: Instant,
    reading: &mut Reading,
) -> anyhow::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let mut sock = TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(10)))
        .with_context(|| format!("connecting to {addr}"))?;
    sock.set_nodelay(true)?;
    write!(sock, "GET /ipfs/{cid} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n")?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    // The head, and whatever part of the body came with it.
    let body_start = loop {
        sock.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))?;
        let n = sock.read(&mut buf).context("reading the response head")?;
        if n == 0 {
            bail!("the connection closed before the response head");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > 64 * 1024 {
            bail!("the response head is too long");
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).to_string();
    let status = text.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("status {status}: {}", text.lines().next().unwrap_or(""));
    }
    let content_length = text
        .lines()
        .find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim())
        })
        .and_then(|v| v.parse::<u64>().ok());
    if content_length != Some(len) {
        bail!("Content-Length {content_length:?}, expected {len}");
    }
    let take = |chunk: &[u8], reading: &mut Reading, player: &mut Option<Player>| -> anyhow::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if reading.ttfb_s.is_none() {
            reading.ttfb_s = Some(now.duration_since(start).as_secs_f64());
        }
        if !expected.matches(reading.bytes, chunk) {
            bail!("the bytes at offset {} differ from the file", reading.bytes);
        }
        let before = reading.bytes;
        reading.bytes += chunk.len() as u64;
        if let Some(p) = player.as_mut() {
            p.arrived(now, before, reading.bytes, len);
        }
        Ok(())
    };
    let first = head[body_start..].to_vec();
    take(&first, reading, player)?;
    while reading.bytes < len {
        if let Some(p) = player.as_mut() {
            // A player holds at most its buffer's worth ahead of the playback position.
            if let Some(wait) = p.wait_before_reading(Instant::now(), reading.bytes) {
                std::thread::sleep(wait);
                continue;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("timed out after {} of {len} bytes", reading.bytes);
        }
        sock.set_read_timeout(Some(left))?;
        let want = buf.len().min((len - reading.bytes) as usize);
        let n = sock.read(&mut buf[..want]).with_context(|| format!("reading after {} bytes", reading.bytes))?;
        if n == 0 {
            bail!("the connection closed after {} of {len} bytes", reading.bytes);
        }
        take(&buf[..n], reading, player)?;
    }
    reading.complete_s = Some(start.elapsed().as_secs_f64());
    Ok(())
}

/// A video player's buffer: it starts once `startup_buffer_s` of media has arrived, plays at
/// the bitrate, stalls (a rebuffer) when the bytes for the playback position have not
/// arrived, and resumes once `startup_buffer_s` is buffered again or the file is complete.
#[derive(Debug)]
struct Player {
    /// Bytes per second of media.
    rate: f64,
    startup_bytes: f64,
    max_ahead_bytes: f64,
    /// When playback (first) started.
    started: Option<Instant>,
    /// Where playback resumed last, and at which media position (bytes).
    resumed: Option<(Instant, f64)>,
    /// Stalled since (after having started).
    stalled_since: Option<Instant>,
    rebuffers: u32,
    stalled: Duration,
    complete: bool,
}

impl Player {
    fn new(s: Stream) -> Player {
        let rate = s.bitrate_mbit * 1e6 / 8.0;
        Player {
            rate,
            startup_bytes: rate * s.startup_buffer_s,
            max_ahead_bytes: rate * s.max_buffer_s,
            started: None,
            resumed: None,
            stalled_since: None,
            rebuffers: 0,
            stalled: Duration::ZERO,
            complete: false,
        }
    }

    /// The media position (bytes) being played at `now`, with what has arrived so far.
    fn position(&self, now: Instant) -> f64 {
        match (self.resumed, self.stalled_since) {
            (Some((_, pos)), Some(_)) => pos,
            (Some((at, pos)), None) => pos + now.duration_since(at).as_secs_f64() * self.rate,
            (None, _) => 0.0,
        }
    }

    /// Brings the state up to `now`, knowing `have` bytes had arrived before this moment.
    fn advance(&mut self, now: Instant, have: u64) {
        if self.stalled_since.is_none() {
            if let Some((at, pos)) = self.resumed {
                // Playing: did it run out before now?
                let run_out = at + Duration::from_secs_f64(((have as f64 - pos) / self.rate).max(0.0));
                if run_out < now && !self.complete {
                    self.resumed = Some((run_out, have as f64));
                    self.stalled_since = Some(run_out);
                    self.rebuffers += 1;
                }
            }
        }
    }

    /// `have` bytes have arrived at `now`, of which `before` had arrived earlier.
    fn arrived(&mut self, now: Instant, before: u64, have: u64, len: u64) {
        self.advance(now, before);
        self.complete = have >= len;
        let buffered = have as f64 - self.position(now);
        let ready = buffered >= self.startup_bytes || self.complete;
        if self.started.is_none() {
            if ready {
                self.started = Some(now);
                self.resumed = Some((now, 0.0));
            }
        } else if let (Some(since), true) = (self.stalled_since, ready) {
            self.stalled += now.duration_since(since);
            let pos = self.position(now);
            self.resumed = Some((now, pos));
            self.stalled_since = None;
        }
    }

    /// How long to wait before reading more, when the buffer is full.
    fn wait_before_reading(&self, now: Instant, have: u64) -> Option<Duration> {
        let ahead = have as f64 - self.position(now);
        (self.started.is_some() && self.stalled_since.is_none() && ahead > self.max_ahead_bytes)
            .then(|| Duration::from_secs_f64(((ahead - self.max_ahead_bytes) / self.rate).clamp(0.005, 0.5)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Stream {
        Stream { bitrate_mbit: 8.0, startup_buffer_s: 1.0, max_buffer_s: 30.0 }
    }

    #[test]
    fn a_player_fed_faster_than_it_plays_never_stalls() {
        let t0 = Instant::now();
        let mut p = Player::new(stream());
        // 1 MB/s media, 2 MB/s arrival for 10 s.
        for i in 1..=100u64 {
            p.arrived(t0 + Duration::from_millis(i * 100), (i - 1) * 200_000, i * 200_000, 20_000_000);
        }
        assert_eq!(p.started, Some(t0 + Duration::from_millis(500)));
        assert_eq!(p.rebuffers, 0);
    }

    #[test]
    fn a_gap_in_arrivals_is_one_rebuffer_of_the_right_length() {
        let t0 = Instant::now();
        let mut p = Player::new(stream());
        let len = 50_000_000;
        // 2 MB arrive at once; then nothing for 5 s; then plenty.
        p.arrived(t0, 0, 2_000_000, len);
        assert_eq!(p.started, Some(t0));
        p.arrived(t0 + Duration::from_secs(5), 2_000_000, 3_000_000, len);
        // It ran dry at 2 s and stalled until 5 s, when 1 s of media is buffered again.
        assert_eq!(p.rebuffers, 1);
        assert!((p.stalled.as_secs_f64() - 3.0).abs() < 0.01, "{:?}", p.stalled);
        p.arrived(t0 + Duration::from_millis(5500), 3_000_000, 20_000_000, len);
        assert_eq!(p.rebuffers, 1);
    }
}
