"""A simulated car's ECUs, without I/O: what each answers, and how its frames go on the bus.

:class:`SimulatedCar` is fed the tester's CAN frames (:meth:`SimulatedCar.receive`) and
gives the frames its ECUs send when they are due (:meth:`SimulatedCar.poll`); the runtime
(simulators/vehicle_sim.py) moves them over an SLCAN pty or python-can's virtual bus.

``bmw``: ECU ``A`` takes requests on 0x6F1 (byte 0 = ``A``) and answers on ``0x600 + A``
(byte 0 = 0xF1). ``obd2``: ECU ``n`` answers functional requests (0x7DF) and physical ones
(0x7E0 + n) on 0x7E8 + n, and stays silent for a PID it does not support.

Faults (shared/spec/diagnostics.md, last section) are per ECU, in :class:`EcuFaults`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from protocols import obd2, uds
from protocols.dtc import OBD_PENDING, OBD_PERMANENT, OBD_STORED, DtcRecord
from protocols.isotp_frames import (
    FC_CONTINUE,
    FC_OVERFLOW,
    FC_WAIT,
    FrameKind,
    IsoTpFrame,
    parse_frame,
    segment,
    stmin_seconds,
)

TESTER = 0xF1
BMW_REQUEST_ID = 0x6F1
BMW_RESPONSE_BASE = 0x600
N_BS_S = 1.0  # how long an ECU waits for the tester's flow control
PENDING_GAP_S = 0.05  # between two 0x78 answers

#: A usual car: the addresses of a 14-ECU BMW (of the spec's table).
CAR_14 = (0x01, 0x10, 0x12, 0x18, 0x1C, 0x29, 0x30, 0x38, 0x40, 0x56, 0x5D, 0x60, 0x63, 0x78)
NAMES = {0x01: "ACSM", 0x10: "ZGM", 0x12: "DME", 0x13: "DME2", 0x18: "EGS", 0x1C: "LMV",
         0x29: "DSC", 0x2A: "EMF", 0x30: "EPS", 0x38: "EKP", 0x40: "BDC", 0x56: "FZD",
         0x5D: "KAFAS", 0x60: "KOMBI", 0x63: "HU", 0x64: "PDC", 0x67: "ZBE", 0x6D: "SPFS",
         0x72: "FLA", 0x78: "IHKA"}
_STATUSES = (0x2F, 0x2F, 0x24, 0x09, 0x08, 0xAF, 0x28, 0x01, 0x0A)


@dataclass
class EcuFaults:
    """What this ECU does wrong, on request."""

    pending: int = 0  # 0x78 answers before each answer to a request starting `pending_on`
    pending_on: bytes = b"\x19\x02"
    pending_gap_s: float = PENDING_GAP_S  # between two 0x78 answers, and before the answer
    busy: int = 0  # 0x21 answers before each answer to a request starting `busy_on`
    busy_on: bytes = b"\x22"
    unsupported_dids: frozenset[int] = frozenset()  # answered 7F 22 31
    stop_after: int | None = None  # requests answered, then silence (stops mid-test)
    wrong_sequence: bool = False  # the 2nd consecutive frame of a message has a wrong SN
    lose_frame: bool = False  # the 2nd consecutive frame of a message is never sent
    ignore_flow_control: bool = False  # sends consecutive frames without waiting for FC


@dataclass
class EcuConfig:
    """One ECU. ``address``: the BMW diagnostic address, or the OBD-II index 0-7."""

    address: int
    vin: str
    part_number: str = "0000000"
    software: str = "SW 1.0.0"
    hardware: str = "HW 01"
    serial: str = "00000000"
    dtcs: list[tuple[DtcRecord, int]] = field(default_factory=list)  # record, occurrences
    mileage_km: int | None = None
    answer_delay_s: float = 0.002
    cf_gap_s: float = 0.0  # the ECU's own pacing between consecutive frames
    padding: int | None = 0xAA  # None: frames as short as their content
    faults: EcuFaults = field(default_factory=EcuFaults)
    supported_pids: frozenset[int] = frozenset()  # obd2; 0x00 is always answered
    answers_vin: bool = True  # obd2: supports 09 02


def generated_dtcs(rng: random.Random, count: int) -> list[tuple[DtcRecord, int]]:
    """``count`` distinct UDS DTCs with plausible codes, statuses and counters."""
    codes: dict[int, tuple[DtcRecord, int]] = {}
    while len(codes) < count:
        high = rng.choice((0x00, 0x01, 0x03, 0x48, 0x80, 0xC1, 0xD0)) << 16
        code = high | rng.randrange(0x10000)
        codes.setdefault(code, (DtcRecord(code, 3, rng.choice(_STATUSES)), rng.randint(1, 60)))
    return list(codes.values())


def bmw_car(vin: str, addresses: Sequence[int] = CAR_14, *, seed: int = 0,
            dtcs: dict[int, int] | None = None, mileage_km: int = 48_412) -> list[EcuConfig]:
    """A car of ECUs at ``addresses`` with seeded identification; ``dtcs``: address -> count
    (default 0-3 each, seeded)."""
    rng = random.Random(f"cbs-sim/vehicle/{seed}/{vin}")
    ecus = []
    for address in addresses:
        count = (dtcs or {}).get(address, rng.choice((0, 0, 0, 1, 1, 2, 3)))
        ecus.append(EcuConfig(
            address=address, vin=vin, part_number=f"{rng.randrange(10**6, 10**7)}",
            software=f"SW {rng.randint(1, 30)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
            hardware=f"HW {rng.randint(1, 12):02d}", serial=f"{rng.getrandbits(32):08X}",
            dtcs=generated_dtcs(rng, count),
            mileage_km=mileage_km if address == 0x60 else None))
    return ecus


ENGINE_PIDS = frozenset({0x01, 0x05, 0x0C, 0x0D, 0x20, 0x31, 0x40, 0x60, 0x80, 0xA0, 0xA6})
GEARBOX_PIDS = frozenset({0x01, 0x0D})


def obd2_car(vin: str, count: int = 2, *, seed: int = 0,
             mileage_km: int = 48_412) -> list[EcuConfig]:
    """``count`` OBD-II ECUs: 0 the engine (every PID, odometer, VIN), the others a gearbox
    (PID 01 only, no VIN): they stay silent for what they do not support."""
    rng = random.Random(f"cbs-sim/vehicle-obd2/{seed}/{vin}")
    ecus = []
    for index in range(count):
        codes = [(DtcRecord(rng.choice((0x0301, 0x0420, 0x0171, 0xC123)), 2, None,
                            rng.choice((OBD_STORED, OBD_PENDING, OBD_PERMANENT))), 1)
                 for _ in range(rng.choice((0, 1, 2)))]
        ecus.append(EcuConfig(address=index, vin=vin, dtcs=codes,
                              supported_pids=ENGINE_PIDS if index == 0 else GEARBOX_PIDS,
                              mileage_km=mileage_km if index == 0 else None,
                              answers_vin=index == 0))
    return ecus


class _Transmitter:
    """One ECU's sending side of ISO-TP: queued answers go out frame by frame, honouring the
    tester's flow control (unless told to ignore it)."""

    def __init__(self, can_id: int, address: int | None, config: EcuConfig) -> None:
        self.can_id = can_id
        self.address = address
        self.config = config
        self.queue: deque[tuple[float, bytes]] = deque()
        self.frames: list[bytes] = []
        self.state = "idle"
        self.next_at = 0.0
        self.gap_s = 0.0
        self.block_size = 0
        self.sent_in_block = 0
        self.sent = 0

    def reset(self) -> None:
        self.queue.clear()
        self.frames = []
        self.state = "idle"

    def add(self, due: float, payload: bytes) -> None:
        self.queue.append((due, payload))

    def next_due(self) -> float | None:
        if self.state == "idle":
            return self.queue[0][0] if self.queue else None
        return self.next_at

    def _frame(self, data: bytes) -> tuple[int, bytes]:
        pad = self.config.padding
        self.sent += 1
        return self.can_id, data if pad is None else data.ljust(8, bytes((pad,)))

    def poll(self, now: float) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        faults = self.config.faults
        while True:
            if self.state == "idle":
                if not self.queue or self.queue[0][0] > now:
                    return out
                _, payload = self.queue.popleft()
                frames = segment(payload, address=self.address)
                out.append(self._frame(frames[0]))
                if len(frames) == 1:
                    continue
                cfs = frames[1:]
                if faults.lose_frame and len(cfs) > 1:
                    del cfs[1]
                if faults.wrong_sequence and len(cfs) > 1:
                    head = 1 if self.address is not None else 0
                    bad = bytearray(cfs[1])
                    bad[head] = 0x20 | ((bad[head] + 1) & 0xF)
                    cfs[1] = bytes(bad)
                self.frames = cfs
                self.sent_in_block = 0
                if faults.ignore_flow_control:
                    self.state, self.gap_s, self.block_size = "sending", self.config.cf_gap_s, 0
                    self.next_at = now + self.gap_s
                else:
                    self.state, self.next_at = "wait_fc", now + N_BS_S
            elif self.state == "sending":
                if self.next_at > now:
                    return out
                out.append(self._frame(self.frames.pop(0)))
                self.sent_in_block += 1
                if not self.frames:
                    self.state = "idle"
                elif self.block_size and self.sent_in_block >= self.block_size:
                    self.state, self.next_at = "wait_fc", now + N_BS_S
                else:
                    self.next_at = max(self.next_at + self.gap_s, now) if self.gap_s else now
            else:  # waiting for flow control
                if self.next_at > now:
                    return out
                self.state, self.frames = "idle", []  # N_Bs expired: the message is given up

    def flow_control(self, frame: IsoTpFrame, now: float) -> None:
        if self.state != "wait_fc":
            return
        if frame.flow_status == FC_CONTINUE:
            self.state = "sending"
            self.block_size, self.sent_in_block = frame.block_size, 0
            self.gap_s = max(stmin_seconds(frame.stmin), self.config.cf_gap_s)
            self.next_at = now + self.gap_s
        elif frame.flow_status == FC_WAIT:
            self.next_at = now + N_BS_S
        elif frame.flow_status == FC_OVERFLOW:
            self.state, self.frames = "idle", []


