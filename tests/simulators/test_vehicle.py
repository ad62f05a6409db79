"""The simulated car, sans-IO: its ECUs honour flow control and break it on request, and a
generic OBD-II ECU stays silent for what it does not support."""

from __future__ import annotations

import io
import time

import pytest

from protocols import obd2, uds
from protocols.isotp_frames import FrameKind, Reassembler, flow_control, pad, parse_frame
from simulators.vehicle import EcuConfig, SimulatedCar, bmw_car, obd2_car
from simulators.vehicle_sim import VehicleBus, frame_bits

VIN = "WBA8E5107FK123456"


def _ask(car: SimulatedCar, address: int, request: bytes, *, fc: bytes | None = None,
         until: float = 5.0) -> list[bytes]:
    car.receive(0x6F1, pad(bytes((address, len(request))) + request), 0.0)
    frames: list[bytes] = []
    now = 0.0
    while now < until:
        for ident, data in car.poll(now):
            assert ident == 0x600 + address
            frames.append(data)
            frame = parse_frame(data, extended=True)
            if frame is not None and frame.kind == FrameKind.FIRST and fc is not None:
                car.receive(0x6F1, pad(bytes((address,)) + fc), now)
        now += 0.001
    return frames


def _payload(frames: list[bytes]) -> bytes | None:
    assembler = Reassembler()
    out = None
    for data in frames:
        frame = parse_frame(data, extended=True)
        assert frame is not None
        out = assembler.feed(frame) or out
    return out


def test_an_ecu_waits_for_flow_control_and_honours_block_size() -> None:
    car = SimulatedCar(bmw_car(VIN, [0x12], dtcs={0x12: 10}))
    request = uds.read_dtcs_request()
    assert len(_ask(car, 0x12, request)) == 1, "no flow control: the first frame only"
    frames = _ask(SimulatedCar(bmw_car(VIN, [0x12], dtcs={0x12: 10})), 0x12, request,
                  fc=flow_control(0, 2, 0)[0:3])
    assert len(frames) == 3, "block size 2: two consecutive frames, then a new flow control"
    full = _ask(car, 0x12, request, fc=flow_control(0, 0, 0))
    assert uds.parse_dtcs(_payload(full) or b"").dtcs


def test_faults_break_the_exchange() -> None:
    def car_with(**faults: object) -> SimulatedCar:
        (ecu,) = bmw_car(VIN, [0x40], dtcs={0x40: 5})
        for key, value in faults.items():
            setattr(ecu.faults, key, value)
        return SimulatedCar([ecu])

    request = uds.read_did_request(uds.DID_VIN)
    fc = flow_control(0, 0, 0)
    assert _payload(_ask(car_with(), 0x40, request, fc=fc)) == uds.positive_response(
        request, VIN.encode())
    assert _payload(_ask(car_with(wrong_sequence=True), 0x40, request, fc=fc)) is None
    assert _payload(_ask(car_with(lose_frame=True), 0x40, request, fc=fc)) is None
    ignoring = _ask(car_with(ignore_flow_control=True), 0x40, request)
    assert _payload(ignoring) is not None, "all frames without waiting for flow control"
    pending = _ask(car_with(pending=2, pending_on=b"\x22"), 0x40, request, fc=fc)
    assert [f[2:5] for f in pending[:2]] == [bytes.fromhex("7F2278")] * 2
    assert _ask(car_with(stop_after=0), 0x40, request) == []


def test_obd2_silence_for_unsupported_pids() -> None:
    car = SimulatedCar(obd2_car(VIN, 2), "obd2")
    car.receive(obd2.FUNCTIONAL_ID, obd2.functional_frame(obd2.current_data_request(0xA6)), 0.0)
    answers = car.poll(1.0)
    assert [ident for ident, _ in answers] == [0x7E8], "the gearbox has no odometer"
    car.receive(obd2.FUNCTIONAL_ID, obd2.functional_frame(obd2.current_data_request(0x00)), 2.0)
    assert sorted(ident for ident, _ in car.poll(3.0)) == [0x7E8, 0x7E9]


def test_tester_padding_is_checked() -> None:
    car = SimulatedCar([EcuConfig(0x12, VIN)])
    car.receive(0x6F1, bytes.fromhex("12023E00"), 0.0)
    car.receive(0x6F1, bytes.fromhex("12023E00CCCCCCCC"), 0.0)
    assert car.badly_padded == 1 and car.tester_frames == 2


def test_the_paced_bus_runs_on_its_own_clock() -> None:
    """Frames that were ready while the runtime's loop slept go out back to back from when
    they were ready (the bus never idles for the loop's latency), in the order they were
    ready, and each takes its bit time."""
    bus = VehicleBus(SimulatedCar([]), transport="virtual", pace=True, stdout=io.StringIO())
    sent: list[tuple[int, bytes]] = []
    bus._send = lambda ident, data, droppable: sent.append((ident, data))  # type: ignore[method-assign]
    now = time.monotonic()
    ready = now - 0.010  # the loop woke 10 ms late
    frames = [(ready + 0.001, 0x640, b"\x01"), (ready, 0x612, b"\x01"), (ready, 0x612, b"\x02")]
    for at, ident, data in frames:
        bus._out.append((at, ident, data, False))
    bus._transmit(now)
    assert sent == [(0x612, b"\x01"), (0x612, b"\x02"), (0x640, b"\x01")]
    bit_time = frame_bits(1) / bus.bitrate
    assert bus._bus_free_at == pytest.approx(ready + 0.001 + bit_time)
    assert bus.busy_s == pytest.approx(3 * bit_time)
