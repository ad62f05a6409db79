"""The demo: a simulated key reader on a pseudo-terminal, the agent reading it, a private
mosquitto on a free loopback port, and a subscriber printing every readout as it arrives;
then the last car at the OBD socket (``cbs-sim vehicle``) and its vehicle test
(``cbs-agent diagnose``), linked to that car's key readout.

Nothing here is mocked: these are the same programs an appliance runs (``cbs-sim`` stands in
for the reader hardware).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.domain.express import express_verdict

COLOURS = {"ok": "\033[32m", "due_soon": "\033[33m", "overdue": "\033[31m"}
RESET = "\033[0m"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(binary, os.X_OK):
        sys.exit("demo: mosquitto is not installed; run `bash examples/demo.sh`, which installs it")
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return broker, port
        except OSError:
            time.sleep(0.05)
    broker.kill()
    sys.exit("demo: mosquitto did not start")


def paint(status: str, text: str, colour: bool) -> str:
    return f"{COLOURS.get(status, '')}{text}{RESET}" if colour else text


def show(topic: str, payload: dict, colour: bool) -> None:
    kind = topic.rsplit("/", 1)[-1]
    if kind == "readout":
        v, s = payload["vehicle"], payload["summary"]
        express = "yes" if express_verdict(payload).eligible else "no"  # docs/express-lane.md
        print(f"\nREADOUT  {v['vin']}  {v['mileage_km']:,} km  "
              f"{paint(s['status'], s['status'].upper(), colour)}  express lane: {express}")
        for item in payload["services"]:
            f = item["forecast"] or {}
            status = f.get("status", "-")
            km = f"{item['remaining_km']:,} km left" if item["remaining_km"] is not None else ""
            print(f"  {item['type']:<28} {paint(status, f'{status:<9}', colour)} "
                  f"due {f.get('due_date', '-'):<10} ({f.get('basis', '-')}) {km}")
        for cc in payload["check_control"]:
            print(f"  check control 0x{cc['id']:04X} {cc['status']}")
        for dtc in payload["dtcs"]:
            print(f"  fault {dtc['code']} ({dtc['sae']}) {'confirmed' if dtc['confirmed'] else ''}")
    elif kind == "diagnosis":
        v, s = payload["vehicle"], payload["summary"]
        link = payload["key_readout_id"] or "none"
        print(f"\nVEHICLE TEST  {v['vin']}  {payload['outcome']}  {s['ecus_present']} control "
              f"units, {len(payload['absent'])} absent  key readout {link}"
              + ("  VIN MISMATCH" if not v["vin_consistent"] else "")
              + ("  WARNING LAMP" if s["warning_lamp"] else ""))
        for ecu in payload["ecus"]:
            faults = ", ".join(f"{d['code']}{' confirmed' if d['confirmed'] else ''}"
                               f"{' x' + str(d['occurrences']) if d['occurrences'] else ''}"
                               for d in ecu["dtcs"] or [])
            print(f"  0x{ecu['address']:02X} {ecu['name'] or '':<6} {ecu['part_number'] or '':<8} "
                  f"{ecu['software'] or '':<10} {faults}")
    elif kind == "rejected":
        print(f"\nREJECTED {payload['reason']}: {payload['detail']}")
    elif kind == "status":
        print(f"status: {payload['state']}"
              + (f", {payload['counters']['readouts']} readouts, {payload['counters']['rejected']} rejected"
                 if payload.get("counters") else ""))


def vehicle_test(workdir: Path, port: int, vin: str) -> None:
    """The last car read, at the OBD socket: a simulated car with that VIN, one unit with a
    few faults, and one vehicle test, published like the readouts."""
    car = subprocess.Popen([sys.executable, "-m", "simulators.cli", "vehicle", "--vin", vin,
                            "--dtcs", "0x12:3", "--dtcs", "0x60:1"],
                           stdout=subprocess.PIPE, text=True)
    assert car.stdout is not None
    pty = car.stdout.readline().strip()
    print(f"\ndemo: the car {vin} at the OBD socket (simulated, SLCAN on {pty}); testing it ...")
    try:
        subprocess.run([sys.executable, "-m", "agent", "diagnose", "--can-interface", "slcan",
                        "--can-channel", pty, "--broker", f"mqtt://127.0.0.1:{port}",
                        "--site", "demo", "--reader", "desk1", "--state-dir",
                        str(workdir / "state"), "--log-level", "ERROR"], timeout=60, check=False)
    finally:
        car.terminate()
        car.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8, help="key reads to play")
    parser.add_argument("--interval-s", type=float, default=1.0, help="pause between key reads")
    parser.add_argument("--faults", action="store_true", help="inject reader faults (rejections)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-colour", action="store_true")
    parser.add_argument("--desk", action="store_true",
                        help="also run the reception desk in a browser (docs/desk.md) and keep "
                             "it open after the key reads, until Ctrl-C")
    parser.add_argument("--desk-port", type=int, default=8080)
    parser.add_argument("--no-vehicle-test", action="store_true",
                        help="only the key reads, no vehicle test at the end")
    args = parser.parse_args()

    def _stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the demo as Ctrl-C does: everything is stopped

    signal.signal(signal.SIGTERM, _stop)
    colour = sys.stdout.isatty() and not args.no_colour

    workdir = Path(tempfile.mkdtemp(prefix="cbs-demo-"))
    broker, port = start_broker(workdir)
    print(f"demo: started a private mosquitto on 127.0.0.1:{port} (workdir {workdir})")
    seen = threading.Event()
    tested = threading.Event()
    count = {"sessions": 0}
    last_vin: list[str] = []

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        show(message.topic, payload, colour)
        if message.topic.endswith("/readout"):
            last_vin[:] = [payload["vehicle"]["vin"]]
        if message.topic.endswith("/diagnosis"):
            tested.set()
        if message.topic.endswith(("/readout", "/rejected")):
            count["sessions"] += 1
            if count["sessions"] >= args.sessions:
                seen.set()

    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscriber.on_message = on_message
    subscriber.connect("127.0.0.1", port)
    subscriber.subscribe([("cbs/v1/demo/desk1/readout", 1), ("cbs/v1/demo/desk1/rejected", 1),
                          ("cbs/v1/demo/desk1/status", 1), ("cbs/v1/demo/desk1/diagnosis", 1)])
    subscriber.loop_start()

    desk = None
    if args.desk:
        desk = subprocess.Popen([sys.executable, "-m", "agent", "desk", "--site", "demo",
                                 "--broker", f"mqtt://127.0.0.1:{port}",
                                 "--port", str(args.desk_port),
                                 "--state-dir", str(workdir / "desk"), "--log-level", "WARNING"])
        print(f"demo: the reception desk is at http://127.0.0.1:{args.desk_port}/ "
              "(open it now to watch the keys arrive)")
        time.sleep(2.0)
    sim_args = ["--seed", str(args.seed), "--sessions", str(args.sessions),
                "--interval-s", str(args.interval_s), "--linger"]
    if args.faults:
        sim_args += ["--fault-rate", "0.02"]
    sim = subprocess.Popen([sys.executable, "-m", "simulators.cli", "serial", *sim_args],
                           stdout=subprocess.PIPE, text=True)
    assert sim.stdout is not None
    pty = sim.stdout.readline().strip()
    print(f"demo: simulated key reader on {pty}")
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--serial", pty,
                              "--broker", f"mqtt://127.0.0.1:{port}", "--site", "demo",
                              "--reader", "desk1", "--state-dir", str(workdir / "state"),
                              "--log-level", "ERROR"])
    print(f"demo: cbs-agent running; playing {args.sessions} key reads ...")
    try:
        seen.wait(timeout=args.sessions * (args.interval_s + 2) + 20)
        time.sleep(0.5)
        if desk is not None:
            print(f"demo: key reads done; the desk stays at http://127.0.0.1:{args.desk_port}/ "
                  "until Ctrl-C")
            while desk.poll() is None:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if desk is not None and desk.poll() is None:
            desk.send_signal(signal.SIGTERM)
            desk.wait(timeout=20)
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        time.sleep(0.3)
        sim.terminate()
        sim.wait(timeout=10)
        if last_vin and not args.no_vehicle_test:
            vehicle_test(workdir, port, last_vin[0])
            tested.wait(timeout=10)
        subscriber.loop_stop()
        broker.terminate()
        broker.wait(timeout=10)
    print(f"demo: done, {count['sessions']} of {args.sessions} key reads published")
    return 0 if count["sessions"] >= args.sessions else 1


if __name__ == "__main__":
    sys.exit(main())
