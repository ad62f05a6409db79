"""Captures of any size: ``cbs-agent decode`` of a large candump log, its memory over the run
and its speed against ``python -m cantools decode`` on the same frames.

    python bench/decode_large.py [--size-mb 1000] [--cantools-mb 20] [--keep FILE]

The capture is written first (``--size-mb`` of ``(ts) can0 ID#DATA`` lines): a busy bus with
key sessions of a simulator fleet among three times as many frames of other ECUs, times
rising all along. ``cbs-agent decode --format candump FILE > /dev/null`` then runs as its own
process; every half second its RSS (``/proc/PID/status``) and the bytes it has read
(``/proc/PID/io`` rchar) are sampled, so memory and throughput are seen over the whole file,
not only at the end. ``python -m cantools decode`` (which decodes every frame it has a
message for and prints the others as they are) reads the first ``--cantools-mb`` of the same
file, and ``cbs-agent decode`` the same prefix, for the speed ratio.

Goals (docs/performance.md, "Years at a busy site"): constant memory whatever the size (a
10 GB capture then costs what 1 GB does, ten times as long), faster than cantools.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, fleet_sessions, machine, result, rss_kib, table  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_capture(path: Path, size_mb: int) -> tuple[int, int]:
    """The capture; returns (frames, key sessions)."""
    from protocols.encoder import encode_session

    sessions = fleet_sessions(400, seed=5, vehicles=400)
    blocks = [[(f.arbitration_id, f.data.hex().upper()) for f in encode_session(s)]
              for s in sessions]
    rng = random.Random(5)
    others = [(rng.choice([0x0A8, 0x130, 0x1A0, 0x2C4, 0x3B0, 0x4F8, 0x5C0, 0x7C3]),
               bytes(rng.getrandbits(8) for _ in range(8)).hex().upper()) for _ in range(997)]
    limit = size_mb * 1_000_000
    t = 1_700_000_000.0
    frames = count = 0
    with path.open("w", encoding="ascii", buffering=1 << 20) as out:
        written = 0
        while written < limit:
            block = blocks[count % len(blocks)]
            count += 1
            lines = []
            for n, (ident, data) in enumerate(block):
                for k in range(3):
                    other = others[(frames + k) % len(others)]
                    t += 0.0001
                    lines.append(f"({t:.6f}) can0 {other[0]:03X}#{other[1]}\n")
                t += 0.0001
                lines.append(f"({t:.6f}) can0 {ident:03X}#{data}\n")
                frames += 4
                del n
            t += 0.5  # between keys
            text = "".join(lines)
            out.write(text)
            written += len(text)
    return frames, count


def _rchar(pid: int) -> int:
    try:
        match = re.search(r"^rchar: (\d+)", Path(f"/proc/{pid}/io").read_text(), re.MULTILINE)
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def run_decode(path: Path, sample_s: float = 0.5) -> tuple[float, list[tuple[float, float, int]]]:
    """``cbs-agent decode`` of ``path`` to /dev/null: (seconds, samples of (t, RSS MB, rchar))."""
    samples: list[tuple[float, float, int]] = []
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "agent", "decode", "--format", "candump",
                                    "--no-progress", str(path)], stdout=sink,
                                   stderr=subprocess.PIPE, cwd=ROOT)
        while process.poll() is None:
            time.sleep(sample_s)
            rss = rss_kib(process.pid) / 1024 if process.poll() is None else 0.0
            if rss:
                samples.append((time.perf_counter() - started, rss, _rchar(process.pid)))
        _, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"decode exited {process.returncode}: {err.decode()[-500:]}")
    return time.perf_counter() - started, samples


def run_cantools(path: Path) -> float:
    dbc = ROOT / "dbc" / "key_reader.dbc"
    started = time.perf_counter()
    with path.open("rb") as source, open(os.devnull, "w") as sink:
        subprocess.run([sys.executable, "-m", "cantools", "decode", str(dbc)], stdin=source,
                       stdout=sink, check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--cantools-mb", type=int, default=20)
    parser.add_argument("--keep", type=Path, default=None, help="write the capture here, keep it")
    args = parser.parse_args(argv)

    print(f"decode of a large capture; {machine()}")
    work = Path(tempfile.mkdtemp(prefix="cbs-bench-dec-"))
    capture = args.keep or work / "capture.log"
    t0 = time.perf_counter()
    frames, sessions = write_capture(capture, args.size_mb)
    size = capture.stat().st_size
    print(f"  capture: {size / 1e6:,.0f} MB, {frames:,} frames, {sessions:,} key sessions, "
          f"written in {time.perf_counter() - t0:.0f} s")
    prefix = work / "prefix.log"
    with capture.open("rb") as source, prefix.open("wb") as out:
        out.write(source.read(args.cantools_mb * 1_000_000))
        out.write(source.readline())
    prefix_frames = prefix.read_bytes().count(b"\n")
    try:
        seconds, samples = run_decode(capture)
        agent_prefix_s, _ = run_decode(prefix, sample_s=0.1)
        cantools_s = run_cantools(prefix)
        tenth = max(1, len(samples) // 10)
        rows = []
        for n in range(0, len(samples), tenth):
            at, rss, read = samples[n]
            window = samples[max(0, n - 1):n + 1]
            rate = ((window[-1][2] - window[0][2]) / (window[-1][0] - window[0][0]) / 1e6
                    if len(window) == 2 and window[-1][0] > window[0][0] else float("nan"))
            rows.append((f"{at:6.1f} s", f"{read / 1e6:,.0f} MB", f"{rss:.1f}", f"{rate:.1f}"))
        table(rows, ["at", "read", "RSS MB", "MB/s then"])
        warm = [rss for at, rss, _ in samples if at >= samples[-1][0] * 0.1] or [0.0]
        growth = max(warm) / min(warm) - 1
        mb_s = size / seconds / 1e6
        print(f"  whole file: {seconds:.1f} s, {mb_s:.1f} MB/s, {frames / seconds:,.0f} frames/s; "
              f"RSS {min(warm):.1f}-{max(warm):.1f} MB after the first tenth")
        print(f"  10 GB at this rate: {10_000 / mb_s / 60:.0f} min, same memory")
        print(f"  first {args.cantools_mb} MB ({prefix_frames:,} frames): cbs-agent decode "
              f"{agent_prefix_s:.1f} s, python -m cantools decode {cantools_s:.1f} s")
        result("decode, RSS growth after the first tenth of the file", growth * 100, "%",
               "<= 5 %", growth <= 0.05)
        result("decode throughput, whole file", frames / seconds, "frames/s", "", None)
        result("decode speed vs python -m cantools decode (same frames)",
               cantools_s / agent_prefix_s, "x", "> 1", cantools_s > agent_prefix_s)
    finally:
        if args.keep is None:
            capture.unlink(missing_ok=True)
        prefix.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
