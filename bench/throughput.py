"""Throughput: complete readouts per second through the real agent, its durable outbox and a
real mosquitto, and the rate at which it saturates.

    python bench/throughput.py [--sessions 3000] [--rates 250,500,1000,2000] [--seconds 4]
                               [--transport serial|can] [--broker-window N] [--profile FILE]

What is measured. Sessions of a seeded fleet are encoded before the clock starts (serial
frames: KEY_PRESENT, CAN_FRAMEs, KEY_REMOVED) and written by this process to the device side
of a pseudo-terminal; ``cbs-agent run --serial PTY`` reads them exactly as from a USB reader
(select, read, framing, session assembly, decode, forecast, vehicle history, proposal,
durable SQLite outbox with fsync, MQTT QoS 1 to a private mosquitto, PUBACK, delete). A
separate ``mosquitto_sub`` process (or a paho script where mosquitto-clients is missing)
receives every readout and stamps it. The figure is
readouts received by the subscriber per second of wall time, from the first byte written to
the last readout received.

* ``--rates``: offered loads (sessions per second, paced by this process) each held for
  ``--seconds``; the achieved rate follows the offered one until the agent saturates.
* then the whole backlog at once (as fast as the pty takes it): the saturation figure.
* ``--state-dir DIR`` (filled by bench/big_history.py): everything twice, first with an empty
  state directory, then with DIR (the agent writes into it as in production), on sessions
  of DIR's fleet (its seed and base date), so every vehicle read has years of visits in the
  history; the figure is the saturation rate with the history against the empty one (goal,
  docs/performance.md "Years at a busy site", 2a: within 10 %).

The simulator is not used here: it encodes sessions with cantools as it plays and cannot
offer more than a few hundred per second itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PtyFeeder,
    cpu_seconds,
    fleet_sessions,
    machine,
    result,
    serial_session_bytes,
    slcan_session_lines,
    table,
    user_system_seconds,
)
from big_history import fleet_of  # noqa: E402
from broker import MosquittoBroker, Subscriber  # noqa: E402
from processes import AgentProcess  # noqa: E402

TARGET_PER_S = 1000.0
TARGET_HISTORY_RATIO = 0.90  # with the full history at least 90 % of the empty state's rate
SITE, READER = "bench", "tp"


# The fallback receiver when mosquitto_sub (Debian's mosquitto-clients) is not installed.
PAHO_RECEIVER = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def on_message(client, userdata, message):
    sys.stdout.write("%.9f %s\\n" % (time.time(), message.payload.decode()))
    sys.stdout.flush()
client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
client.on_message = on_message
client.connect(host, port)
client.loop_forever()
"""


