"""The tester in-process against the simulated car on python-can's virtual bus (fast: no
pty, no broker): the P2* and 0x78 limits with short timings, the in-flight limit, obd2."""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from agent.diagnostics.settings import DiagnosticsSettings
from agent.diagnostics.tester import (
    OBD2_RECEIVE_IDS,
    _Slots,
    bmw_receive_ids,
    run_bmw_test,
    run_obd2_test,
)
from agent.diagnostics.timing import DiagnosticTiming
from agent.diagnostics.transport import CanChannel
from agent.domain.diagnosis import bmw_ecu_names
from simulators.vehicle import EcuConfig, SimulatedCar, bmw_car, obd2_car
from simulators.vehicle_sim import VehicleBus

VIN = "WBA8E5107FK123456"
_channels = itertools.count()


@pytest.fixture
def on_bus() -> Iterator[object]:
    running: list[tuple[VehicleBus, threading.Thread, CanChannel]] = []

    def start(ecus: list[EcuConfig], protocol: str = "bmw",
              addresses: list[int] | None = None) -> CanChannel:
        name = f"diag-test-{next(_channels)}"
        bus = VehicleBus(SimulatedCar(ecus, protocol), transport="virtual", channel=name,
                         stdout=io.StringIO())
        thread = threading.Thread(target=bus.run, daemon=True)
        thread.start()
        ids = OBD2_RECEIVE_IDS if protocol == "obd2" else bmw_receive_ids(
            addresses or [e.address for e in ecus])
        channel = CanChannel("virtual", name, bitrate=500_000, receive_ids=ids)
        running.append((bus, thread, channel))
        return channel

    yield start
    for bus, thread, channel in running:
        channel.close()
        bus.request_stop()
        thread.join(5)


def test_response_pending_then_silence_times_out_after_p2_star(on_bus) -> None:  # type: ignore[no-untyped-def]
    (dme,) = bmw_car(VIN, [0x12], dtcs={0x12: 2})
    dme.faults.pending, dme.faults.pending_gap_s = 1, 1.0  # 0x78, then the list after 1 s
    channel = on_bus([dme])
    test = run_bmw_test(channel, [0x12], timing=DiagnosticTiming(p2_star_s=0.3))
    (ecu,) = test.ecus
    (error,) = ecu.errors
    assert (error.step, error.kind, error.request) == ("faults", "timeout", "1902FF")
    assert "P2*" in error.detail and ecu.dtcs is None
    assert ecu.vin == VIN, "the next requests go on"


def test_the_number_of_pending_answers_is_bounded(on_bus) -> None:  # type: ignore[no-untyped-def]
    (dme,) = bmw_car(VIN, [0x12], dtcs={0x12: 2})
    dme.faults.pending, dme.faults.pending_gap_s = 3, 0.01
    channel = on_bus([dme])
    (ecu,) = run_bmw_test(channel, [0x12], timing=DiagnosticTiming(max_pending=2)).ecus
    assert [(e.kind, e.nrc) for e in ecu.errors] == [("nrc", 0x78)]
    (ecu,) = run_bmw_test(channel, [0x12], timing=DiagnosticTiming(max_pending=3)).ecus
    assert ecu.errors == [] and len(ecu.dtcs or []) == 2


def test_one_in_flight_still_reads_everything(on_bus) -> None:  # type: ignore[no-untyped-def]
    ecus = bmw_car(VIN, [0x12, 0x18, 0x60], dtcs={0x12: 5})
    channel = on_bus(ecus, addresses=[0x12, 0x13, 0x18, 0x60])
    test = run_bmw_test(channel, [0x12, 0x13, 0x18, 0x60],
                        timing=DiagnosticTiming(max_in_flight=1))
    assert test.outcome == "complete" and test.absent == [0x13]
    assert [e.address for e in test.ecus] == [0x12, 0x18, 0x60]
    assert test.mileage_km() == 48_412


