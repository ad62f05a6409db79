"""``cbs-sim vehicle``: a simulated car behind the OBD socket, on an SLCAN pty or a python-can
virtual bus.

The ECUs (simulators/vehicle.py) answer the tester; this runtime moves frames. On the pty it
is a USB-CAN adapter speaking SLCAN (:class:`~simulators.slcan.SlcanAdapter`), which
python-can's ``slcan`` interface opens like hardware. With ``--pace`` every frame occupies
the bus for its bit time at ``--bitrate`` (tester frames too), so a test takes as long as on
a real car; ``--bus-load`` adds other ECUs' traffic. ``--unplug-after-s`` closes the pty
mid-test (the interface goes away). The car's VIN is one of the key fleet's
(simulators/fleet.py, same ``--seed``), so a key read and a vehicle test meet at the desk.

Prints the pty's path (or the virtual channel) on the first line of stdout; with
``--capture`` writes every frame as ``time_s direction id#data`` lines (``>`` tester to
car, ``<`` car to tester; background traffic is not written).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from simulators.fleet import Fleet
from simulators.pty_port import PtyPort
from simulators.slcan import LineSplitter, SlcanAdapter, SlcanFrame, encode_frame_line
from simulators.vehicle import CAR_14, EcuConfig, SimulatedCar, bmw_car, obd2_car

logger = logging.getLogger(__name__)

_BACKGROUND_IDS = (0x0A8, 0x0AA, 0x0C4, 0x12F, 0x1A0, 0x21A, 0x2CA, 0x328, 0x3B4, 0x4F8, 0x5C0)


def frame_bits(dlc: int) -> int:
    """Bits a classic 11-bit data frame occupies (with typical stuffing, and the 3-bit
    interframe space): 8 data bytes are about 130 bits."""
    return int((47 + 8 * dlc) * 1.1) + 3


class VehicleBus:
    """The car on a transport: ``pty`` (SLCAN) or a python-can ``virtual`` channel."""

    def __init__(self, car: SimulatedCar, *, transport: str = "pty", channel: str = "vehicle",
                 link: Path | None = None, bitrate: int = 500_000, pace: bool = False,
                 bus_load: float = 0.0, unplug_after_s: float | None = None,
                 capture: Path | None = None, seed: int = 0, stdout: TextIO = sys.stdout,
                 stats: Path | None = None) -> None:
        if not 0 <= bus_load <= 0.9:
            raise ValueError("bus load must be between 0 and 0.9")
        self.car = car
        self.transport = transport
        self.channel = channel
        self.bitrate = bitrate
        self.pace = pace
        self.bus_load = bus_load
        self.unplug_after_s = unplug_after_s
        self.stdout = stdout
        self.stats_path = stats
        self._capture = capture.open("w", encoding="ascii") if capture else None
        self._rng = random.Random(f"cbs-sim/vehicle-background/{seed}")
        self._port = PtyPort(link=link) if transport == "pty" else None
        self._bus: Any = None
        self._adapter = SlcanAdapter()
        self._splitter = LineSplitter()
        # The car's frames waiting for the bus: when each was ready, id, data, background.
        self._out: deque[tuple[float, int, bytes, bool]] = deque()
        # The car's frame on the wire and when it is done (paced: it reaches the tester then;
        # the runtime goes on reading the tester's frames meanwhile).
        self._on_wire: tuple[float, tuple[float, int, bytes, bool]] | None = None
        self._bus_free_at = 0.0
        self._next_background = 0.0
        self._first_request_at: float | None = None
        self._last_request_at: float | None = None
        self._started = time.monotonic()
        self._stop = False
        self.busy_s = 0.0  # bus time taken by every frame (tester, car, background)
        self.car_frames = 0
        self.tester_frames = 0
        self.background_frames = 0

    # -- running --------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        self._stop = True

    def run(self) -> int:
        if self._port is not None:
            path = self._port.open()
            print(path, file=self.stdout, flush=True)
        else:
            import can
            self._bus = can.Bus(interface="virtual", channel=self.channel, receive_own_messages=False)
            print(self.channel, file=self.stdout, flush=True)
        try:
            while not self._stop:
                self._turn()
                if self._unplug_due():
                    logger.warning("unplugging the interface (as --unplug-after-s asked)")
                    break
        finally:
            self._close()
        return 0

    def _unplug_due(self) -> bool:
        return (self.unplug_after_s is not None and self._first_request_at is not None
                and time.monotonic() - self._first_request_at >= self.unplug_after_s)

    def _turn(self) -> None:
        now = time.monotonic()
        wait = 0.02
        due = self.car.next_due()
        if due is not None:
            wait = min(wait, max(0.0, due - now))
        if self._on_wire is not None:
            wait = min(wait, max(0.0, self._on_wire[0] - now))
        elif self._out:
            wait = min(wait, max(0.0, self._bus_takes_next() - now)) if self.pace else 0.0
        if self.bus_load:
            wait = min(wait, max(0.0, self._next_background - now))
        self._receive(wait)
        now = time.monotonic()
        for arbitration_id, data in self.car.poll(now):
            self._out.append((now, arbitration_id, data, False))
        if self.bus_load and self._active():
            # Every frame due since the last turn, each ready at its own time, so the other
            # traffic takes its share of the bus however late this loop wakes.
            per_s = self.bus_load * self.bitrate / frame_bits(8)
            if self._next_background < now - 0.05:  # the first turn, or after a pause
                self._next_background = now
            while self._next_background <= now:
                self._out.append((self._next_background, self._rng.choice(_BACKGROUND_IDS),
                                  bytes(self._rng.getrandbits(8) for _ in range(8)), True))
                self._next_background += self._rng.expovariate(per_s)
        self._transmit(now)

    def _active(self) -> bool:
        return self._port is None or (self._port.host_connected() and self._adapter.is_open)

    def _receive(self, wait_s: float) -> None:
        frames: list[tuple[int, bytes]] = []
        if self._port is not None:
            if self._port.wait_readable(wait_s):
                for line in self._splitter.feed(self._port.read()):
                    reply = self._adapter.handle(line)
                    self._write(reply)
                frames = [(f.arbitration_id, f.data) for f in self._adapter.host_frames
                          if not f.extended and not f.remote]
                self._adapter.host_frames.clear()
        else:
            message = self._bus.recv(wait_s)
            while message is not None:
                if not message.is_extended_id:
                    frames.append((message.arbitration_id, bytes(message.data)))
                message = self._bus.recv(0)
        for arbitration_id, data in frames:
            now = time.monotonic()
            self.tester_frames += 1
            self._occupy(len(data), now)
            self._log(">", arbitration_id, data, now)
            if self._first_request_at is None:
                self._first_request_at = now
            self._last_request_at = now
            self.car.receive(arbitration_id, data, now)

    def _occupy(self, dlc: int, now: float) -> float:
        """The bus carries a frame of ``dlc`` bytes from max(now, free): when it is done."""
        bit_time = frame_bits(dlc) / self.bitrate
        start = max(now, self._bus_free_at)
        self._bus_free_at = start + bit_time
        self.busy_s += bit_time
        return self._bus_free_at

    def _transmit(self, now: float) -> None:
        """Put the car's frames on the bus, in the order they were ready. Paced, the bus runs
        on its own clock: the next frame starts when the bus is free and the frame is ready,
        not when this loop happens to wake, and it reaches the tester once it is done (a frame
        done within 0.5 ms is handed over at once)."""
        while True:
            if self._on_wire is not None:
                done, frame = self._on_wire
                if done > now:
                    return  # _turn waits for it, reading the tester's frames meanwhile
                self._on_wire = None
                self._deliver(frame)
                now = time.monotonic()
            if not self._out:
                return
            if not self.pace:
                self._deliver(self._out.popleft())
                continue
            start = self._bus_takes_next()
            if start > now:
                return
            frame = self._next_frame()
            bit_time = frame_bits(len(frame[2])) / self.bitrate
            self._bus_free_at = done = start + bit_time
            self.busy_s += bit_time
            if done > now + 0.0005:
                # The frame is on the wire until `done`: deliver it then, like a real adapter.
                self._on_wire = (done, frame)
                continue
            self._deliver(frame)
            now = time.monotonic()

    def _bus_takes_next(self) -> float:
        """When the bus takes the next of the waiting frames."""
        return max(self._bus_free_at, min(f[0] for f in self._out))

    def _next_frame(self) -> tuple[float, int, bytes, bool]:
        """The waiting frame that was ready first (of frames ready together, the first
        queued)."""
        out = self._out
        first = min(range(len(out)), key=lambda i: out[i][0])
        frame = out[first]
        del out[first]
        return frame

    def _deliver(self, frame: tuple[float, int, bytes, bool]) -> None:
        _, arbitration_id, data, background = frame
        if not self._active():
            return
        if background:
            self.background_frames += 1
        else:
            self.car_frames += 1
            self._log("<", arbitration_id, data, time.monotonic())
        self._send(arbitration_id, data, droppable=background)

    def _send(self, arbitration_id: int, data: bytes, *, droppable: bool) -> None:
        if self._port is None:
            import can
            self._bus.send(can.Message(arbitration_id=arbitration_id, data=data,
                                       is_extended_id=False))
            return
        self._write(encode_frame_line(SlcanFrame(arbitration_id, data)), droppable=droppable)

    def _write(self, data: bytes, *, droppable: bool = False) -> None:
        if self._port is None or not data:
            return
        view = memoryview(data)
        deadline = time.monotonic() + 1.0
        while view:
            written = self._port.write_some(view)
            view = view[written:]
            if view:
                if droppable or time.monotonic() > deadline:
                    return
                self._port.wait_writable(0.01)

    def _log(self, direction: str, arbitration_id: int, data: bytes, at: float) -> None:
        if self._capture is not None:
            self._capture.write(f"{at - self._started:.6f} {direction} "
                                f"{arbitration_id:03X}#{data.hex().upper()}\n")

    def _close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port.remove_link()
        if self._bus is not None:
            self._bus.shutdown()
        if self._capture is not None:
            self._capture.close()
        if self.stats_path is not None:
            span = ((self._last_request_at or 0.0) - (self._first_request_at or 0.0))
            self.stats_path.write_text(json.dumps({
                "tester_frames": self.tester_frames, "car_frames": self.car_frames,
                "background_frames": self.background_frames, "bus_busy_s": round(self.busy_s, 6),
                "first_to_last_request_s": round(span, 6),
                "requests": self.car.requests_seen, "badly_padded": self.car.badly_padded,
            }))


# -- the command ----------------------------------------------------------------------------


def _int(text: str) -> int:
    return int(text, 0)


def _addresses(text: str) -> list[int]:
    """``0x12,0x60``; ``none`` for a car without ECUs (ignition off)."""
    if text.strip().lower() == "none":
        return []
    return [int(part, 0) for part in text.split(",") if part.strip()]


def _per_ecu(items: Sequence[str], convert: Any) -> dict[int, Any]:
    """``ADDR`` or ``ADDR:VALUE`` options into {address: value}."""
    out: dict[int, Any] = {}
    for item in items:
        address, _, value = item.partition(":")
        out[int(address, 0)] = convert(value) if value else convert(None)
    return out


def add_vehicle_subcommand(subparsers: Any, name: str = "vehicle") -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        name, help="a car's ECUs behind the OBD socket (SLCAN pty or virtual bus)",
        description=__doc__.split("\n\n")[0].replace("``", "") if __doc__ else None)
    p.add_argument("--protocol", choices=["bmw", "obd2"], default="bmw")
    p.add_argument("--ecus", type=_addresses, default=None, metavar="A,B,...",
                   help="bmw: ECU addresses, or none (default: a 14-ECU car)")
    p.add_argument("--obd-ecus", type=int, default=2,
                   help="obd2: how many ECUs (0-8, default 2)")
    p.add_argument("--seed", type=int, default=0, help="the key fleet's seed (same VINs)")
    p.add_argument("--vehicle", type=int, default=0, help="which of the fleet's vehicles (index)")
    p.add_argument("--vin", default=None, help="this VIN instead of the fleet's")
    p.add_argument("--base-date", type=date.fromisoformat, default=None)
    p.add_argument("--dtcs", action="append", default=[], metavar="ADDR:N",
                   help="N generated DTCs (0-200) on ECU ADDR; repeatable")
    p.add_argument("--mileage-km", type=int, default=48_412)
    p.add_argument("--answer-delay-s", action="append", default=[], metavar="ADDR:S",
                   help="the ECU answers S seconds after a request (default 0.002)")
    p.add_argument("--cf-gap-s", action="append", default=[], metavar="ADDR:S",
                   help="the ECU's own pause between consecutive frames")
    p.add_argument("--no-padding", action="store_true", help="ECUs send frames unpadded")
    faults = p.add_argument_group("faults (each per ECU, repeatable)")
    faults.add_argument("--pending", action="append", default=[], metavar="ADDR:N",
                        help="N x NRC 0x78 before each answer to 19 02")
    faults.add_argument("--busy", action="append", default=[], metavar="ADDR:N",
                        help="N x NRC 0x21 before each answer to 22 (ReadDataByIdentifier)")
    faults.add_argument("--unsupported", action="append", default=[], metavar="ADDR:DID",
                        help="the ECU refuses this DID with NRC 0x31")
    faults.add_argument("--stop-after", action="append", default=[], metavar="ADDR:N",
                        help="the ECU answers N requests, then never again")
    faults.add_argument("--wrong-sequence", action="append", default=[], metavar="ADDR",
                        help="a wrong consecutive-frame sequence number in every long answer")
    faults.add_argument("--lose-frame", action="append", default=[], metavar="ADDR",
                        help="a consecutive frame of every long answer is never sent")
    faults.add_argument("--ignore-flow-control", action="append", default=[], metavar="ADDR",
                        help="the ECU sends consecutive frames without waiting for flow control")
    faults.add_argument("--vin-mismatch", action="append", default=[], metavar="ADDR",
                        help="the ECU reports another vehicle's VIN")
    faults.add_argument("--bus-load", type=float, default=0.0,
                        help="other ECUs' traffic, share of the bit rate (0-0.9)")
    faults.add_argument("--unplug-after-s", type=float, default=None,
                        help="close the interface this long after the first request")
    p.add_argument("--transport", choices=["pty", "virtual"], default="pty")
    p.add_argument("--channel", default="vehicle", help="virtual bus channel name")
    p.add_argument("--link", type=Path, default=None, help="symlink to the pty")
    p.add_argument("--bitrate", type=int, default=500_000)
    p.add_argument("--pace", action="store_true", help="frames take their bit time on the bus")
    p.add_argument("--capture", type=Path, default=None, help="write every frame here")
    p.add_argument("--stats", type=Path, default=None, help="JSON counters here on exit")
    p.add_argument("--truth", type=Path, default=None, help="the ECUs' contents as JSON here")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=run_vehicle_command)
    return p


def build_car(args: argparse.Namespace) -> SimulatedCar:
    vin = args.vin or Fleet(args.seed, args.base_date).vehicles[args.vehicle].vin
    other_vin = Fleet(args.seed, args.base_date).vehicles[args.vehicle + 1].vin \
        if args.vin is None else vin[:-1] + ("0" if vin[-1] != "0" else "1")
    if args.protocol == "obd2":
        ecus: list[EcuConfig] = obd2_car(vin, max(0, min(8, args.obd_ecus)), seed=args.seed,
                                         mileage_km=args.mileage_km)
    else:
        counts = _per_ecu(args.dtcs, lambda v: int(v or 0))
        if any(not 0 <= n <= 200 for n in counts.values()):
            raise ValueError("--dtcs takes 0 to 200 per ECU")
        ecus = bmw_car(vin, CAR_14 if args.ecus is None else args.ecus, seed=args.seed, dtcs=counts,
                       mileage_km=args.mileage_km)
    by_address = {e.address: e for e in ecus}

    def each(items: Sequence[str], convert: Any) -> dict[int, Any]:
        found = _per_ecu(items, convert)
        unknown = sorted(set(found) - set(by_address))
        if unknown:
            raise ValueError(f"no ECU at {', '.join(f'0x{a:02X}' for a in unknown)}")
        return found

    for address, value in each(args.answer_delay_s, float).items():
        by_address[address].answer_delay_s = value
    for address, value in each(args.cf_gap_s, float).items():
        by_address[address].cf_gap_s = value
    for address, n in each(args.pending, lambda v: int(v or 1)).items():
        by_address[address].faults.pending = n
    for address, n in each(args.busy, lambda v: int(v or 1)).items():
        by_address[address].faults.busy = n
    for address, did in each(args.unsupported, lambda v: int(v or "0xF18C", 16)).items():
        faults = by_address[address].faults
        faults.unsupported_dids = faults.unsupported_dids | {did}
    for address, n in each(args.stop_after, lambda v: int(v or 1)).items():
        by_address[address].faults.stop_after = n
    for address in each(args.wrong_sequence, lambda v: True):
        by_address[address].faults.wrong_sequence = True
    for address in each(args.lose_frame, lambda v: True):
        by_address[address].faults.lose_frame = True
    for address in each(args.ignore_flow_control, lambda v: True):
        by_address[address].faults.ignore_flow_control = True
    for address in each(args.vin_mismatch, lambda v: True):
        by_address[address].vin = other_vin
    if args.no_padding:
        for ecu in ecus:
            ecu.padding = None
    return SimulatedCar(ecus, args.protocol)


def car_truth(car: SimulatedCar) -> list[dict[str, Any]]:
    """What each ECU holds, for tests to compare a report against."""
    return [{"address": address, "vin": ecu.config.vin, "part_number": ecu.config.part_number,
             "software": ecu.config.software, "hardware": ecu.config.hardware,
             "serial": ecu.config.serial, "mileage_km": ecu.config.mileage_km,
             "dtcs": [{"code": d.code_hex, "status": d.status, "occurrences": n,
                       "obd_mode": d.obd_mode} for d, n in ecu.dtcs]}
            for address, ecu in sorted(car.ecus.items())]


def run_vehicle_command(args: argparse.Namespace) -> int:
    level = logging.WARNING if args.verbose <= 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        car = build_car(args)
        bus = VehicleBus(car, transport=args.transport, channel=args.channel, link=args.link,
                         bitrate=args.bitrate, pace=args.pace, bus_load=args.bus_load,
                         unplug_after_s=args.unplug_after_s, capture=args.capture,
                         seed=args.seed, stats=args.stats)
    except ValueError as exc:
        print(f"cbs-sim vehicle: {exc}", file=sys.stderr)
        return 2
    if args.truth is not None:
        args.truth.write_text(json.dumps(car_truth(car), indent=1))

    def stop(signum: int, frame: FrameType | None) -> None:
        bus.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return bus.run()