class Receiver:
    """A subscriber in its own process (``mosquitto_sub``, else a paho script), one line per
    readout: receive time and payload."""

    def __init__(self, broker: MosquittoBroker, topic: str, out: Path) -> None:
        self.out = out
        self._file = out.open("w")
        if shutil.which("mosquitto_sub"):
            self.kind = "mosquitto_sub"
            command = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1",
                       "-t", topic, "-F", "%U %p", "-i", f"bench-recv-{time.monotonic_ns()}"]
        else:
            self.kind = "paho subscriber process"
            command = [sys.executable, "-c", PAHO_RECEIVER, broker.host, str(broker.port), topic]
        self.process = subprocess.Popen(command, stdout=self._file, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # subscribed (there is nothing to miss yet)

    def lines(self) -> list[tuple[float, str]]:
        got = []
        for line in self.out.read_text(errors="replace").splitlines():
            stamp, _, payload = line.partition(" ")
            try:
                got.append((float(stamp), json.loads(payload)["readout_id"]))
            except (ValueError, KeyError):
                continue  # a line still being written
        return got

    def count(self) -> int:
        with self.out.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._file.close()


def wait_count(receiver: Receiver, count: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if receiver.count() >= count:
            return True
        time.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3000, help="backlog for the saturation run")
    parser.add_argument("--rates", default="250,500,1000,1500", help="offered loads, sessions/s")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each offered load")
    parser.add_argument("--transport", choices=["serial", "can"], default="serial")
    parser.add_argument("--log-level", default="INFO", help="the agent's (INFO: as deployed)")
    parser.add_argument("--broker-window", type=int, default=None, metavar="N",
                        help="mosquitto's max_inflight_messages, the Receive Maximum it grants "
                             "the agent (default: mosquitto's own, 20)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the agent with py-spy (if installed): SVG, or collapsed "
                             "stacks for .txt")
    parser.add_argument("--profile-gil", action="store_true",
                        help="with --profile: sample only the thread holding the GIL (what "
                             "bounds a CPU-bound agent), not every thread that is running")
    parser.add_argument("--retention-days", type=int, default=3 * 365,
                        help="the agent's [history] retention_days (with --state-dir: DIR's)")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help="also run with this state (bench/big_history.py) and compare")
    args = parser.parse_args(argv)

    rates = [float(r) for r in args.rates.split(",") if r]
    needed = sum(int(r * args.seconds) for r in rates) + args.sessions
    print(f"throughput: agent over a {args.transport} pty -> durable outbox -> mosquitto -> "
          f"mosquitto_sub; {machine()}")
    seed, base_date, vehicles = 11, None, max(50, needed // 2)
    if args.state_dir is not None:
        meta = fleet_of(args.state_dir)
        seed, base_date = meta["seed"], date.fromisoformat(meta["base_date"])
        vehicles = min(vehicles, meta["vehicles"])
        args.retention_days = meta.get("retention_days", args.retention_days)
        print(f"  with history: {args.state_dir} (fleet seed {seed}, base date {base_date}, "
              f"{vehicles:,} of its vehicles), against an empty state directory")
    started = time.perf_counter()
    sessions = fleet_sessions(needed, seed=seed, vehicles=vehicles, base_date=base_date)
    if args.transport == "serial":
        blobs = serial_session_bytes(sessions)
    else:
        blobs = [b"".join(lines) for lines in slcan_session_lines(sessions)]
    print(f"  {needed} sessions pre-encoded in {time.perf_counter() - started:.1f} s "
          f"(~{sum(map(len, blobs)) / len(blobs):.0f} bytes each)")
    root = Path(tempfile.mkdtemp(prefix="cbs-bench-tp-"))
    if args.state_dir is None:
        saturation, ok = measure(args, rates, blobs, root, root / "state")
        result("throughput: readouts/s end to end at saturation", saturation, "/s",
               f">= {TARGET_PER_S:,.0f}/s", saturation >= TARGET_PER_S and ok)
        return 0 if ok else 1
    print("\n  empty state:")
    empty, ok_empty = measure(args, rates, blobs, root / "empty", root / "empty" / "state")
    print(f"\n  full history ({args.state_dir}):")
    full, ok_full = measure(args, rates, blobs, root / "full", args.state_dir)
    ok = ok_empty and ok_full
    ratio = full / empty if empty else float("nan")
    print(f"\n  saturation: {empty:,.0f}/s empty, {full:,.0f}/s with the full history")
    result("throughput: readouts/s at saturation, empty state", empty, "/s",
           f">= {TARGET_PER_S:,.0f}/s", empty >= TARGET_PER_S and ok_empty)
    result("throughput: readouts/s at saturation, full history", full, "/s",
           f">= {TARGET_PER_S:,.0f}/s", full >= TARGET_PER_S and ok_full)
    result("throughput full history / empty, at saturation", ratio, "x",
           f">= {TARGET_HISTORY_RATIO:.2f}", ratio >= TARGET_HISTORY_RATIO and ok)
    return 0 if ok else 1


def measure(args: argparse.Namespace, rates: list[float], blobs: list[bytes], work: Path,
            state_dir: Path) -> tuple[float, bool]:
    """One agent on ``state_dir``: the offered loads, then the backlog; (readouts/s at
    saturation, every session received)."""
    work.mkdir(parents=True, exist_ok=True)
    window = "" if args.broker_window is None else f"max_inflight_messages {args.broker_window}"
    broker = MosquittoBroker(work / "broker", extra_config=window).start()
    print(f"  broker window (Receive Maximum): {args.broker_window or 'mosquitto default (20)'}")
    base = f"cbs/v1/{SITE}/{READER}"
    status = Subscriber.for_broker(broker, f"{base}/status").start()
    receiver = Receiver(broker, f"{base}/readout", work / "received.txt")
    print(f"  receiver: {receiver.kind}")
    feeder = PtyFeeder()
    reader_args = (["--serial", feeder.path] if args.transport == "serial" else
                   ["--can-interface", "fastslcan", "--can-channel", feeder.path,
                    "--can-bitrate", "1000000"])
    agent = AgentProcess(work, *reader_args, "--broker", broker.url, "--site", SITE,
                         "--reader", READER, "--state-dir", str(state_dir),
                         "--log-level", args.log_level,
                         # the start-up reminder pass (over 100,000 vehicles with the big
                         # history) out of the measured minutes: bench/latency.py measures it
                         env={"CBS_REMINDERS__STARTUP_DELAY_S": "3600",
                              # the big history's own retention: with a shorter one every
                              # readout would prune ~500 of its old rows (the retention's
                              # catch-up, not the readout's path)
                              "CBS_HISTORY__RETENTION_DAYS": str(args.retention_days)})
    spy = None
    rows = []
    ok = True
    try:
        feeder.wait_host()
        status.wait_for(lambda ms: any(m.json().get("state") == "online" for m in ms),
                        timeout_s=30, what="agent online")
        if args.profile is not None:
            fmt = "raw" if args.profile.suffix == ".txt" else "flamegraph"
            spy = subprocess.Popen(["py-spy", "record", "-o", str(args.profile), "-p",
                                    str(agent.pid), "--threads", "--rate", "250", "--nonblocking",
                                    "--format", fmt, *(["--gil"] if args.profile_gil else [])],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sent = 0
        for rate in rates:
            count = int(rate * args.seconds)
            before = receiver.count()
            cpu0 = cpu_seconds(agent.pid)
            us0 = user_system_seconds(agent.pid)
            t0 = time.time()
            for i in range(count):
                due = t0 + i / rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                feeder.write(blobs[sent + i])
            t_fed = time.time()
            sent += count
            done = wait_count(receiver, sent, timeout_s=max(30.0, args.seconds * 10))
            stamps = [s for s, _ in receiver.lines()[before:sent]]
            cpu = cpu_seconds(agent.pid) - cpu0
            us1 = user_system_seconds(agent.pid)
            span = (max(stamps) - t0) if stamps else float("nan")
            print(f"  offered {rate:,.0f}/s: agent user {us1[0] - us0[0]:.2f} s, system "
                  f"{us1[1] - us0[1]:.2f} s over {span:.1f} s")
            achieved = len(stamps) / span if stamps else 0.0
            after_ms = max(0.0, max(stamps) - t_fed) * 1000 if stamps else float("nan")
            rows.append((f"offered {rate:,.0f}/s", count, f"{achieved:,.0f}/s", f"{after_ms:,.0f} ms",
                         f"{cpu / span:.0%}" if stamps else "-", "" if done else "INCOMPLETE"))
            time.sleep(0.5)
        # Saturation: the whole backlog at once.
        before = receiver.count()
        cpu0 = cpu_seconds(agent.pid)
        t0 = time.time()
        feeder.write(b"".join(blobs[sent:sent + args.sessions]))
        t_fed = time.time()
        sent += args.sessions
        done = wait_count(receiver, sent, timeout_s=max(60.0, args.sessions / 50))
        got = receiver.lines()
        stamps = [s for s, _ in got[before:sent]]
        cpu = cpu_seconds(agent.pid) - cpu0
        span = max(stamps) - t0 if stamps else float("nan")
        saturation = len(stamps) / span if stamps else 0.0
        after_ms = max(0.0, max(stamps) - t_fed) * 1000 if stamps else float("nan")
        rows.append((f"backlog of {args.sessions}", args.sessions, f"{saturation:,.0f}/s",
                     f"{after_ms:,.0f} ms",
                     f"{cpu / span:.0%}" if stamps else "-", "" if done else "INCOMPLETE"))
        ids = [rid for _, rid in got]
        lost = sent - len(set(ids))
        ok = done and lost == 0
        print()
        table(rows, ["load", "sessions", "readouts received", "after last write", "agent CPU",
                     ""])
        print(f"  readouts received {len(ids)} ({len(set(ids))} distinct) of {sent} sessions fed; "
              f"lost {lost}")
        print(f"  agent CPU per readout at saturation: {cpu / max(1, len(stamps)) * 1e3:.2f} ms "
              f"(user + system, all threads; CPython runs one thread at a time)")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
        agent.stop()
        receiver.stop()
        status.stop()
        feeder.close()
        broker.stop()
    if not ok:
        print(f"  agent log tail:\n{agent.tail()}")
    return saturation, ok




if __name__ == "__main__":
    sys.exit(main())