def test_obd2_in_process(on_bus) -> None:  # type: ignore[no-untyped-def]
    channel = on_bus(obd2_car(VIN, 2, seed=1), "obd2")
    test = run_obd2_test(channel)
    assert test.outcome == "complete"
    assert [e.address for e in test.ecus] == [0x7E8, 0x7E9]
    assert test.ecus[0].vin == VIN and test.ecus[0].km_since_cleared == 1234
    assert test.ecus[1].vin is None and test.ecus[1].mileage_km is None


def test_an_empty_obd2_bus_is_no_response(on_bus) -> None:  # type: ignore[no-untyped-def]
    channel = on_bus([], "obd2")
    assert run_obd2_test(channel).outcome == "no_response"


def test_request_slots_bound_the_requests_in_flight_and_serve_the_longest_chain_first() -> None:
    slots = _Slots(2)
    in_flight, most, served = 0, 0, []
    lock = threading.Lock()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # keeps one slot until released, so the others queue
        with slots.slot(0):
            holding.set()
            release.wait(5)

    def ask(remaining: int) -> None:
        nonlocal in_flight, most
        with slots.slot(remaining):
            with lock:
                in_flight += 1
                most = max(most, in_flight)
                served.append(remaining)
            with lock:
                in_flight -= 1

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    with slots.slot(0):  # both slots taken: the askers below wait
        askers = [threading.Thread(target=ask, args=(r,)) for r in (1, 50, 3, 7, 2, 9)]
        for thread in askers:
            thread.start()
        while len(slots._waiting) < len(askers):
            time.sleep(0.001)
    release.set()
    for thread in [holder, *askers]:
        thread.join(5)
    assert most <= 2 and sorted(served) == [1, 2, 3, 7, 9, 50]
    assert served[0] == 50, served


def test_while_one_chain_dominates_the_others_share_one_slot_and_the_critical_one_is_served(
) -> None:
    slots = _Slots(8)
    critical, others = object(), [object() for _ in range(6)]
    slots.ahead(critical, 100.0)  # seconds ahead: more than 3x every other chain
    for owner in others:
        slots.ahead(owner, 1.0)
    entered = threading.Condition()
    inside: list[object] = []
    release = threading.Event()

    def hold(owner: object) -> None:
        with slots.slot(5, owner):
            with entered:
                inside.append(owner)
                entered.notify_all()
            release.wait(5)
        with entered:
            inside.remove(owner)
            entered.notify_all()

    holders = [threading.Thread(target=hold, args=(o,)) for o in others]
    for thread in holders:
        thread.start()
    with entered:
        assert entered.wait_for(lambda: len(inside) == 1, 5)
    while len(slots._waiting) < len(others) - 1:
        time.sleep(0.001)
    assert len(inside) == 1  # the other five wait: one slot is the others' share
    served = threading.Event()

    def ask_critical() -> None:
        with slots.slot(100, critical):
            served.set()

    asker = threading.Thread(target=ask_critical)
    asker.start()
    assert served.wait(5)  # the critical chain is not held up by the others' queue
    asker.join(5)
    slots.ahead(critical, 0.0)  # its chain is done: the others share every slot again
    with entered:
        assert entered.wait_for(lambda: len(inside) == len(others), 5)
    release.set()
    for thread in holders:
        thread.join(5)


@pytest.mark.parametrize("probes_in_flight", [None, 3])
def test_an_empty_bus_is_no_response_with_every_address_absent(
        on_bus, probes_in_flight: int | None) -> None:  # type: ignore[no-untyped-def]
    addresses = sorted(bmw_ecu_names())
    channel = on_bus([], addresses=addresses)
    test = run_bmw_test(channel, addresses,
                        timing=DiagnosticTiming(p2_s=0.05, probes_in_flight=probes_in_flight))
    assert test.outcome == "no_response" and test.ecus == []
    assert test.absent == addresses


def test_every_address_is_probed_at_once_unless_configured() -> None:
    assert DiagnosticTiming().probe_batch(20) == 20
    assert DiagnosticTiming(probes_in_flight=8).probe_batch(20) == 8
    assert DiagnosticTiming(probes_in_flight=64).probe_batch(20) == 20
    assert DiagnosticsSettings().timing().probes_in_flight is None
    assert DiagnosticsSettings(probes_in_flight=4).timing().probe_batch(20) == 4
