"""Latency: from the END frame leaving the simulator to a subscriber holding the readout, with
the durable outbox committing (fsync) as in production.

    python bench/latency.py [--sessions 1000] [--transport serial|can] [--interval-s 0.03]
                            [--state-dir DIR] [--pairs 1]

Real processes: ``cbs-sim serial`` on a pty paced at 115200 baud (or ``cbs-sim can``, SLCAN
at 500 kbit/s), ``cbs-agent run`` (INFO logging, as deployed), a private mosquitto and a paho
subscriber in this process. Latency per session is the subscriber's receive time minus the
simulator's ground-truth ``at`` (the wall clock right after it wrote the session's last
byte), both on this machine's clock; readouts are matched to sessions by content (VIN,
mileage, data date, key id).

The floor: the agent commits each readout with an fsync before it counts as read; this
script measures fsync on the disk of the state directory and prints it. Since the publisher
sends a readout while its commit's fsync runs (docs/outbox.md), the fsync is no longer on the
path to the subscriber; it still bounds how soon the next batch can commit.

With ``--state-dir DIR`` (filled by bench/big_history.py: years of a large dealer's history,
read here through the same fleet, so every vehicle read has its visits there) each of
``--pairs`` pairs runs the same sessions twice, first with an empty state directory, then
with DIR (the agent writes into it as in production). Both agents start their start-up
reminder pass ``--pass-delay-s`` after start (``[reminders] startup_delay_s``), so in the
second run the pass over the whole history runs at a known moment in the middle of the run,
caches warm. Readouts that arrive while it runs (between the agent's "reminder pass started"
and "done" log lines) are compared with the same run's readouts outside it (same state,
same agent, after the first ``--warmup-s`` seconds); the history's figure is the second
run's readouts outside the pass against the empty run's. Goals (docs/performance.md, "Years
at a busy site"): with the history within 10 % of the empty run, during the pass within 20 %
of the same run outside it.

Each run's pass starts from the reminder store as this invocation's first run found it, so
every pass sends that day's reminders (the pair lines say how many). A state whose reminders
for today were sent by an earlier invocation has passes that only read: build it again with
bench/big_history.py (about 90 s) for a pass that sends, which is what a site's daily pass does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, percentile, result, table  # noqa: E402
from broker import MosquittoBroker, Subscriber  # noqa: E402
from processes import AgentProcess, SimulatorProcess, readout_key, session_key, wait_until  # noqa: E402

TARGET_MEDIAN_MS = 3.0
TARGET_P99_MS = 15.0
TARGET_HISTORY_RATIO = 1.10
TARGET_PASS_RATIO = 1.20
SITE, READER = "bench", "lat"


def fsync_ms(directory: Path, count: int = 200) -> list[float]:
    """fsync times of 4 KiB appends to a file in ``directory`` (the WAL's pattern)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(count):
            os.write(fd, b"\0" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return times


def _copy_store(source: Path, target: Path) -> None:
    """A closed SQLite store copied whole: its file, and its log where one is left."""
    for suffix in ("-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    shutil.copyfile(source, target)
    wal = Path(str(source) + "-wal")
    if wal.exists():
        shutil.copyfile(wal, Path(str(target) + "-wal"))


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _pass_window(log_path: Path) -> tuple[float, float] | None:
    """Wall-clock start and end of the agent's reminder pass, from its log (text format,
    this machine's local time)."""
    start = end = None
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if "reminder pass started" in line or "reminder pass done" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if "started" in line:
                start = stamp
            else:
                end = stamp
    return (start, end) if start is not None and end is not None else None


def run_once(args: argparse.Namespace, work: Path, state_dir: Path, *, base_date: str | None
             ) -> tuple[list[tuple[float, float, bool]], list[float], int, tuple[float, float] | None]:
    """One run: ((seconds since the first session, latency ms, during the pass) per readout,
    latencies ms of readouts during the reminder pass, sessions not received, the pass
    window)."""
    work.mkdir(parents=True)
    broker = MosquittoBroker(work / "broker").start()
    base = f"cbs/v1/{SITE}/{READER}"
    subscriber = Subscriber.for_broker(broker, (f"{base}/readout", f"{base}/rejected")).start()
    common = ["--seed", str(args.seed), "--sessions", str(args.sessions), "--interval-s",
              str(args.interval_s), "--vehicles", str(args.vehicles), "--linger"]
    if base_date is not None:
        common += ["--base-date", base_date]
    if args.transport == "serial":
        sim = SimulatorProcess(work, "serial", *common, "--dwell-s", "0", "--baudrate", "115200")
        reader = ["--serial", sim.port]
    else:
        sim = SimulatorProcess(work, "can", *common, "--bitrate", "500000")
        reader = ["--can-interface", "fastslcan", "--can-channel", sim.port]
    agent = AgentProcess(work, *reader, "--broker", broker.url, "--site", SITE, "--reader", READER,
                         "--state-dir", str(state_dir),
                         env={"CBS_HISTORY__RETENTION_DAYS": str(args.retention_days),
                              # 0: not set at all (an agent before the setting starts too)
                              **({"CBS_REMINDERS__STARTUP_DELAY_S": str(args.pass_delay_s)}
                                 if args.pass_delay_s > 0 else {})})
    try:
        timeout = 120 + args.sessions * (0.2 + args.interval_s)
        # Count lines, do not parse: this process also stamps the arrivals, so it stays idle.
        wait_until(lambda: _lines(sim.truth_path) >= args.sessions, timeout, "all sessions played",
                   interval_s=0.5)
        truth = sim.truth()
        expected = [r for r in truth if r["expected"] == "readout" and not r["disturbed"]]
        wanted = {session_key(r) for r in expected}
        subscriber.wait_for(
            lambda ms: len(wanted & {readout_key(m.json()) for m in ms
                                     if m.topic.endswith("/readout")}) >= len(wanted),
            timeout_s=60, what="every readout")
        arrivals: dict[tuple[object, ...], float] = {}
        for message in subscriber.snapshot():
            if message.topic.endswith("/readout"):
                arrivals.setdefault(readout_key(message.json()), message.received_at)
        window = _pass_window(agent.log_path)
        latencies, during = [], []
        first = min(r["at"] for r in expected)
        for r in expected:
            if session_key(r) in arrivals:
                latency = (arrivals[session_key(r)] - r["at"]) * 1000
                in_pass = window is not None and window[0] <= r["at"] <= window[1]
                latencies.append((r["at"] - first, latency, in_pass))
                if in_pass:
                    during.append(latency)
        return latencies, during, len(expected) - len(latencies), window
    finally:
        agent.stop()
        sim.stop()
        subscriber.stop()
        broker.stop()


def _row(name: str, values: list[float]) -> tuple[str, ...]:
    if not values:
        return (name, "-", "-", "-", "-")
    return (f"{name} ({len(values)})", f"{statistics.median(values):.2f}",
            f"{percentile(values, 90):.2f}", f"{percentile(values, 99):.2f}", f"{max(values):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--transport", choices=["serial", "can"], default="serial")
    parser.add_argument("--interval-s", type=float, default=0.03,
                        help="idle time between key reads in the simulator")
    parser.add_argument("--vehicles", type=int, default=5000,
                        help="fleet size (large: every session distinct)")
    parser.add_argument("--seed", type=int, default=21, help="the simulated fleet's seed")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="a filled state directory (bench/big_history.py) to compare with")
    parser.add_argument("--pairs", type=int, default=1, help="with --state-dir: runs of each")
    parser.add_argument("--pass-delay-s", type=float, default=30.0,
                        help="start-up reminder pass this long after start (the agent's "
                             "[reminders] startup_delay_s)")
    parser.add_argument("--warmup-s", type=float, default=5.0,
                        help="with --state-dir: readouts of each run's first seconds left out")
    parser.add_argument("--retention-days", type=int, default=3650,
                        help="the agent's [history] retention_days (the history's own)")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="cbs-bench-lat-"))
    floor = fsync_ms(root)
    print(f"latency: END frame -> subscriber, {args.sessions} sessions over {args.transport}; "
          f"{machine()}")
    print(f"  fsync on the state directory's disk (the durability floor): median "
          f"{statistics.median(floor):.2f} ms, p99 {percentile(floor, 99):.2f} ms")
    base_date = None
    if args.state_dir is not None:
        import json
        meta = json.loads((args.state_dir / "big_history.json").read_text())
        args.seed, base_date = meta["seed"], meta["base_date"]
        args.vehicles = min(args.vehicles, meta["vehicles"])
        print(f"  with history: {args.state_dir} (fleet seed {args.seed}, base date {base_date}), "
              f"against an empty state directory, {args.pairs} pair(s)")
    day_start: Path | None = None  # the reminder store as the first run found it
    empty: list[float] = []
    full: list[float] = []  # the full history's readouts outside the pass (after the warm-up)
    during: list[float] = []
    missing = 0
    for pair in range(args.pairs if args.state_dir is not None else 1):
        timed, _, miss, _ = run_once(args, root / f"empty-{pair}",
                                     root / f"empty-{pair}" / "state", base_date=base_date)
        lat = [latency for offset, latency, _ in timed if offset >= args.warmup_s] \
            if args.state_dir is not None else [latency for _, latency, _ in timed]
        empty += lat
        missing += miss
        print(f"  pair {pair + 1}, empty state: median {statistics.median(lat):.2f} ms, "
              f"p99 {percentile(lat, 99):.2f} ms; {machine()}")
        if args.state_dir is not None:
            # Each run's pass is the day's first: the reminder store as the run before the
            # first found it, else a pass after the first sends nothing (the same day, every
            # reminder already in the ledger) and 4b would time a pass that only reads.
            if day_start is None:
                day_start = root / "reminders-day-start.sqlite3"
                _copy_store(args.state_dir / "reminders.sqlite3", day_start)
            else:
                _copy_store(day_start, args.state_dir / "reminders.sqlite3")
            timed_full, pas, miss, window = run_once(args, root / f"full-{pair}", args.state_dir,
                                                     base_date=base_date)
            lat = [latency for offset, latency, in_pass in timed_full
                   if offset >= args.warmup_s and not in_pass]
            full += lat
            during += pas
            missing += miss
            span = f"{window[1] - window[0]:.1f} s" if window else "not seen"
            sent = re.findall(r"reminder pass done .*?(\d+) reminders",
                              (root / f"full-{pair}" / "agent.log").read_text(errors="replace"))
            span += f" sending {sent[-1] if sent else '?'} reminders"
            print(f"  pair {pair + 1}, full history outside the pass: median "
                  f"{statistics.median(lat):.2f} ms, p99 {percentile(lat, 99):.2f} ms; reminder "
                  f"pass {span}, {len(pas)} readouts during it; {machine()}")
    rows = [_row("END -> subscriber, empty state", empty)]
    if full:
        rows += [_row("END -> subscriber, full history, outside the pass", full),
                 _row("END -> subscriber, full history, during the pass", during)]
    table(rows, ["", "median ms", "p90 ms", "p99 ms", "max ms"])
    print(f"  readouts expected but not received: {missing}")
    ok = missing == 0 and len(empty) >= min(args.sessions, 1000) * 0.9
    median, p99 = statistics.median(empty), percentile(empty, 99)
    result("latency END -> subscriber, median", median, "ms", f"<= {TARGET_MEDIAN_MS} ms",
           median <= TARGET_MEDIAN_MS and ok)
    result("latency END -> subscriber, p99", p99, "ms", f"<= {TARGET_P99_MS} ms",
           p99 <= TARGET_P99_MS and ok)
    if full:
        for name, values, reference, target in (
                ("full history / empty", full, empty, TARGET_HISTORY_RATIO),
                ("during the reminder pass / outside it", during, full, TARGET_PASS_RATIO)):
            if not values:
                result(f"latency {name}, median", float("nan"), "x", f"<= {target}", False)
                continue
            for q, label in ((50, "median"), (99, "p99")):
                ratio = percentile(values, q) / percentile(reference, q)
                result(f"latency {name}, {label}", ratio, "x", f"<= {target:.2f}",
                       ratio <= target and ok)
    result("fsync floor (median, state disk)", statistics.median(floor), "ms", "", None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