class _Ecu:
    def __init__(self, config: EcuConfig, protocol: str) -> None:
        self.config = config
        self.protocol = protocol
        self.dtcs = list(config.dtcs)
        self.requests = 0
        self.busy_left: dict[bytes, int] = {}
        if protocol == "bmw":
            self.rx_id, self.tx_id = BMW_REQUEST_ID, BMW_RESPONSE_BASE + config.address
            self.out = _Transmitter(self.tx_id, TESTER, config)
        else:
            self.rx_id = obd2.FIRST_REQUEST_ID + config.address
            self.tx_id = obd2.FIRST_RESPONSE_ID + config.address
            self.out = _Transmitter(self.tx_id, None, config)

    def request(self, payload: bytes, now: float, *, functional: bool = False) -> None:
        answers = self.answers(payload, functional=functional)
        if not answers:
            return
        self.out.reset()  # a new request ends whatever was under way
        due = now + self.config.answer_delay_s
        for answer in answers:
            self.out.add(due, answer)
            due += self.config.faults.pending_gap_s

    def answers(self, request: bytes, *, functional: bool = False) -> list[bytes]:
        """Every message this ECU sends for ``request``, in order ([] = silence)."""
        self.requests += 1
        faults = self.config.faults
        if faults.stop_after is not None and self.requests > faults.stop_after:
            return []
        final = self._bmw(request) if self.protocol == "bmw" else self._obd2(request, functional)
        if final is None:
            return []
        sid = request[0]
        if faults.busy and request.startswith(faults.busy_on):
            left = self.busy_left.setdefault(request, faults.busy)
            if left > 0:
                self.busy_left[request] = left - 1
                return [uds.negative_response_bytes(sid, uds.NRC_BUSY_REPEAT)]
            self.busy_left.pop(request)
        pending = []
        if faults.pending and request.startswith(faults.pending_on):
            pending = [uds.negative_response_bytes(sid, uds.NRC_RESPONSE_PENDING)] * faults.pending
        return [*pending, final]

    def _bmw(self, request: bytes) -> bytes | None:
        c = self.config
        sid = request[0]
        if request == uds.tester_present_request():
            return uds.positive_response(request)
        if sid == uds.SID_READ_DID and len(request) == 3:
            did = (request[1] << 8) | request[2]
            values = {uds.DID_VIN: c.vin, uds.DID_SPARE_PART: c.part_number,
                      uds.DID_SOFTWARE: c.software, uds.DID_HARDWARE: c.hardware,
                      uds.DID_SERIAL: c.serial}
            if did in c.faults.unsupported_dids:
                return uds.negative_response_bytes(sid, uds.NRC_REQUEST_OUT_OF_RANGE)
            if did in values:
                return uds.positive_response(request, values[did].encode("ascii"))
            if did == uds.DID_MILEAGE and c.mileage_km is not None:
                return uds.positive_response(request, c.mileage_km.to_bytes(3, "big"))
            return uds.negative_response_bytes(sid, uds.NRC_REQUEST_OUT_OF_RANGE)
        if sid == uds.SID_READ_DTC and len(request) == 3 and request[1] == 0x02:
            mask = request[2]
            return uds.dtc_list_response([d for d, _ in self.dtcs if (d.status or 0) & mask])
        if sid == uds.SID_READ_DTC and len(request) == 6 and request[1] == 0x06:
            code = int.from_bytes(request[2:5], "big")
            for record, count in self.dtcs:
                if record.code == code:
                    return uds.occurrences_response(record, count if request[5] == 1 else None)
            return uds.negative_response_bytes(sid, uds.NRC_REQUEST_OUT_OF_RANGE)
        if request == uds.clear_dtcs_request():
            self.dtcs = []
            return uds.positive_response(request)
        if sid in (uds.SID_READ_DID, uds.SID_READ_DTC, uds.SID_CLEAR_DTC):
            return uds.negative_response_bytes(sid, uds.NRC_INCORRECT_LENGTH)
        return uds.negative_response_bytes(sid, uds.NRC_SERVICE_NOT_SUPPORTED)

    def _obd2(self, request: bytes, functional: bool) -> bytes | None:
        c = self.config
        mode = request[0]
        if mode == obd2.MODE_CURRENT_DATA and len(request) == 2:
            pid = request[1]
            stored = [d for d, _ in self.dtcs if d.obd_mode == OBD_STORED]
            if pid in obd2.SUPPORT_PIDS and (pid == 0 or pid in c.supported_pids):
                return bytes((0x41, pid)) + obd2.supported_bitmap(c.supported_pids, pid)
            if pid not in c.supported_pids:
                return None if functional else uds.negative_response_bytes(mode, 0x12)
            if pid == obd2.PID_MONITOR_STATUS:
                a = (0x80 if stored else 0) | min(len(stored), 0x7F)
                return bytes((0x41, pid, a, 0x07, 0x65, 0x04))
            if pid == obd2.PID_DISTANCE_SINCE_CLEAR:
                return bytes((0x41, pid)) + (1234).to_bytes(2, "big")
            if pid == obd2.PID_ODOMETER and c.mileage_km is not None:
                return bytes((0x41, pid)) + (c.mileage_km * 10).to_bytes(4, "big")
            return bytes((0x41, pid, 0, 0, 0, 0))
        if mode in (OBD_STORED, OBD_PENDING, OBD_PERMANENT) and len(request) == 1:
            return obd2.dtcs_response(mode, [d.code for d, _ in self.dtcs if d.obd_mode == mode])
        if request == obd2.vehicle_info_request(obd2.INFO_VIN):
            return obd2.vin_response(c.vin) if c.answers_vin else None
        if request == obd2.clear_request():
            self.dtcs = [(d, n) for d, n in self.dtcs if d.obd_mode == OBD_PERMANENT]
            return bytes((0x44,))
        return None if functional else uds.negative_response_bytes(mode, 0x11)


