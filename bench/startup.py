"""Start-up: from process start to ``status: online`` on the broker.

    python bench/startup.py [--runs 5] [--transport serial|can] [--state-dir DIR]

Spawns ``python -m agent run`` (a serial reader on a pty, or ``fastslcan`` on a pty) against a
private mosquitto, ``--runs`` times, each with a fresh state directory and its own reader name
(so no retained status of an earlier run counts); a subscriber that is already subscribed
stamps the first ``online`` status. The figure is the median of the runs. Also printed: the
interpreter alone (``python -c pass``) and the import time of ``agent.wiring``
(``python -X importtime``), for the record.
"""

from __future__ import annotations

import argparse
import os
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
TARGET_FULL_S = 1.0
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
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="a filled state directory (bench/big_history.py) to alternate with")
    args = parser.parse_args(argv)
    from _common import rss_kib

    print(f"start-up: process start -> status online ({args.transport} reader); {machine()}")
    work = Path(tempfile.mkdtemp(prefix="cbs-bench-start-"))
    broker = MosquittoBroker(work / "broker").start()
    subscriber = Subscriber.for_broker(broker, f"cbs/v1/{SITE}/+/status").start()
    times: list[float] = []
    full_times: list[float] = []
    rss: dict[bool, list[float]] = {False: [], True: []}
    rows = []
    runs = args.runs * (2 if args.state_dir is not None else 1)
    env = {**os.environ, "CBS_HISTORY__RETENTION_DAYS": "3650"}
    try:
        for run in range(runs):
            full = args.state_dir is not None and run % 2 == 1
            state = args.state_dir if full else work / f"state-{run}"
            reader = f"start{run}"
            feeder = PtyFeeder()
            reader_args = (["--serial", feeder.path] if args.transport == "serial" else
                           ["--can-interface", "fastslcan", "--can-channel", feeder.path])
            log = (work / f"agent-{run}.log").open("w")
            spawned = time.time()
            process = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", *reader_args, "--broker", broker.url,
                 "--site", SITE, "--reader", reader, "--state-dir", str(state)],
                stdout=log, stderr=log, cwd=work, env=env)
            topic = f"cbs/v1/{SITE}/{reader}/status"
            try:
                online = subscriber.wait_for(
                    lambda ms, t=topic: any(m.topic == t and m.json().get("state") == "online"
                                            for m in ms), timeout_s=30, what="online status")
                first = next(m for m in online if m.topic == topic
                             and m.json().get("state") == "online")
                elapsed = first.received_at - spawned
                (full_times if full else times).append(elapsed)
                time.sleep(1.0)
                rss[full].append(rss_kib(process.pid) / 1024)
                rows.append((f"run {run + 1}" + (" (full history)" if full else ""),
                             f"{elapsed:.3f}", f"{rss[full][-1]:.1f}"))
            finally:
                process.terminate()
                process.wait(timeout=20)
                log.close()
                feeder.close()
        interp = interpreter_s()
        imports = import_time_s("agent.wiring")
        table(rows + [("python -c pass (interpreter alone)", f"{interp:.3f}", ""),
                      ("import agent.wiring (-X importtime)", f"{imports:.3f}", "")],
              ["", "seconds", "RSS MB 1 s after online"])
        median = statistics.median(times)
        result("start-up to status online (median of runs)", median, "s", f"<= {TARGET_S} s",
               median <= TARGET_S)
        if full_times:
            full_median = statistics.median(full_times)
            result("start-up to status online, full history (median)", full_median, "s",
                   f"<= {TARGET_FULL_S} s", full_median <= TARGET_FULL_S)
            growth = statistics.median(rss[True]) / statistics.median(rss[False]) - 1
            result("RSS after start-up, full history vs empty", growth * 100, "%", "", None)
    finally:
        subscriber.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
