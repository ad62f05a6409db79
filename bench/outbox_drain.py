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
backlog message on, and after the drain the same number once more, for their idle figures.

A new read's time to its subscriber has two parts, and the script prints both:

* **read -> stored**: from the last byte written to the pty to the agent's log line for that
  readout (the agent logs a readout once the outbox committed it: from then on it counts as
  read and survives a power cut). The drain must not slow this: goal within 20 % of idle.
* **behind the backlog**: the contract delivers a reader's messages in the order they were read
  (mqtt-contract.md, "Delivery"), so a read during the drain is delivered after the backlog
  stored before it. What it may not do is wait longer than that: the script prints the time
  from the arrival of the message just ahead of it to its own arrival (idle: from stored to
  received).

Goal (docs/performance.md, "Years at a busy site"): at least 5,000 messages/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
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


def _stored_times(log_text: str) -> dict[str, float]:
    """readout id -> the time of the agent's JSON log line saying it was read (and stored)."""
    stored = {}
    for line in log_text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message = str(record.get("message", ""))
        if message.startswith("readout ") and " (NOT STORED" not in message:
            stamp = datetime.fromisoformat(record["time"]).timestamp()
            stored.setdefault(message.split()[1].rstrip(":"), stamp)
    return stored


def _ms(values: list[float], digits: int = 1) -> str:
    if not values:
        return "-"
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return (f"{statistics.median(values):,.{digits}f} / {p90:,.{digits}f} / "
            f"{values[-1]:,.{digits}f} ms")


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
                         "--log-format", "json", env={"CBS_REMINDERS__ENABLED": "false"})
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
        backlog_ids = {rid for _, rid in backlog}
        new = [(index, stamp, rid) for index, (stamp, rid) in enumerate(got)
               if rid not in backlog_ids]
        ids = [rid for _, rid in backlog]
        in_order = [int(rid.rsplit("-", 1)[1]) for rid in ids] == list(range(args.messages))
        span = backlog[-1][0] - backlog[0][0] if len(backlog) > 1 else float("nan")
        rate = (len(backlog) - 1) / span if span == span and span > 0 else 0.0
        stored = _stored_times(agent.log_text())
        written = during + after
        total_ms, stored_ms, behind_ms = [], [], []
        for (index, stamp, rid), wrote in zip(new, written, strict=False):
            total_ms.append((stamp - wrote) * 1000)
            at = stored.get(rid)
            stored_ms.append(((at - wrote) * 1000) if at is not None else float("nan"))
            ahead = got[index - 1][0] if index > 0 else stamp
            behind_ms.append((stamp - max(ahead, at if at is not None else ahead)) * 1000)
        n = args.new

        def part(values: list[float], start: int, stop: int, digits: int = 1) -> str:
            return _ms([v for v in values[start:stop] if v == v], digits)

        rows = [("backlog delivered", f"{len(backlog):,} of {args.messages:,}"),
                ("in the order stored", "yes" if in_order else "NO"),
                ("drain time, first to last", f"{span:.2f} s"),
                ("drain rate", f"{rate:,.0f} msg/s"),
                ("agent CPU over the drain", f"{cpu / max(span, 1e-9):.0%} of a core"),
                ("reads during the drain: read -> received, median / p90 / max",
                 part(total_ms, 0, n, 0)),
                ("  of it read -> stored", part(stored_ms, 0, n)),
                ("  of it after the message ahead (or stored) -> received",
                 part(behind_ms, 0, n)),
                ("reads after the drain: read -> received", part(total_ms, n, 2 * n)),
                ("  of it read -> stored", part(stored_ms, n, 2 * n)),
                ("  of it stored -> received", part(behind_ms, n, 2 * n))]
        table(rows, ["", ""])
        ok = done and in_order and len(backlog) == args.messages
        result("outbox drain to mosquitto", rate, "msg/s", f">= {TARGET_PER_S:,.0f} msg/s",
               rate >= TARGET_PER_S and ok)
        during_stored = sorted(v for v in stored_ms[:n] if v == v)
        idle_stored = sorted(v for v in stored_ms[n:2 * n] if v == v)
        if during_stored and idle_stored:
            ratio = statistics.median(during_stored) / statistics.median(idle_stored)
            result("read -> stored during the drain, median, x idle", ratio, "x", "<= 1.2 x",
                   ratio <= 1.2)
        if behind_ms[:n]:
            result("read during the drain: after the message ahead of it (max)",
                   max(behind_ms[:n]), "ms", "", None)
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
