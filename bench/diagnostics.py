"""The vehicle test on a paced simulated bus: a 14-ECU car with one 200-DTC unit.

    python bench/diagnostics.py [--runs 3] [--dtcs 200] [--answer-delay-ms 2] [--bus-load 0]

``cbs-sim vehicle --pace`` runs the car on an SLCAN pty at 500 kbit/s (every frame takes its
bit time on the bus). The tester runs in this process (the agent's own code, as
``cbs-agent diagnose`` runs it) so that its CPU time is its own, not the interpreter start-up's.

Figures:
* the whole test (first probe to last answer) against the bound: the slowest ECU's own
  chain of requests, which no tester can beat (each request's frame, the ECU's answer delay,
  the answer's frames and the flow control, back to back at the bit rate); goal <= 1.2 x;
* the tester's CPU time per frame on the bus (frames it sent and received);
* the frames on the bus against the physical limit at 500 kbit/s;
* an empty bus (``--ecus none``: ignition off): the test's time against one P2 (every
  address is probed at once; about one P2, not one per round of probes);
* with ``--capture``, where the slowest ECU's time goes, from the simulator's capture (both
  sides' turnarounds: the ECU's answer after a request and its first consecutive frame after
  flow control; the tester's flow control after a first frame and its next request after an
  answer's last frame).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, percentile, result, table  # noqa: E402
from processes import SimulatorProcess  # noqa: E402

from agent.diagnostics.tester import bmw_receive_ids, run_bmw_test  # noqa: E402
from agent.diagnostics.timing import DiagnosticTiming  # noqa: E402
from agent.diagnostics.transport import CanChannel  # noqa: E402
from agent.domain.diagnosis import VehicleTest, bmw_ecu_names  # noqa: E402
from protocols import uds  # noqa: E402
from protocols.isotp_frames import segment  # noqa: E402
from simulators.vehicle import CAR_14, SimulatedCar, bmw_car  # noqa: E402
from simulators.vehicle_sim import frame_bits  # noqa: E402

VIN = "WBA8E5107FK123456"
BITRATE = 500_000
GOAL = 1.2
EMPTY_GOAL = 1.5  # "no_response after about one P2": the P2 and the interface's start and stop
TURNAROUNDS: dict[str, list[float]] = {}  # --capture: every run's, by kind


def chain_bound_s(car: SimulatedCar, address: int) -> float:
    """The least time ECU ``address``'s own chain of requests can take on this bus."""
    ecu = car.ecus[address]
    bit = 1 / BITRATE
    requests = [uds.tester_present_request()] + [uds.read_did_request(d) for d in (
        uds.DID_VIN, uds.DID_SPARE_PART, uds.DID_SOFTWARE, uds.DID_HARDWARE, uds.DID_SERIAL)]
    requests.append(uds.read_dtcs_request())
    requests += [uds.read_occurrences_request(d.code) for d, _ in ecu.dtcs if d.confirmed]
    if address == 0x60:
        requests.append(uds.read_did_request(uds.DID_MILEAGE))
    total = 0.0
    for request in requests:
        (answer,) = [a for a in ecu.answers(request) if a[0] != 0x7F or a[2] != 0x78][-1:]
        frames = segment(answer, address=0xF1)
        total += frame_bits(8) * bit + ecu.config.answer_delay_s  # the request, the delay
        total += sum(frame_bits(8) for _ in frames) * bit  # the answer (padded frames)
        if len(frames) > 1:
            total += frame_bits(8) * bit + ecu.config.cf_gap_s * (len(frames) - 1)  # FC
    ecu.requests = 0
    return total


def _car(work: Path, args: argparse.Namespace, name: str, stats: Path,
         capture: Path | None = None) -> SimulatorProcess:
    return SimulatorProcess(work, "vehicle", "--vin", VIN, "--pace", "--bitrate", str(BITRATE),
                            "--dtcs", f"0x12:{args.dtcs}", "--bus-load", str(args.bus_load),
                            *[x for a in CAR_14 for x in (
                                "--answer-delay-s", f"0x{a:02X}:{args.answer_delay_ms / 1000}")],
                            "--stats", str(stats),
                            *(("--capture", str(capture)) if capture is not None else ()),
                            name=name)