class SimulatedCar:
    """The ECUs of one car on one bus (sans-IO: the caller passes the time)."""

    def __init__(self, ecus: Iterable[EcuConfig], protocol: str = "bmw") -> None:
        if protocol not in ("bmw", "obd2"):
            raise ValueError(f"unknown protocol {protocol!r}")
        self.protocol = protocol
        self.ecus = {config.address: _Ecu(config, protocol) for config in ecus}
        self._by_tx = {ecu.tx_id: ecu for ecu in self.ecus.values()}
        self.requests_seen = 0
        self.tester_frames = 0
        self.badly_padded = 0  # tester frames not padded to 8 bytes with 0xCC

    @property
    def listen_ids(self) -> frozenset[int]:
        if self.protocol == "bmw":
            return frozenset({BMW_REQUEST_ID})
        return frozenset({obd2.FUNCTIONAL_ID, *(e.rx_id for e in self.ecus.values())})

    def receive(self, arbitration_id: int, data: bytes, now: float) -> None:
        """A frame from the tester (any other identifier is ignored)."""
        if arbitration_id not in self.listen_ids:
            return
        self.tester_frames += 1
        extended = self.protocol == "bmw"
        if len(data) != 8 or _padding_of(data, extended=extended) not in (None, 0xCC):
            self.badly_padded += 1
        if self.protocol == "bmw":
            if not data or data[0] not in self.ecus:
                return
            ecu = self.ecus[data[0]]
            frame = parse_frame(data, extended=True)
            self._handle(ecu, frame, now)
        elif arbitration_id == obd2.FUNCTIONAL_ID:
            frame = parse_frame(data)
            if frame is not None and frame.kind == FrameKind.SINGLE:
                self.requests_seen += 1
                for ecu in self.ecus.values():
                    ecu.request(frame.data, now, functional=True)
        else:
            ecu = next(e for e in self.ecus.values() if e.rx_id == arbitration_id)
            self._handle(ecu, parse_frame(data), now)

    def _handle(self, ecu: _Ecu, frame: IsoTpFrame | None, now: float) -> None:
        if frame is None:
            return
        if frame.kind == FrameKind.SINGLE:
            self.requests_seen += 1
            ecu.request(frame.data, now)
        elif frame.kind == FrameKind.FLOW_CONTROL:
            ecu.out.flow_control(frame, now)

    def next_due(self) -> float | None:
        times = [t for t in (e.out.next_due() for e in self.ecus.values()) if t is not None]
        return min(times) if times else None

    def poll(self, now: float) -> list[tuple[int, bytes]]:
        """The ECUs' frames due by ``now``, in time order per ECU."""
        out: list[tuple[int, bytes]] = []
        for ecu in self.ecus.values():
            due = ecu.out.next_due()
            if due is not None and due <= now:
                out.extend(ecu.out.poll(now))
        return out

    def frames_sent(self) -> int:
        return sum(e.out.sent for e in self.ecus.values())


def _padding_of(data: bytes, *, extended: bool) -> int | None:
    """The padding byte of a tester frame (None: nothing to pad, -1: mixed bytes)."""
    frame = parse_frame(data, extended=extended)
    if frame is None:
        return -1
    head = 1 if extended else 0
    if frame.kind == FrameKind.SINGLE:
        used = head + 1 + frame.length
    elif frame.kind == FrameKind.FLOW_CONTROL:
        used = head + 3
    else:
        return None
    tail = data[used:]
    if not tail:
        return None
    return tail[0] if all(b == tail[0] for b in tail) else -1
