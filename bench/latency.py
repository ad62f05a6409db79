"""Latency: from the END frame leaving the simulator to a subscriber holding the readout, with
the durable outbox committing (fsync) as in production.

    python bench/latency.py [--sessions 1000] [--transport serial|can] [--interval-s 0.03]

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
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, percentile, result, table  # noqa: E402
from broker import MosquittoBroker, Subscriber  # noqa: E402
from processes import AgentProcess, SimulatorProcess, readout_key, session_key, wait_until  # noqa: E402

TARGET_MEDIAN_MS = 3.0
TARGET_P99_MS = 15.0
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


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--transport", choices=["serial", "can"], default="serial")
    parser.add_argument("--interval-s", type=float, default=0.03,
                        help="idle time between key reads in the simulator")
    parser.add_argument("--vehicles", type=int, default=5000,
                        help="fleet size (large: every session distinct)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="cbs-bench-lat-"))
    floor = fsync_ms(work)
    print(f"latency: END frame -> subscriber, {args.sessions} sessions over {args.transport}; "
          f"{machine()}")
    print(f"  fsync on the state directory's disk (the durability floor): median "
          f"{statistics.median(floor):.2f} ms, p99 {percentile(floor, 99):.2f} ms")

    broker = MosquittoBroker(work / "broker").start()
    base = f"cbs/v1/{SITE}/{READER}"
    subscriber = Subscriber.for_broker(broker, (f"{base}/readout", f"{base}/rejected")).start()
    common = ["--seed", "21", "--sessions", str(args.sessions), "--interval-s",
              str(args.interval_s), "--vehicles", str(args.vehicles), "--linger"]
    if args.transport == "serial":
        sim = SimulatorProcess(work, "serial", *common, "--dwell-s", "0", "--baudrate", "115200")
        reader = ["--serial", sim.port]
    else:
        sim = SimulatorProcess(work, "can", *common, "--bitrate", "500000")
        reader = ["--can-interface", "fastslcan", "--can-channel", sim.port]
    agent = AgentProcess(work, *reader, "--broker", broker.url, "--site", SITE, "--reader", READER,
                         "--state-dir", str(work / "state"))
    ok = False
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
        latencies = [(arrivals[session_key(r)] - r["at"]) * 1000 for r in expected
                     if session_key(r) in arrivals]
        missing = len(expected) - len(latencies)
        rows = [(f"END -> subscriber ({len(latencies)} readouts)",
                 f"{statistics.median(latencies):.2f}", f"{percentile(latencies, 90):.2f}",
                 f"{percentile(latencies, 99):.2f}", f"{max(latencies):.2f}")]
        table(rows, ["", "median ms", "p90 ms", "p99 ms", "max ms"])
        print(f"  sessions played {len(truth)}, readouts expected {len(expected)}, "
              f"not received {missing}")
        median = statistics.median(latencies)
        p99 = percentile(latencies, 99)
        ok = missing == 0 and len(latencies) >= min(args.sessions, 1000) * 0.9
        result("latency END -> subscriber, median", median, "ms", f"<= {TARGET_MEDIAN_MS} ms",
               median <= TARGET_MEDIAN_MS and ok)
        result("latency END -> subscriber, p99", p99, "ms", f"<= {TARGET_P99_MS} ms",
               p99 <= TARGET_P99_MS and ok)
        result("fsync floor (median, state disk)", statistics.median(floor), "ms", "", None)
    finally:
        agent.stop()
        sim.stop()
        subscriber.stop()
        broker.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