def turnarounds(capture: Path, address: int) -> dict[str, list[float]]:
    """ECU ``address``'s exchanges in a simulator capture (``time_s direction id#data``; ``>``
    tester to car, stamped when the car read it; ``<`` car to tester, stamped when the frame
    had left the bus), split into each side's turnarounds, in seconds."""
    out: dict[str, list[float]] = {"ecu_answer": [], "ecu_first_cf": [], "tester_fc": [],
                                   "tester_next_request": []}
    last: tuple[str, float] | None = None  # what happened last on this ECU's exchange, when
    answer_id = f"{0x600 + address:03X}"
    for line in capture.read_text().splitlines():
        at_text, direction, frame = line.split()
        ident, _, data_hex = frame.partition("#")
        data = bytes.fromhex(data_hex)
        at = float(at_text)
        if direction == ">" and ident == "6F1" and data and data[0] == address:
            kind = data[1] >> 4
            if kind == 3:  # flow control
                if last and last[0] == "ff":
                    out["tester_fc"].append(at - last[1])
                last = ("fc", at)
            elif kind in (0, 1):  # a request
                if last and last[0] == "end":
                    out["tester_next_request"].append(at - last[1])
                last = ("request", at)
        elif direction == "<" and ident == answer_id and len(data) > 1:
            kind = data[1] >> 4
            if kind in (0, 1) and last and last[0] == "request":
                out["ecu_answer"].append(at - last[1])
            if kind == 2 and last and last[0] == "fc":
                out["ecu_first_cf"].append(at - last[1])
            if kind == 0:
                last = ("end", at) if data[2] != 0x7F or data[4] != 0x78 else ("request", at)
            elif kind == 1:
                last = ("ff", at)
            elif kind == 2:
                last = ("end", at)  # the last CF ends it; a later CF only moves the mark
    return out


def _test(port: str, addresses: list[int]) -> tuple[VehicleTest, float, float]:
    channel = CanChannel("slcan", port, bitrate=BITRATE, receive_ids=bmw_receive_ids(addresses))
    try:
        sys.setswitchinterval(0.001)  # as cbs-agent diagnose does
        cpu0, wall0 = time.process_time(), time.monotonic()
        test = run_bmw_test(channel, addresses, timing=DiagnosticTiming())
        return test, time.process_time() - cpu0, time.monotonic() - wall0
    finally:
        channel.close()


def one_run(work: Path, args: argparse.Namespace, run: int, slowest: int) -> dict[str, float]:
    stats = work / f"stats-{run}.json"
    capture = work / f"capture-{run}.txt" if args.capture else None
    sim = _car(work, args, f"car-{run}", stats, capture)
    try:
        test, cpu, wall = _test(sim.port, sorted(bmw_ecu_names()))
    finally:
        sim.stop()
    # The slowest ECU's chain alone (a car of its own): the tester's own cost per request,
    # without the other ECUs' traffic.
    alone_sim = _car(work, args, f"alone-{run}", work / f"alone-{run}.json")
    try:
        _, _, alone = _test(alone_sim.port, [slowest])
    finally:
        alone_sim.stop()
    counters = json.loads(stats.read_text())
    frames = counters["tester_frames"] + counters["car_frames"]
    if test.outcome != "complete" or len(test.ecus) != len(CAR_14):
        print(f"run {run + 1}: {test.outcome}, {len(test.ecus)} ECUs: "
              f"{[e.errors for e in test.ecus if e.errors]}", flush=True)
    if capture is not None:
        for name, values in turnarounds(capture, slowest).items():
            TURNAROUNDS.setdefault(name, []).extend(values)
    return {"wall_s": wall, "cpu_s": cpu, "frames": frames, "alone_s": alone,
            "complete": float(test.outcome == "complete" and len(test.ecus) == len(CAR_14)),
            "bus_busy_s": counters["bus_busy_s"], "requests": counters["requests"]}


