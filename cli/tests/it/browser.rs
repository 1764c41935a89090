//! A real browser against the daemon's gateway: Debian's Chromium, headless, driven by
//! playwright-core (`testnet/js/browser.mjs`), opens a directory listing, clicks into a video,
//! plays it and seeks 85% of the way in. The gateway's own log then shows that the seek read
//! only the blocks from the seek point on: the stretch between what was buffered from the front
//! and the seek point was never read. Screenshots of the
//! listing, the playing video and the video after the seek are kept in `$CAIRN_ARTIFACTS/browser`
//! (default `$CAIRN_CACHE/artifacts/browser`).
//!
//! The video (`testnet/media/make_video.py`: 360 s of VP8 at 1 Mbit/s, a keyframe a second, the
//! seek index at the front) is rendered once per machine and cached in `$CAIRN_CACHE/media`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cairn;
use crate::daemon::{wait_for, Daemon};

/// Where the browser seeks to, as a fraction of the duration: far enough in that the stretch
/// before it lies past whatever Chromium buffers from the front before the seek.
const SEEK: f64 = 0.85;

fn cache_dir() -> PathBuf {
    std::env::var_os("CAIRN_CACHE")
        .map_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cairn"), PathBuf::from)
}

fn workspace() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from).join("..")
}

/// The venv's python (with imageio-ffmpeg), node with playwright-core, and Chromium; `None`
/// with the reason when one is missing.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let python = std::env::var_os("CAIRN_KUBO_PY").map_or_else(|| cache_dir().join("venv/bin/python"), PathBuf::from);
    let has_ffmpeg =
        Command::new(&python).args(["-c", "import imageio_ffmpeg"]).output().is_ok_and(|o| o.status.success());
    if !has_ffmpeg {
        return Err(format!("{} cannot import imageio_ffmpeg", python.display()));
    }
    let js = workspace().join("testnet/js");
    if !js.join("node_modules/playwright-core").is_dir() {
        return Err("testnet/js/node_modules/playwright-core is missing".into());
    }
    let chromium = std::env::var_os("CAIRN_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        return Err(format!("{} is missing", chromium.display()));
    }
    Ok((python, js))
}

/// The test video, rendered on first use.
fn video(python: &Path) -> PathBuf {
    let dir = cache_dir().join("media");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seek-360s-1000k.webm");
    if !path.exists() {
        let out = Command::new(python)
            .arg(workspace().join("testnet/media/make_video.py"))
            .arg(&path)
            .args(["--seconds", "360", "--kbps", "1000", "--fps", "15"])
            .output()
            .unwrap();
        assert!(out.status.success(), "make_video.py: {}", String::from_utf8_lossy(&out.stderr));
    }
    path
}

