//! Crash safety: `cairn add` killed with SIGKILL at random moments never leaves a damaged
//! repo or a pin whose DAG is incomplete.
//!
//! A repo holds a small pinned baseline. Then, round after round, `cairn add -Q` of a new
//! 144 MiB pseudo-random file (new seed, so every block is new) is killed after a random delay
//! between zero and 1.25 times the duration of a clean add of the same size, measured first.
//! After every kill:
//! - `repo verify` passes (every stored block hashes to its key);
//! - `pin ls` succeeds, still holds the baseline, and any other pin is this round's file, whose
//!   `cat` gives back exactly its bytes (so the whole DAG is there);
//! - an add that exited by itself printed the root it pinned.
//!
//! Every third round the new pin is removed and `repo gc` must bring the repo back to the
//! baseline's object count: blocks a killed add left behind are all collectable, and the
//! baseline still reads back. The rounds are classified (killed before writing, killed
//! mid-write with blocks stored but no pin, killed after pinning, finished), and the test
//! asserts that kills landed both mid-write and after completion, so it cannot pass by
//! killing every add before it starts or after it ends. A clean add at the end must work.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cairn;

/// Rounds of add-and-kill.
const ROUNDS: u64 = 24;
/// Size of the file each round adds. Block writes reach disk at memtable flushes (64 MiB
/// each, see `node/src/store/rocks.rs`), so the file spans more than two of them: a kill in
/// the middle then leaves stored blocks without a pin, the case this test is about.
const FILE_BYTES: u64 = 144 << 20;
/// How often the extra pins are dropped and the repo collected.
const GC_EVERY: u64 = 3;
const SIGKILL: i32 = 9;

/// xorshift64*: deterministic bytes and delays, no `rand` needed.
struct Prng(u64);

