"""Captures of any size: ``cbs-agent decode`` of a large candump log, its memory over the run
and its speed against ``python -m cantools decode`` on the same frames.

    python bench/decode_large.py [--size-mb 1000] [--stdin] [--cantools-mb 20] [--rounds 2]
                                 [--keep FILE]

The capture (``--size-mb`` of ``(ts) can0 ID#DATA`` lines) is a busy bus: key sessions of a
simulator fleet among three times as many frames of other ECUs, times rising all along. It
is written to a file and ``cbs-agent decode --format candump FILE > /dev/null`` runs on it as
its own process; with ``--stdin`` no file is written: this script, run with ``--emit MB``,
writes the capture into a pipe and ``cbs-agent decode -`` reads it (so a capture larger than
the disk can hold is measured). Every half second the decoder's RSS (``/proc/PID/status``)
and the bytes it has read (``/proc/PID/io`` rchar) are sampled, so memory and throughput are
seen over the whole capture, not only at the end.

Speed: ``python -m cantools decode`` (which decodes every frame it has a message for and
prints the others as they are) and ``cbs-agent decode`` read the same first ``--cantools-mb``
of the capture, one after the other, ``--rounds`` times each; the ratio of the medians is
given for wall time and for the processes' CPU time (user + system, robust to a busy host).

Goals (docs/performance.md, "Years at a busy site"): constant memory whatever the size (a
10 GB capture then costs what 1 GB does, ten times as long), faster than cantools.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, fleet_sessions, machine, result, rss_kib, table  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def capture_text(size_mb: float, counts: dict[str, int] | None = None) -> Iterator[str]:
    """The capture, a key session (and the other traffic around it) at a time, until
    ``size_mb`` MB are given; ``counts`` gets "frames" and "sessions"."""
    from protocols.encoder import encode_session

    sessions = fleet_sessions(400, seed=5, vehicles=400)
    blocks = [[(f.arbitration_id, f.data.hex().upper()) for f in encode_session(s)]
              for s in sessions]
    rng = random.Random(5)
    others = [(rng.choice([0x0A8, 0x130, 0x1A0, 0x2C4, 0x3B0, 0x4F8, 0x5C0, 0x7C3]),
               bytes(rng.getrandbits(8) for _ in range(8)).hex().upper()) for _ in range(997)]
    limit = size_mb * 1_000_000
    t = 1_700_000_000.0
    frames = count = written = 0
    while written < limit:
        block = blocks[count % len(blocks)]
        count += 1
        lines = []
        for ident, data in block:
            for k in range(3):
                other = others[(frames + k) % len(others)]
                t += 0.0001
                lines.append(f"({t:.6f}) can0 {other[0]:03X}#{other[1]}\n")
            t += 0.0001
            lines.append(f"({t:.6f}) can0 {ident:03X}#{data}\n")
            frames += 4
        t += 0.5  # between keys
        text = "".join(lines)
        written += len(text)
        if counts is not None:
            counts.update(frames=frames, sessions=count)
        yield text


def write_capture(path: Path, size_mb: float) -> tuple[int, int]:
    """The capture in a file; returns (frames, key sessions)."""
    counts = {"frames": 0, "sessions": 0}
    with path.open("w", encoding="ascii", buffering=1 << 20) as out:
        for text in capture_text(size_mb, counts):
            out.write(text)
    return counts["frames"], counts["sessions"]


def _rchar(pid: int) -> int:
    try:
        match = re.search(r"^rchar: (\d+)", Path(f"/proc/{pid}/io").read_text(), re.MULTILINE)
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def run_decode(path: Path | None, sample_s: float = 0.5, emit_mb: float = 0
               ) -> tuple[float, float, list[tuple[float, float, int]]]:
    """``cbs-agent decode`` of ``path`` to /dev/null, or of ``emit_mb`` MB of the capture
    piped into ``decode -``: (seconds, CPU seconds, samples of (t, RSS MB, rchar))."""
    samples: list[tuple[float, float, int]] = []
    command = [sys.executable, "-m", "agent", "decode", "--format", "candump", "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    writer = None
    with open(os.devnull, "w") as sink:
        if path is None:
            writer = subprocess.Popen([sys.executable, __file__, "--emit", str(emit_mb)],
                                      stdout=subprocess.PIPE, cwd=ROOT)
            source = writer.stdout
        process = subprocess.Popen([*command, "-" if path is None else str(path)],
                                   stdin=source if path is None else None, stdout=sink,
                                   stderr=subprocess.PIPE, cwd=ROOT)
        if writer is not None and writer.stdout is not None:
            writer.stdout.close()  # the decoder holds the pipe now
        while process.poll() is None:
            time.sleep(sample_s)
            rss = rss_kib(process.pid) / 1024 if process.poll() is None else 0.0
            if rss:
                samples.append((time.perf_counter() - started, rss, _rchar(process.pid)))
        _, err = process.communicate()
        if writer is not None:
            writer.wait()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if writer is not None:
        cpu = float("nan")  # the writer's CPU is in it too
    if process.returncode != 0:
        raise RuntimeError(f"decode exited {process.returncode}: {err.decode()[-500:]}")
    return seconds, cpu, samples


def run_cantools(path: Path) -> tuple[float, float]:
    """(seconds, CPU seconds) of ``python -m cantools decode`` of ``path`` on stdin."""
    dbc = ROOT / "dbc" / "key_reader.dbc"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with path.open("rb") as source, open(os.devnull, "w") as sink:
        subprocess.run([sys.executable, "-m", "cantools", "decode", str(dbc)], stdin=source,
                       stdout=sink, check=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1000)
    parser.add_argument("--stdin", action="store_true",
                        help="pipe the capture into decode - instead of writing a file")
    parser.add_argument("--cantools-mb", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="write the capture here, keep it")
    parser.add_argument("--emit", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.emit is not None:  # the writing end of --stdin's pipe
        out = sys.stdout
        try:
            for text in capture_text(args.emit):
                out.write(text)
            out.flush()
        except BrokenPipeError:
            return 1
        return 0

    print(f"decode of a large capture; {machine()}")
    work = Path(tempfile.mkdtemp(prefix="cbs-bench-dec-"))
    capture = args.keep or work / "capture.log"
    prefix = work / "prefix.log"
    prefix_frames, prefix_sessions = write_capture(prefix, args.cantools_mb)
    try:
        print(f"  speed on the first {args.cantools_mb:g} MB ({prefix_frames:,} frames, "
              f"{prefix_sessions:,} key sessions), alternated {args.rounds}x:")
        agent_runs, cantools_runs = [], []
        for _ in range(args.rounds):
            seconds, cpu, _ = run_decode(prefix, sample_s=0.1)
            agent_runs.append((seconds, cpu))
            cantools_runs.append(run_cantools(prefix))
            print(f"    cbs-agent decode {seconds:.2f} s (CPU {cpu:.2f} s), python -m cantools "
                  f"decode {cantools_runs[-1][0]:.2f} s (CPU {cantools_runs[-1][1]:.2f} s); "
                  f"{load()}")
        agent_s = statistics.median(s for s, _ in agent_runs)
        agent_cpu = statistics.median(c for _, c in agent_runs)
        cantools_s = statistics.median(s for s, _ in cantools_runs)
        cantools_cpu = statistics.median(c for _, c in cantools_runs)
        print(f"  medians: cbs-agent {agent_s:.2f} s (CPU {agent_cpu:.2f} s), cantools "
              f"{cantools_s:.2f} s (CPU {cantools_cpu:.2f} s): {cantools_s / agent_s:.2f}x wall, "
              f"{cantools_cpu / agent_cpu:.2f}x CPU")

        t0 = time.perf_counter()
        if args.stdin:
            size = int(args.size_mb * 1_000_000)
            print(f"  capture: about {size / 1e6:,.0f} MB piped into cbs-agent decode -, "
                  "no file")
            seconds, _, samples = run_decode(None, emit_mb=args.size_mb)
        else:
            frames, sessions = write_capture(capture, args.size_mb)
            size = capture.stat().st_size
            print(f"  capture: {size / 1e6:,.0f} MB, {frames:,} frames, {sessions:,} key "
                  f"sessions, written in {time.perf_counter() - t0:.0f} s")
            seconds, _, samples = run_decode(capture)
        tenth = max(1, len(samples) // 10)
        rows = []
        for n in range(0, len(samples), tenth):
            at, rss, read = samples[n]
            window = samples[max(0, n - 1):n + 1]
            rate = ((window[-1][2] - window[0][2]) / (window[-1][0] - window[0][0]) / 1e6
                    if len(window) == 2 and window[-1][0] > window[0][0] else float("nan"))
            rows.append((f"{at:6.1f} s", f"{read / 1e6:,.0f} MB", f"{rss:.1f}", f"{rate:.1f}"))
        table(rows, ["at", "read", "RSS MB", "MB/s then"])  # read: with the modules imported
        warm = [rss for at, rss, _ in samples if at >= samples[-1][0] * 0.1] or [0.0]
        growth = max(warm) / min(warm) - 1
        mb_s = size / seconds / 1e6
        print(f"  whole capture: {seconds:.1f} s, {mb_s:.1f} MB/s; RSS {min(warm):.1f}-"
              f"{max(warm):.1f} MB after the first tenth; {load()}")
        print(f"  10 GB at this rate: {10_000 / mb_s / 60:.0f} min, same memory")
        result("decode, RSS growth after the first tenth of the capture", growth * 100, "%",
               "<= 5 %", growth <= 0.05)
        result("decode throughput, whole capture", mb_s, "MB/s", "", None)
        result("decode speed vs python -m cantools decode (same frames, wall)",
               cantools_s / agent_s, "x", "> 1", cantools_s > agent_s)
        result("decode speed vs python -m cantools decode (same frames, CPU)",
               cantools_cpu / agent_cpu, "x", "> 1", cantools_cpu > agent_cpu)
    finally:
        if args.keep is None:
            capture.unlink(missing_ok=True)
        prefix.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