/// `(start, sent, blocks_read)` of each file response in the gateway's debug log.
fn served(log: &str) -> Vec<(u64, u64, u64)> {
    let field = |line: &str, key: &str| -> Option<u64> {
        let at = line.find(&format!(" {key}="))? + key.len() + 2;
        line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    log.lines()
        .filter(|l| l.contains("file bytes served"))
        .filter_map(|l| Some((field(l, "start")?, field(l, "sent")?, field(l, "blocks_read")?)))
        .collect()
}

#[test]
#[allow(clippy::print_stderr)] // the skip notice is for the person running the tests
fn a_browser_lists_plays_and_seeks_reading_only_what_it_plays() {
    let (python, js) = match tools() {
        Ok(t) => t,
        Err(why) => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(!ci, "{why} under CI: run scripts/setup.sh");
            eprintln!("SKIPPED: {why} (scripts/setup.sh installs it)");
            return;
        }
    };
    let video = video(&python);
    let size = std::fs::metadata(&video).unwrap().len();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    let run = |args: &[&str]| {
        let out = cairn().arg("--repo").arg(&repo).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["init", "--profile", "test"]);
    let site = tmp.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::copy(&video, site.join("video.webm")).unwrap();
    std::fs::write(site.join("readme.txt"), "a video to seek in\n").unwrap();
    let dir = run(&["add", "-r", "-Q", site.to_str().unwrap()]).trim().to_owned();

    let log_path = tmp.path().join("daemon.log");
    let daemon = Daemon::start_logging(&repo, Some(("cairn_gateway=debug", &log_path)));
    let gateway = wait_for(&repo.join("gateway"));
    let artifacts = std::env::var_os("CAIRN_ARTIFACTS").map_or_else(|| cache_dir().join("artifacts"), PathBuf::from);
    let shots = artifacts.join("browser");
    let out = Command::new("node")
        .arg(js.join("browser.mjs"))
        .args(["--listing", &format!("{gateway}/ipfs/{dir}/"), "--file", "video.webm", "--no-cache"])
        .args(["--seek", &SEEK.to_string()])
        .arg("--out")
        .arg(&shots)
        .output()
        .unwrap();
    drop(daemon);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser.mjs failed:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(report.trim()).unwrap();

    // The browser found the file in the listing, clicked into it, played it and seeked.
    assert_eq!(r["listed"], true);
    assert!(r["clicked_url"].as_str().unwrap().ends_with(&format!("/ipfs/{dir}/video.webm")), "{r}");
    let duration = r["duration"].as_f64().unwrap();
    assert!((duration - 360.0).abs() < 1.0, "{r}");
    assert!(r["time_before_seek"].as_f64().unwrap() >= 1.0, "{r}");
    assert!(r["time_after_seek"].as_f64().unwrap() >= r["seek_to"].as_f64().unwrap() + 1.0, "{r}");
    for shot in ["listing.png", "playing.png", "seeked.png"] {
        assert!(std::fs::metadata(shots.join(shot)).is_ok_and(|m| m.len() > 1000), "no screenshot {shot}");
    }
    // The browser asked for a range starting just before the seek point (the keyframe there).
    let ranges: Vec<u64> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["range"].as_str()?.strip_prefix("bytes=")?.split('-').next()?.parse().ok())
        .collect();
    let seek_byte = (size as f64 * SEEK) as u64;
    let near_seek = |start: u64| start <= seek_byte && start + (2 << 20) >= seek_byte;
    assert!(ranges.iter().copied().any(near_seek), "ranges asked: {ranges:?} of {size}");

    // The gateway's log: a response from the seek point on, and nothing read in the stretch
    // between what the responses before the seek point sent (Chromium's first, open-ended
    // request runs until it aborts it, as far as its buffers and the socket's take: 9 to 30 MB
    // in our runs, depending on the machine's load) and the seek point.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let responses = served(&log);
    let seek_start = responses
        .iter()
        .filter(|&&(start, sent, _)| near_seek(start) && sent > 0)
        .map(|r| r.0)
        .min()
        .unwrap_or_else(|| panic!("no response from the seek point at {seek_byte}: {responses:?}"));
    let buffered = responses.iter().filter(|r| r.0 < seek_start).map(|r| r.0 + r.1).max().unwrap_or(0);
    assert!(
        buffered + (1 << 20) <= seek_start,
        "the responses before the seek sent up to byte {buffered}, too close to the seek point \
         {seek_start} to show a skipped stretch: {responses:?}"
    );
    // And each response read only the blocks behind the bytes it sent: the 256 KiB leaves,
    // the root, and the chunks waiting in the gateway's body channel (8) when Chromium left.
    for &(start, sent, blocks) in &responses {
        assert!(
            blocks <= sent.div_ceil(256 << 10) + 8 + 2,
            "the response from {start} sent {sent} bytes but read {blocks} blocks: {responses:?}"
        );
    }
    // How far the browser buffers before it seeks depends on the machine's load; what it
    // must never get is a whole file's worth (the skipped stretch above is the real check).
    let read: u64 = responses.iter().map(|r| r.1).sum();
    assert!(read < size, "the gateway sent {read} of {size} bytes: the whole file, not ranges");
}
