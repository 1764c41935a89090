//! Token buckets for the bandwidth caps (`Swarm.RateLimit.Upload` and `.Download`).
//!
//! A bucket fills at `rate` bytes a second up to one second's worth. Work may start while the
//! bucket holds anything and takes what it uses afterwards, so the bucket can go below zero:
//! a large block is never refused for being larger than the bucket, and the average rate
//! still holds because the debt is paid before anything else starts.
//!
//! Also [`PerSender`]: a count of events per sender in a sliding window, for gossipsub.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// A byte-rate cap.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes a second.
    pub fn new(rate: u64, now: Instant) -> TokenBucket {
        TokenBucket { rate: rate as f64, tokens: rate as f64, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        self.at = now;
    }

    /// Whether work may start now.
    pub fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens > 0.0
    }

    /// Bytes that may go now (0 while in debt).
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens.max(0.0) as u64
    }

    /// Returns `bytes` taken ahead and not used.
    pub fn give(&mut self, bytes: u64, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + bytes as f64).min(self.rate);
    }

    /// Takes `bytes` that were used.
    pub fn take(&mut self, bytes: u64, now: Instant) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_average_rate_holds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        // Work of 400 bytes starts whenever the bucket allows, over ten simulated seconds.
        let mut sent = 0u64;
        for ms in (0..10_000).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            if b.ready(now) {
                b.take(400, now);
                sent += 400;
            }
        }
        // One second's burst plus ten seconds at the rate, give or take one piece.
        assert!((10_000..=11_400).contains(&sent), "{sent}");
        // A piece larger than the bucket still goes, and then nothing for a while.
        let mut b = TokenBucket::new(100, t0);
        assert!(b.ready(t0));
        b.take(1000, t0);
        assert!(!b.ready(t0 + Duration::from_secs(5)));
        assert!(b.ready(t0 + Duration::from_millis(10_100)));
    }
}

/// A budget of bytes over a sliding window (a day for [`Budget::daily`]): spent once the
/// bytes taken within the window reach the limit.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    window: Duration,
    taken: std::collections::VecDeque<(Instant, u64)>,
    sum: u64,
}

impl Budget {
    /// `limit` bytes per 24 hours.
    pub fn daily(limit: u64) -> Budget {
        Budget::new(limit, Duration::from_secs(86_400))
    }

    /// `limit` bytes per `window`.
    pub fn new(limit: u64, window: Duration) -> Budget {
        Budget { limit, window, taken: std::collections::VecDeque::new(), sum: 0 }
    }

    /// Records `bytes` sent at `now`.
    pub fn take(&mut self, bytes: u64, now: Instant) {
        self.taken.push_back((now, bytes));
        self.sum += bytes;
    }

    /// Bytes the window's budget still allows at `now`.
    pub fn left(&mut self, now: Instant) -> u64 {
        while let Some((t, b)) = self.taken.front().copied() {
            if now.saturating_duration_since(t) < self.window {
                break;
            }
            self.taken.pop_front();
            self.sum -= b;
        }
        self.limit.saturating_sub(self.sum)
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn a_budget_is_spent_then_renews_as_the_window_slides() {
        let t0 = Instant::now();
        let mut b = Budget::new(1000, Duration::from_secs(60));
        assert!(b.left(t0) > 0);
        b.take(600, t0);
        assert!(b.left(t0) > 0);
        b.take(500, t0 + Duration::from_secs(30));
        assert_eq!(b.left(t0 + Duration::from_secs(30)), 0);
        assert!(b.left(t0 + Duration::from_secs(61)) > 0, "the first 600 bytes left the window");
        assert_eq!(b.sum, 500);
    }
}

/// Events per sender in a sliding window (gossipsub messages per signed source), for a bounded
/// number of senders. Anyone can make new identities: past `max_senders` senders active in
/// the last window, new senders are refused until old ones have been quiet for a window.
#[derive(Debug)]
pub struct PerSender {
    limit: usize,
    window: Duration,
    max_senders: usize,
    rates: HashMap<PeerId, VecDeque<Instant>>,
    /// When `rates` was last swept for senders quiet for a whole window.
    swept: Option<Instant>,
}

impl PerSender {
    /// At most `limit` events per sender in any `window`, for at most `max_senders` senders.
    pub fn new(limit: usize, window: Duration, max_senders: usize) -> PerSender {
        PerSender { limit, window, max_senders, rates: HashMap::new(), swept: None }
    }

    /// Whether `source` may have another event now (and counts it).
    pub fn allow(&mut self, source: PeerId, now: Instant) -> bool {
        if self.rates.len() >= self.max_senders && !self.rates.contains_key(&source) {
            // At most one sweep a second: a stream of new identities cannot make every event
            // cost a pass over the table.
            if self.swept.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
                self.swept = Some(now);
                let window = self.window;
                self.rates.retain(|_, times| times.back().is_some_and(|t| now.saturating_duration_since(*t) <= window));
            }
            if self.rates.len() >= self.max_senders {
                return false;
            }
        }
        let times = self.rates.entry(source).or_default();
        while times.front().is_some_and(|t| now.saturating_duration_since(*t) > self.window) {
            times.pop_front();
        }
        if times.len() >= self.limit {
            return false;
        }
        times.push_back(now);
        true
    }

    /// Senders tracked now.
    pub fn tracked(&self) -> usize {
        self.rates.len()
    }

    /// Whether `source` is tracked now.
    pub fn tracks(&self, source: &PeerId) -> bool {
        self.rates.contains_key(source)
    }
}