def empty_bus_s(work: Path, run: int) -> float:
    """The whole test on a bus with nothing on it (every address of the table absent)."""
    sim = SimulatorProcess(work, "vehicle", "--ecus", "none", "--pace", "--bitrate",
                           str(BITRATE), name=f"empty-{run}")
    try:
        test, _, wall = _test(sim.port, sorted(bmw_ecu_names()))
    finally:
        sim.stop()
    if test.outcome != "no_response":
        print(f"empty bus, run {run + 1}: {test.outcome}", flush=True)
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dtcs", type=int, default=200)
    parser.add_argument("--answer-delay-ms", type=float, default=2.0)
    parser.add_argument("--bus-load", type=float, default=0.0)
    parser.add_argument("--capture", action="store_true",
                        help="capture the bus and print both sides' turnarounds")
    args = parser.parse_args(argv)
    print(f"bench/diagnostics.py: {machine()}")
    car = SimulatedCar(bmw_car(VIN, CAR_14, dtcs={0x12: args.dtcs}))
    for ecu in car.ecus.values():
        ecu.config.answer_delay_s = args.answer_delay_ms / 1000
    bounds = {a: chain_bound_s(car, a) for a in car.ecus}
    slowest = max(bounds, key=lambda a: bounds[a])
    # An absent address's chain is its probe: P2 without an answer.
    bound = max(bounds[slowest], DiagnosticTiming().p2_s)
    runs = []
    with tempfile.TemporaryDirectory(prefix="cbs-bench-diag-") as tmp:
        for run in range(args.runs):
            runs.append(one_run(Path(tmp), args, run, slowest))
            runs[-1]["empty_s"] = empty_bus_s(Path(tmp), run)
    wall = median([r["wall_s"] for r in runs])
    cpu_per_frame_us = median([r["cpu_s"] / r["frames"] * 1e6 for r in runs])
    frames_per_s = median([r["frames"] / r["wall_s"] for r in runs])
    load = median([r["bus_busy_s"] / r["wall_s"] for r in runs])
    limit_per_s = BITRATE / frame_bits(8)
    table([[f"run {i + 1}{'' if r['complete'] else ' (incomplete)'}", f"{r['wall_s']:.3f}",
            f"{r['wall_s'] / bound:.2f}", f"{r['alone_s'] / bound:.2f}",
            f"{r['cpu_s']:.3f}", int(r["frames"]), int(r["requests"]),
            f"{r['bus_busy_s'] / r['wall_s'] * 100:.1f} %"] for i, r in enumerate(runs)],
          ["", "test s", "x bound", "alone x bound", "CPU s", "frames", "requests",
           "bus load"])
    print(f"bound: ECU 0x{slowest:02X}'s own chain, {bounds[slowest]:.3f} s, or one P2 for "
          f"an absent address, whichever is longer: {bound:.3f} s "
          f"({args.dtcs} DTCs, answer delay {args.answer_delay_ms:g} ms, {BITRATE} bit/s); "
          f"physical limit {limit_per_s:,.0f} frames/s of 8 bytes")
    for name, values in TURNAROUNDS.items():
        if values:
            print(f"ECU 0x{slowest:02X} {name}: median {median(values) * 1000:.3f} ms, "
                  f"p90 {percentile(values, 90) * 1000:.3f} ms ({len(values)})")
    result("diagnostics: whole test / bound", wall / bound, "x", f"<= {GOAL}", wall / bound <= GOAL)
    result("diagnostics: whole test", wall, "s", "-", None)
    alone = median([r["alone_s"] for r in runs])
    result(f"diagnostics: ECU 0x{slowest:02X}'s chain alone / bound", alone / bound, "x", "-",
           None)
    p2 = DiagnosticTiming().p2_s
    empty = median([r["empty_s"] for r in runs])
    print(f"empty bus ({len(bmw_ecu_names())} addresses probed, P2 {p2 * 1000:g} ms): "
          + ", ".join(f"{r['empty_s']:.3f} s" for r in runs))
    result("diagnostics: empty bus / P2", empty / p2, "x", f"<= {EMPTY_GOAL}",
           empty / p2 <= EMPTY_GOAL)
    result("diagnostics: tester CPU per frame", cpu_per_frame_us, "us", "-", None)
    result("diagnostics: frames on the bus", frames_per_s, f"frames/s of {limit_per_s:,.0f}",
           "-", None)
    result("diagnostics: bus load", load * 100, "%", "-", None)
    result("diagnostics: complete runs", sum(r["complete"] for r in runs), f"of {len(runs)}",
           f"{len(runs)}", all(r["complete"] for r in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
