//! Progress bars on stderr, shown only to a person watching a terminal.
//!
//! A bar is hidden when stderr is not a terminal (scripts, tests, pipes) or when the
//! command was asked to be quiet, so it never mixes into output meant for a program.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether bars may be drawn: stderr is a terminal and the user did not ask for quiet.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A bar over `total` bytes with rate and ETA; hidden unless `show`.
pub fn bytes(total: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{bytes:>10} / {total_bytes:<10} [{wide_bar}] {binary_bytes_per_sec:>12} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A spinner counting bytes when the total is not known (standard input, a download), with
/// room for a message (the peer count); hidden unless `show`.
pub fn spinner(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {bytes:>10} {binary_bytes_per_sec:>12} {elapsed} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A transfer through the daemon (`get`, `cat`): a [`spinner`] with bytes and rate, whose
/// message is the daemon's peer count and how many of them delivered blocks lately, read
/// before the first draw and then every second.
/// Dropping it stops the refresh and clears the bar.
pub struct Online {
    bar: ProgressBar,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Online {
    /// Starts the bar and its refresher (hidden, with no refresher, unless `show`).
    pub fn start(ctx: &crate::Ctx, show: bool) -> Online {
        let bar = spinner(show);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = if show { crate::api::client(ctx).ok().flatten() } else { None };
        let watcher = client.map(|c| {
            let peers = move |bar: &ProgressBar| {
                if let Ok(v) = c.json("bitswap/stat", "") {
                    let n = v.get("Peers").and_then(serde_json::Value::as_array).map_or(0, Vec::len);
                    let sending = v.get("SendingPeers").and_then(serde_json::Value::as_u64).unwrap_or(0);
                    bar.set_message(format!("{n} peer{}, {sending} sending", if n == 1 { "" } else { "s" }));
                }
            };
            peers(&bar);
            bar.tick();
            let (bar, done) = (bar.clone(), done.clone());
            std::thread::spawn(move || {
                let mut last = std::time::Instant::now();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if last.elapsed() >= Duration::from_secs(1) {
                        peers(&bar);
                        last = std::time::Instant::now();
                    }
                }
            })
        });
        Online { bar, done, watcher }
    }

    /// The bar, to wrap the transfer's reader or writer.
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl Drop for Online {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        self.bar.finish_and_clear();
    }
}
