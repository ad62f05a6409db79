"""A long outage drains: an outbox holding a day's backlog of a busy site, delivered by the real
agent to a local mosquitto, while new keys are read.

    python bench/outbox_drain.py [--messages 10000] [--new 20] [--broker-window N]

What is measured. bench/big_history.py leaves ``--messages`` queued readouts (real readout
payloads, about 4 KB, each with its own id) in a state directory, as an agent whose broker was
away would have; ``cbs-agent run`` starts on it against a private mosquitto with its default
configuration (Receive Maximum 20, unless ``--broker-window``) and a ``mosquitto_sub``
process stamps every readout. The drain rate is the backlog over the time from its first
message received to its last. Checked: every message arrives, in the order stored. Meanwhile
``--new`` key reads are written to the agent's reader (a pty), one every 50 ms from the first
backlog message on; their latency (written -> received) is printed: they queue behind the
backlog (the outbox is one FIFO per reader), so it is bounded by what was ahead of them.
After the drain, the same number of reads once more, for their idle latency.

Goal (docs/performance.md, "Years at a busy site"): at least 5,000 messages/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PtyFeeder,
    cpu_seconds,
    fleet_sessions,
    machine,
    result,
    serial_session_bytes,
    table,
)
from big_history import build_state  # noqa: E402
from broker import MosquittoBroker, Subscriber  # noqa: E402
from processes import AgentProcess  # noqa: E402
from throughput import Receiver, wait_count  # noqa: E402

TARGET_PER_S = 5000.0
SITE, READER = "bench", "lat"


def _feed(feeder: PtyFeeder, blobs: list[bytes], interval_s: float) -> list[float]:
    stamps = []
    for blob in blobs:
        feeder.write(blob)
        stamps.append(time.time())
        time.sleep(interval_s)
    return stamps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--new", type=int, default=20, help="key reads during the drain")
    parser.add_argument("--broker-window", type=int, default=None, metavar="N",
                        help="mosquitto's max_inflight_messages (default: its own, 20)")
    args = parser.parse_args(argv)

    print(f"outbox drain: {args.messages:,} queued messages -> mosquitto; {machine()}")
    work = Path(tempfile.mkdtemp(prefix="cbs-bench-drain-"))
    built = build_state(work / "state", vehicles=300, years=2, real=100, outbox=args.messages,
                        site=SITE, reader=READER, quiet=True)
    print(f"  {built.describe()}")
    sessions = fleet_sessions(2 * args.new, seed=99, vehicles=1000)
    blobs = serial_session_bytes(sessions)
    window = "" if args.broker_window is None else f"max_inflight_messages {args.broker_window}"
    broker = MosquittoBroker(work / "broker", extra_config=window).start()
    base = f"cbs/v1/{SITE}/{READER}"
    status = Subscriber.for_broker(broker, f"{base}/status").start()
    receiver = Receiver(broker, f"{base}/readout", work / "received.txt")
    feeder = PtyFeeder()
    agent = AgentProcess(work, "--serial", feeder.path, "--broker", broker.url, "--site", SITE,
                         "--reader", READER, "--state-dir", str(work / "state"),
                         env={"CBS_REMINDERS__ENABLED": "false"})
    ok = False
    try:
        feeder.wait_host(settle_s=0.0)
        wait_count(receiver, 1, timeout_s=30)
        cpu0 = cpu_seconds(agent.pid)
        during = _feed(feeder, blobs[:args.new], 0.05)
        total = args.messages + args.new
        done = wait_count(receiver, total, timeout_s=120)
        cpu = cpu_seconds(agent.pid) - cpu0
        time.sleep(0.5)
        after = _feed(feeder, blobs[args.new:], 0.05)
        wait_count(receiver, total + args.new, timeout_s=30)
        got = receiver.lines()
        backlog = [(stamp, rid) for stamp, rid in got if rid.rsplit("-", 1)[-1].isdigit()
                   and rid.count("-") >= 2]
        new = [stamp for stamp, rid in got if (stamp, rid) not in set(backlog)]
        ids = [rid for _, rid in backlog]
        in_order = [int(rid.rsplit("-", 1)[1]) for rid in ids] == list(range(args.messages))
        span = backlog[-1][0] - backlog[0][0] if len(backlog) > 1 else float("nan")
        rate = (len(backlog) - 1) / span if span == span and span > 0 else 0.0
        late = [(r - w) * 1000 for w, r in zip(during, new[:args.new], strict=False)]
        idle = [(r - w) * 1000 for w, r in zip(after, new[args.new:], strict=False)]
        rows = [("backlog delivered", f"{len(backlog):,} of {args.messages:,}"),
                ("in the order stored", "yes" if in_order else "NO"),
                ("drain time, first to last", f"{span:.2f} s"),
                ("drain rate", f"{rate:,.0f} msg/s"),
                ("agent CPU over the drain", f"{cpu / max(span, 1e-9):.0%} of a core"),
                ("reads during the drain: latency median / max",
                 f"{statistics.median(late):,.0f} / {max(late):,.0f} ms" if late else "-"),
                ("reads after the drain: latency median / max",
                 f"{statistics.median(idle):,.1f} / {max(idle):,.1f} ms" if idle else "-")]
        table(rows, ["", ""])
        ok = done and in_order and len(backlog) == args.messages
        result("outbox drain to mosquitto", rate, "msg/s", f">= {TARGET_PER_S:,.0f} msg/s",
               rate >= TARGET_PER_S and ok)
        if late:
            result("latency of a read during the drain (max)", max(late), "ms", "", None)
    finally:
        agent.stop()
        receiver.stop()
        status.stop()
        feeder.close()
        broker.stop()
    if not ok:
        print(f"  agent log tail:\n{agent.tail()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
