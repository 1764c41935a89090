#!/usr/bin/env python3
"""Renders a synthetic test-pattern WebM for the gateway's real-browser media test.

    PYTHON testnet/media/make_video.py OUT.webm [--seconds 360] [--kbps 1000] [--fps 15]

Needs PyPI's `imageio-ffmpeg` (pinned in testnet/kubo/requirements.txt, installed by
scripts/setup.sh into $CAIRN_CACHE/venv); its bundled static ffmpeg does the work, so no system
ffmpeg and no fonts are needed.

What the file is, and why:
  * ffmpeg's lavfi `testsrc` pattern at 320x240, whose built-in seven-segment counter shows the
    running time in hundredths of a second (e.g. "6748" at 67.48 s), so a screenshot tells
    where playback is. Light temporal noise (fixed seed) on top keeps the encoder busy, so the
    bitrate stays near the target all the way through instead of collapsing on a static
    picture: byte offset is then roughly proportional to time.
  * VP8 (libvpx) in constant-bitrate mode, single-threaded, no audio track.
  * A keyframe every second exactly (GOP = fps, scene-cut keyframes off), so a seek lands on
    a keyframe at most 1 s before the target.
  * The Cues (the seek index) moved to the front of the file (`-cues_to_front 1`), so a browser
    learns every keyframe's byte offset from the first request and never has to fetch the end
    of the file to seek.
  * Deterministic: same ffmpeg build, same arguments, same bytes (single-threaded encoder,
    fixed noise seed, `-fflags +bitexact`, no metadata).

Why the defaults (360 s at 1000 kbit/s, 15 fps: 45 MB, about 30 s to render on one core): the
browser test seeks 85% of the way in and wants the bytes between what Chromium buffered first
and the seek point never to leave the gateway. Chromium reads about 3-4 MiB ahead at 1 Mbit/s
(more at higher bitrates), but its first request is open-ended (`bytes=0-`) and merely stalled,
so the gateway keeps writing until Chromium's buffers and the loopback socket's are full: 9-13
MB from offset 0 were sent in quiet runs before Chromium aborted that request at the seek, and
up to 30 MB on a loaded machine. The seek point, 38 MB in, stays clear of that; a 15 MB file
does not. A lower fps only makes rendering cheaper; keyframes stay one second apart.

Prints the output path on success; on failure, a message on stderr and exit status 1 (2 for
bad usage).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time


def die(msg, code=1):
    print(f"make_video.py: error: {msg}", file=sys.stderr)
    sys.exit(code)


def main():
    ap = argparse.ArgumentParser(
        prog="make_video.py",
        description="Render a synthetic test-pattern VP8/WebM with a keyframe every second "
        "and the Cues at the front.",
    )
    ap.add_argument("out", help="output .webm path")
    ap.add_argument("--seconds", type=int, default=360, help="duration in seconds (default 360)")
    ap.add_argument("--kbps", type=int, default=1000, help="video bitrate in kbit/s (default 1000)")
    ap.add_argument("--fps", type=int, default=15, help="frame rate (default 15)")
    args = ap.parse_args()
    if not 1 <= args.seconds <= 3600:
        die("--seconds must be between 1 and 3600", 2)
    if not 50 <= args.kbps <= 50000:
        die("--kbps must be between 50 and 50000", 2)
    if not 1 <= args.fps <= 60:
        die("--fps must be between 1 and 60", 2)
    if not args.out.endswith(".webm"):
        die("the output name must end in .webm", 2)

    try:
        import imageio_ffmpeg
    except ImportError:
        die(
            "the Python package imageio-ffmpeg is not installed for "
            f"{sys.executable} (run scripts/setup.sh and use $CAIRN_CACHE/venv/bin/python)"
        )
    try:
        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - any failure here means no usable ffmpeg
        die(f"imageio-ffmpeg found no ffmpeg binary: {e}")

    out = os.path.abspath(args.out)
    out_dir = os.path.dirname(out)
    if not os.path.isdir(out_dir):
        die(f"output directory {out_dir} does not exist")

    rate = f"{args.kbps}k"
    fps = args.fps
    source = (
        f"testsrc=size=320x240:rate={fps}:decimals=2:duration={args.seconds},"
        # Temporal + uniform noise with a fixed seed: deterministic, and dense enough that CBR
        # has something to spend its bits on in every frame.
        "noise=alls=12:allf=t+u:all_seed=4242,"
        "format=yuv420p"
    )
    # Written to a temporary name in the same directory and renamed, so OUT is never a partial
    # file; cues_to_front needs a seekable output file, which this is.
    fd, tmp = tempfile.mkstemp(prefix=".make_video.", suffix=".webm", dir=out_dir)
    os.close(fd)
    cmd = [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", source,
        "-an",
        "-c:v", "libvpx",
        "-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", f"{args.kbps // 2}k",
        "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
        "-auto-alt-ref", "0", "-lag-in-frames", "0",
        "-deadline", "good", "-cpu-used", "4", "-threads", "1",
        "-undershoot-pct", "0", "-overshoot-pct", "0",
        "-fflags", "+bitexact", "-flags:v", "+bitexact",
        "-map_metadata", "-1",
        "-f", "webm", "-cues_to_front", "1",
        tmp,
    ]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except OSError as e:
        os.unlink(tmp)
        die(f"could not run {ffmpeg}: {e}")
    if proc.returncode != 0:
        os.unlink(tmp)
        err = proc.stderr.strip() or "(no output)"
        die(f"ffmpeg exited with status {proc.returncode}:\n{err}")
    size = os.path.getsize(tmp)
    if size < args.seconds * args.kbps * 1000 // 8 // 4:
        os.unlink(tmp)
        die(f"ffmpeg wrote only {size} bytes, far under the requested bitrate")
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600
    os.replace(tmp, out)
    if os.environ.get("MAKE_VIDEO_VERBOSE"):
        print(f"make_video.py: {size} bytes in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    print(out)


if __name__ == "__main__":
    main()
