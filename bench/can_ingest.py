"""CAN ingest on a saturated bus: the SLCAN simulator on a pseudo-terminal plays background
traffic at a given load with key sessions among it; the agent reads it through python-can.

    python bench/can_ingest.py [--bitrate 1000000] [--bus-load 0.95] [--seconds 20]
                               [--interfaces fastslcan,slcan]

Prints, per interface: frames per second the agent took off the adapter, the agent's CPU use
(user+system time over wall time, share of one core), and key sessions played vs published.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402
from _common import result as report
from broker import MosquittoBroker, Subscriber  # noqa: E402
from processes import AgentProcess, SimulatorProcess  # noqa: E402

TARGET_CPU = 0.20

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run(interface: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    broker = MosquittoBroker(work / f"broker-{interface}").start()
    base = f"cbs/v1/bench/{interface}"
    subscriber = Subscriber.for_broker(broker, f"{base}/#").start()
    sim = SimulatorProcess(work, "can", "--seed", "4", "--sessions", "0", "--interval-s",
                           str(args.interval_s), "--vehicles", "20", "--bitrate", str(args.bitrate),
                           "--bus-load", str(args.bus_load), name=f"sim-{interface}")
    agent = AgentProcess(work, "--can-interface", interface, "--can-channel", sim.port,
                         "--can-bitrate", str(args.bitrate), "--broker", broker.url,
                         "--site", "bench", "--reader", interface, "--state-dir",
                         str(work / f"state-{interface}"), "--log-level", "WARNING",
                         name=f"agent-{interface}")
    try:
        started = time.monotonic()
        time.sleep(2.0)  # start-up, first sessions
        pid = agent.process.pid  # type: ignore[union-attr]
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        played0 = len(sim.truth())
        time.sleep(args.seconds)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        played = sim.truth()[played0:]
        sim.stop()  # stop playing; let the agent finish what it has
        time.sleep(2.0)
        statuses = [m.json() for m in subscriber.snapshot() if m.topic == f"{base}/status"]
        outcomes = {m.json().get("vehicle", {}).get("vin") for m in subscriber.snapshot()
                    if m.topic == f"{base}/readout"}
        expected = [r for r in played if r["expected"] == "readout" and not r["disturbed"]]
        lost = [r for r in expected if r["vin"] not in outcomes]
        uptime = time.monotonic() - started
        agent.terminate()
        final = [m.json() for m in subscriber.snapshot() if m.topic == f"{base}/status"
                 and m.json().get("counters")]
        counters = final[-1]["counters"] if final else {}
        wall = t1 - t0
        frames_total = counters.get("frames", 0) + counters.get("other_frames", 0)
        return {"cpu_share": (cpu1 - cpu0) / wall, "sessions_played": len(played),
                "readouts_expected": len(expected), "lost": len(lost),
                "frames_per_s": frames_total / uptime, "status_messages": len(statuses)}
    finally:
        agent.stop()
        sim.stop()
        subscriber.stop()
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--bus-load", type=float, default=0.95)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval-s", type=float, default=0.2)
    parser.add_argument("--interfaces", default="fastslcan,slcan")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cbs-bench-can-"))
    frames_per_s = args.bus_load * args.bitrate / 111
    print(f"CAN ingest: {args.bitrate} bit/s at {args.bus_load:.0%} load "
          f"(~{frames_per_s:,.0f} frames/s offered), {args.seconds:.0f} s measured; {machine()}")
    print(f"{'interface':<10} {'frames/s taken':>15} {'agent CPU (1 core)':>18} {'target':>7} "
          f"{'played':>7} {'readouts':>9} {'lost':>5}")
    results = {}
    for interface in args.interfaces.split(","):
        result = results[interface] = run(interface, args, work)
        print(f"{interface:<10} {result['frames_per_s']:>15,.0f} {result['cpu_share']:>17.1%} {'<=20%':>7} "
              f"{result['sessions_played']:>7} {result['readouts_expected']:>9} {result['lost']:>5}")
    fast = results.get("fastslcan")
    if fast is not None:
        ok = fast["lost"] == 0 and fast["readouts_expected"] > 0
        report("CAN ingest, fastslcan: agent CPU (share of one core)", fast["cpu_share"] * 100,
               "%", f"<= {TARGET_CPU:.0%}", fast["cpu_share"] <= TARGET_CPU and ok)
        report("CAN ingest, fastslcan: key readouts lost", fast["lost"], "", "0", ok)
        stock = results.get("slcan")
        if stock is not None and stock["cpu_share"] > 0:
            report("CAN ingest: fastslcan CPU / stock slcan CPU", 100 * fast["cpu_share"]
                   / stock["cpu_share"], "%", "", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
