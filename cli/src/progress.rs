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
