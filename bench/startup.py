"""Start-up: from process start to ``status: online`` on the broker.

    python bench/startup.py [--runs 5] [--transport serial|can]

Spawns ``python -m agent run`` (a serial reader on a pty, or ``fastslcan`` on a pty) against a
private mosquitto, ``--runs`` times, each with a fresh state directory and its own reader name
(so no retained status of an earlier run counts); a subscriber that is already subscribed
stamps the first ``online`` status. The figure is the median of the runs. Also printed: the
interpreter alone (``python -c pass``) and the import time of ``agent.wiring``
(``python -X importtime``), for the record.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PtyFeeder, machine, result, table  # noqa: E402
from broker import MosquittoBroker, Subscriber  # noqa: E402

TARGET_S = 1.5
SITE = "bench"


def import_time_s(module: str) -> float:
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, check=True)
    match = re.search(rf"\|\s+(\d+) \| {re.escape(module)}$", run.stderr, re.MULTILINE)
    return int(match.group(1)) / 1e6 if match else float("nan")


def interpreter_s() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--transport", choices=["serial", "can"], default="serial")
    args = parser.parse_args(argv)

    print(f"start-up: process start -> status online ({args.transport} reader); {machine()}")
    work = Path(tempfile.mkdtemp(prefix="cbs-bench-start-"))
    broker = MosquittoBroker(work / "broker").start()
    subscriber = Subscriber.for_broker(broker, f"cbs/v1/{SITE}/+/status").start()
    times: list[float] = []
    rows = []
    try:
        for run in range(args.runs):
            reader = f"start{run}"
            feeder = PtyFeeder()
            reader_args = (["--serial", feeder.path] if args.transport == "serial" else
                           ["--can-interface", "fastslcan", "--can-channel", feeder.path])
            log = (work / f"agent-{run}.log").open("w")
            spawned = time.time()
            process = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", *reader_args, "--broker", broker.url,
                 "--site", SITE, "--reader", reader, "--state-dir", str(work / f"state-{run}")],
                stdout=log, stderr=log, cwd=work)
            topic = f"cbs/v1/{SITE}/{reader}/status"
            try:
                online = subscriber.wait_for(
                    lambda ms, t=topic: any(m.topic == t and m.json().get("state") == "online"
                                            for m in ms), timeout_s=30, what="online status")
                first = next(m for m in online if m.topic == topic
                             and m.json().get("state") == "online")
                elapsed = first.received_at - spawned
                times.append(elapsed)
                rows.append((f"run {run + 1}", f"{elapsed:.3f}"))
            finally:
                process.terminate()
                process.wait(timeout=20)
                log.close()
                feeder.close()
        interp = interpreter_s()
        imports = import_time_s("agent.wiring")
        table(rows + [("python -c pass (interpreter alone)", f"{interp:.3f}"),
                      ("import agent.wiring (-X importtime)", f"{imports:.3f}")],
              ["", "seconds"])
        median = statistics.median(times)
        result("start-up to status online (median of runs)", median, "s", f"<= {TARGET_S} s",
               median <= TARGET_S)
    finally:
        subscriber.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