impl Prng {
    fn new(seed: u64) -> Prng {
        Prng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn write_random(path: &Path, len: u64, seed: u64) {
    let mut rng = Prng::new(seed);
    let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
        }
        out.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
}

/// Runs `cairn --repo REPO ARGS...`, which must succeed; returns stdout.
fn ok(repo: &Path, args: &[&str]) -> String {
    let out = cairn().arg("--repo").arg(repo).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "cairn {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn cat(repo: &Path, cid: &str) -> Vec<u8> {
    let out = cairn().arg("--repo").arg(repo).args(["cat", cid]).output().unwrap();
    assert!(out.status.success(), "cat {cid} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn verify(repo: &Path, when: &str) {
    let out = cairn().arg("--repo").arg(repo).args(["repo", "verify", "-q"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("verified repo integrity"),
        "{when}: repo verify failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The recursive and direct pins (`pin ls` may also list indirect ones; those are blocks
/// under a recursive pin, which `cat` of that root reads anyway).
fn roots(repo: &Path) -> Vec<String> {
    let mut roots = Vec::new();
    for line in ok(repo, &["pin", "ls"]).lines() {
        let mut parts = line.split_whitespace();
        let (Some(cid), Some(kind)) = (parts.next(), parts.next()) else { panic!("pin ls line {line:?}") };
        match kind {
            "recursive" | "direct" => roots.push(cid.to_owned()),
            "indirect" => {}
            other => panic!("pin ls: unknown pin type {other:?} in {line:?}"),
        }
    }
    roots.sort();
    roots
}

fn num_objects(repo: &Path) -> u64 {
    let out = ok(repo, &["repo", "stat"]);
    out.lines()
        .find_map(|l| l.strip_prefix("NumObjects:"))
        .unwrap_or_else(|| panic!("no NumObjects in {out:?}"))
        .trim()
        .parse()
        .unwrap()
}

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Killed before a block was stored.
    KilledBeforeWrite,
    /// Killed with blocks stored but nothing pinned.
    KilledMidWrite,
    /// Killed after the pin was written (before the process exited).
    KilledAfterPin,
    /// The add finished before the kill.
    Finished,
}

struct Spawned {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Spawns `cairn add -Q FILE` and SIGKILLs it after `delay` unless it exits first.
fn add_and_kill(repo: &Path, file: &Path, delay: Duration) -> Spawned {
    let start = Instant::now();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .env("CAIRN_PATH", "/nonexistent/cairn-test-repo")
        .arg("--repo")
        .arg(repo)
        .args(["add", "-Q"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() >= delay {
            // Child::kill is SIGKILL. It may race with a normal exit; the status tells which.
            child.kill().unwrap();
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    Spawned {
        status: out.status,
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

#[test]
#[allow(clippy::print_stderr)] // the round summary is for the person reading a failure
fn sigkill_during_add_never_damages_the_repo() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let input = tmp.path().join("input.bin");
    ok(&repo, &["init", "--profile", "test"]);

    // The baseline: a small tree with a multi-block file; it must survive everything.
    let base = tmp.path().join("base");
    fs::create_dir_all(base.join("sub")).unwrap();
    write_random(&base.join("multi.bin"), (1 << 20) + 3, 1);
    write_random(&base.join("sub/small.txt"), 100, 2);
    let base_root = ok(&repo, &["add", "-Q", "-r", base.to_str().unwrap()]).trim().to_owned();
    let base_files: Vec<(String, Vec<u8>)> = ["multi.bin", "sub/small.txt"]
        .iter()
        .map(|f| (format!("{base_root}/{f}"), fs::read(base.join(f)).unwrap()))
        .collect();
    let check_base = |when: &str| {
        for (path, bytes) in &base_files {
            assert!(cat(&repo, path) == *bytes, "{when}: baseline {path} reads back wrong");
        }
    };
    let base_objects = num_objects(&repo);
    assert_eq!(roots(&repo), vec![base_root.clone()]);

    // How long one clean add of this size takes here, start to exit.
    write_random(&input, FILE_BYTES, 999);
    let clean = add_and_kill(&repo, &input, Duration::from_secs(120));
    assert!(clean.status.success(), "clean add failed: {}", clean.stderr);
    let full = clean.elapsed;
    ok(&repo, &["pin", "rm", clean.stdout.trim()]);
    ok(&repo, &["repo", "gc"]);
    assert_eq!(num_objects(&repo), base_objects, "gc after the clean add");

    let mut rng = Prng::new(42);
    let mut outcomes = Vec::new();
    let mut objects_before = base_objects;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
        let mut delay = full.mul_f64(1.25 * rng.unit());
        // The last rounds make sure both kinds of ending happen.
        if round + 4 >= ROUNDS && count(Outcome::KilledMidWrite) == 0 {
            delay = full.mul_f64(0.6);
        } else if round + 2 >= ROUNDS && count(Outcome::Finished) == 0 {
            delay = full * 3;
        }
        write_random(&input, FILE_BYTES, 1000 + round);
        let run = add_and_kill(&repo, &input, delay);
        let when = format!("round {round} (delay {delay:?}, ran {:?})", run.elapsed);
        let killed = match (run.status.success(), run.status.signal()) {
            (true, _) => false,
            (false, Some(SIGKILL)) => true,
            _ => panic!("{when}: add failed by itself ({}): {}", run.status, run.stderr),
        };

        verify(&repo, &when);
        let pins = roots(&repo);
        assert!(pins.contains(&base_root), "{when}: the baseline pin is gone: {pins:?}");
        let new: Vec<&String> = pins.iter().filter(|p| **p != base_root).collect();
        assert!(new.len() <= 1, "{when}: unexpected pins {new:?}");
        if let Some(root) = new.first() {
            assert!(
                cat(&repo, root) == fs::read(&input).unwrap(),
                "{when}: pinned {root} does not read back as the file"
            );
        }
        if !killed {
            let printed = run.stdout.trim();
            assert_eq!(new.first().map(|s| s.as_str()), Some(printed), "{when}: finished add printed {printed:?}");
        }
        let objects = num_objects(&repo);
        let outcome = match (killed, new.is_empty()) {
            (false, _) => Outcome::Finished,
            (true, false) => Outcome::KilledAfterPin,
            (true, true) if objects > objects_before => Outcome::KilledMidWrite,
            (true, true) => Outcome::KilledBeforeWrite,
        };
        assert!(objects >= objects_before, "{when}: objects went from {objects_before} to {objects}");
        outcomes.push(outcome);
        eprintln!("{when}: {outcome:?}, {objects} objects");

        if let Some(root) = new.first() {
            ok(&repo, &["pin", "rm", root]);
        }
        objects_before = objects;
        if round % GC_EVERY == GC_EVERY - 1 || round + 1 == ROUNDS {
            ok(&repo, &["repo", "gc"]);
            assert_eq!(num_objects(&repo), base_objects, "{when}: gc left crash leftovers behind");
            assert_eq!(roots(&repo), vec![base_root.clone()], "{when}: pins after gc");
            check_base(&when);
            objects_before = base_objects;
        }
    }
    let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
    eprintln!(
        "{ROUNDS} rounds in {:?} (clean add {full:?}): {} before write, {} mid-write, {} after pin, {} finished",
        started.elapsed(),
        count(Outcome::KilledBeforeWrite),
        count(Outcome::KilledMidWrite),
        count(Outcome::KilledAfterPin),
        count(Outcome::Finished)
    );
    assert!(count(Outcome::KilledMidWrite) >= 1, "no kill landed mid-write: {outcomes:?}");
    assert!(count(Outcome::Finished) + count(Outcome::KilledAfterPin) >= 1, "no add got to its pin: {outcomes:?}");

    // A clean add afterwards works and reads back.
    write_random(&input, FILE_BYTES / 4, 5000);
    let root = ok(&repo, &["add", "-Q", input.to_str().unwrap()]).trim().to_owned();
    assert!(cat(&repo, &root) == fs::read(&input).unwrap(), "the final add does not read back");
    verify(&repo, "after the final add");
    check_base("at the end");
}
