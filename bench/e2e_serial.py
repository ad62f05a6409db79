"""End-to-end figures of the serial path: sessions per second and END-to-subscriber latency.

    python bench/e2e_serial.py [--sessions 300] [--baudrate 0|115200]

Real processes (cbs-sim serial on a pty, cbs-agent run, a private mosquitto, a subscriber);
latency is the subscriber's receive time minus the simulator's time of writing the END frame
(the ground truth's ``at``), both on this machine's clock.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

from broker import MosquittoBroker, Subscriber  # noqa: E402
from processes import AgentProcess, SimulatorProcess, wait_until  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--baudrate", type=int, default=0, help="0: as fast as the pty takes it")
    parser.add_argument("--interval-s", type=float, default=0.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cbs-bench-serial-"))
    broker = MosquittoBroker(work / "broker").start()
    subscriber = Subscriber.for_broker(broker, "cbs/v1/bench/desk1/+").start()
    sim = SimulatorProcess(work, "serial", "--seed", "3", "--sessions", str(args.sessions),
                           "--interval-s", str(args.interval_s), "--dwell-s", "0",
                           "--baudrate", str(args.baudrate), "--linger")
    agent = AgentProcess(work, "--serial", sim.port, "--broker", broker.url, "--site", "bench",
                         "--reader", "desk1", "--state-dir", str(work / "state"),
                         "--log-level", "WARNING")
    arrivals: dict[str, float] = {}
    try:
        outcomes = ("cbs/v1/bench/desk1/readout", "cbs/v1/bench/desk1/rejected")
        subscriber.wait_for(lambda ms: sum(m.topic in outcomes for m in ms) >= args.sessions,
                            timeout_s=600, what="all sessions")
        wait_until(lambda: len(sim.truth()) >= args.sessions, 30, "truth")
        truth = sim.truth()
        received = [m for m in subscriber.snapshot() if m.topic in outcomes]
        for record, message in zip(truth, received, strict=False):
            arrivals[str(record["n"])] = message.received_at
        latencies_ms = [(arrivals[str(r["n"])] - r["at"]) * 1000 for r in truth
                        if str(r["n"]) in arrivals]
        span_s = received[-1].received_at - received[0].received_at
        print(f"serial end to end, {args.sessions} sessions, baudrate "
              f"{args.baudrate or 'unpaced (pty speed)'}")
        print(f"  sessions per second      {(len(received) - 1) / span_s:10.1f}")
        print(f"  END -> subscriber median {statistics.median(latencies_ms):10.2f} ms")
        print(f"  END -> subscriber p90    {percentile(latencies_ms, 90):10.2f} ms")
        print(f"  END -> subscriber p99    {percentile(latencies_ms, 99):10.2f} ms")
        frames = sum(len(r["session"]["services"]) for r in truth)
        print(f"  service items carried    {frames:10d}")
    finally:
        agent.stop()
        sim.stop()
        subscriber.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
