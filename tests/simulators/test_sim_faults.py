"""Fault injection: every declared outcome is what the reference assembler makes of exactly
the steps played, also when the agent's reads split the serial stream anywhere."""

from __future__ import annotations

import random
import zlib
from dataclasses import replace
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_helpers import BASE_DATE

from dbc import key_reader_database
from protocols.can_frame import SESSION_END_ID, SESSION_START_ID
from protocols.serial_framing import FrameType, SerialFrameDecoder, decode_can_payload, encode_frame
from protocols.session import SessionAccepted, SessionAssembler, SessionEvent, SessionRejected
from simulators.errors import FaultSpecError
from simulators.faults import (
    CATALOGUE,
    CLEAN,
    Fault,
    FaultChoice,
    FaultRates,
    Transport,
    faults_for,
)
from simulators.fleet import Fleet
from simulators.playback import ReadPlanner
from simulators.transmission import CanSend, Pause, SerialSend, Transmission

BASE = date.fromisoformat(BASE_DATE)
FLEET = Fleet(11, BASE, vehicle_count=12)
DB = key_reader_database()
NEUTRAL = sorted(f for f, i in CATALOGUE.items() if not i.decisive)

# What each decisive fault may end in, reasoned from the protocol (the planner's oracle must
# agree, else it would have fallen back to a clean read).
OUTCOMES: dict[Fault | None, set[tuple[str, str | None]]] = {
    None: {("readout", None)},
    Fault.BIT_FLIP: {("rejected", "frame_count_mismatch"), ("rejected", "timeout")},
    Fault.DROPPED: {("rejected", "frame_count_mismatch"), ("rejected", "timeout")},
    Fault.BUS_OFF: {("rejected", "timeout")},
    Fault.TRUNCATED: {("rejected", "timeout")},
    Fault.KEY_REMOVED: {("rejected", "key_removed")},
    Fault.CRC_MISMATCH: {("rejected", "crc_mismatch")},
    Fault.WIRE_REORDERED: {("rejected", "crc_mismatch")},
    Fault.SEQ_MISMATCH: {("rejected", "seq_mismatch")},
    Fault.UNSUPPORTED_VERSION: {("rejected", "unsupported_version")},
    Fault.MISSING_VIN: {("rejected", "missing_vin")},
    Fault.MISSING_VEHICLE: {("rejected", "missing_vehicle")},
    Fault.ORPHAN_HISTORY: {("rejected", "orphan_history")},
    Fault.INVALID_VALUE: {("rejected", "invalid_value")},
    Fault.DUPLICATE_FRAME: {("rejected", "duplicate_frame")},
    Fault.INTERRUPTED: {("rejected", "interrupted")},
}


def _replay(tx: Transmission, transport: Transport, cuts: random.Random,
            timeout_s: float = 0.5) -> list[SessionEvent]:
    """An agent independent of the planner: its own decoder (default staleness) and
    assembler, the serial bytes of each send split at random points."""
    assembler = SessionAssembler(timeout_s=timeout_s)
    decoder = SerialFrameDecoder()
    events: list[SessionEvent] = []
    now = 100.0
    for step in tx.steps:
        if isinstance(step, Pause):
            now += step.seconds
            continue
        now += 0.002
        if isinstance(step, CanSend):
            events += assembler.feed(replace(step.frame, timestamp=now))
            continue
        assert isinstance(step, SerialSend)
        data = step.data
        points = sorted(cuts.sample(range(1, len(data)), min(3, len(data) - 1)))
        for a, b in zip([0, *points], [*points, len(data)], strict=True):
            for frame in decoder.feed(data[a:b], now):
                if frame.frame_type == FrameType.CAN_FRAME:
                    can = decode_can_payload(frame.payload, now)
                    assert can is not None
                    events += assembler.feed(can)
                elif frame.frame_type == FrameType.KEY_REMOVED:
                    events += assembler.key_removed(now)
    events += assembler.poll(now + 0.01)
    assert not assembler.in_session, "a transmission left a session open"
    return events


def _check(tx: Transmission, events: list[SessionEvent]) -> None:
    assert len(events) == len(tx.sessions), (events, tx.sessions)
    for played, event in zip(tx.sessions, events, strict=True):
        if played.expected == "readout":
            assert isinstance(event, SessionAccepted), (played, event)
            assert event.session == played.session
        else:
            assert isinstance(event, SessionRejected), (played, event)
            assert str(event.reason) == played.reason
            assert event.key_id == played.session.key_id


_transport_fault = st.sampled_from(
    [(t, f) for t in Transport for f in [None, *faults_for(t)]
     if f is None or CATALOGUE[f].decisive])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transport_fault=_transport_fault, seed=st.integers(0, 2**32),
       index=st.integers(0, 10_000), neutral=st.sets(st.sampled_from(NEUTRAL)),
       first_seq=st.integers(0, 255))
def test_declared_outcome_is_what_the_assembler_gives(
        transport_fault: tuple[Transport, Fault | None], seed: int, index: int,
        neutral: set[Fault], first_seq: int) -> None:
    transport, fault = transport_fault
    neutral = {f for f in neutral if transport in CATALOGUE[f].transports}
    choice = FaultChoice(fault, frozenset(neutral))
    planner = ReadPlanner(transport, seed=seed)
    rng = random.Random(seed)
    tx = planner.plan(FLEET.session(index), choice, rng, first_seq=first_seq)
    assert not tx.fell_back, tx.note
    first = tx.sessions[0]
    assert (first.expected, first.reason) in OUTCOMES[fault], (fault, first)
    assert first.session.session_seq == first_seq
    assert set(first.faults) == set(choice.names)
    if fault is Fault.INTERRUPTED:
        retry = tx.sessions[1]
        assert (retry.expected, retry.session.session_seq) == ("readout", (first_seq + 1) % 256)
        assert tx.seqs_used == 2
    else:
        assert len(tx.sessions) == tx.seqs_used == 1
    _check(tx, _replay(tx, transport, random.Random(seed ^ index)))


@pytest.mark.parametrize("transport", list(Transport))
def test_every_fault_applies_over_many_reads_without_falling_back(transport: Transport) -> None:
    for fault in faults_for(transport):
        planner = ReadPlanner(transport, FaultRates.parse(transport, f"{fault}=1"), seed=3)
        for index in range(25):
            tx = planner.plan_read(FLEET.session(index), read_index=index, first_seq=index)
            assert not tx.fell_back
            assert str(fault) in tx.sessions[0].faults
            _check(tx, _replay(tx, transport, random.Random(index)))


def _can_frames(tx: Transmission) -> list[CanSend]:
    return [s for s in tx.steps if isinstance(s, CanSend)]


def test_reader_reorder_is_accepted_with_the_crc_over_arrival_order() -> None:
    planner = ReadPlanner(Transport.CAN)
    session = FLEET.session(1)
    clean = _can_frames(planner.plan(session, CLEAN, random.Random(1), first_seq=5))
    tx = planner.plan(session, FaultChoice(None, frozenset({Fault.REORDERED})), random.Random(1),
                      first_seq=5)
    frames = [s.frame for s in _can_frames(tx)]
    assert [f.data for f in frames[1:-1]] != [s.frame.data for s in clean[1:-1]]
    assert sorted(f.data for f in frames[1:-1]) == sorted(s.frame.data for s in clean[1:-1])
    crc = 0
    for frame in frames[1:-1]:
        crc = zlib.crc32(frame.data, crc)
    end = DB.decode_message(SESSION_END_ID, frames[-1].data)
    assert end["Crc32"] == crc
    assert (tx.sessions[0].expected, tx.sessions[0].reason) == ("readout", None)


def test_wire_reorder_keeps_the_reader_crc_and_is_rejected() -> None:
    planner = ReadPlanner(Transport.CAN)
    session = FLEET.session(2)
    clean = [s.frame for s in _can_frames(planner.plan(session, CLEAN, random.Random(2),
                                                       first_seq=9))]
    tx = planner.plan(session, FaultChoice(Fault.WIRE_REORDERED), random.Random(2), first_seq=9)
    frames = [s.frame for s in _can_frames(tx)]
    assert frames[-1] == clean[-1]  # END as the reader computed it
    assert sorted(f.data for f in frames) == sorted(f.data for f in clean)
    assert frames != clean
    assert tx.sessions[0].reason == "crc_mismatch"


def test_serial_read_starts_with_key_present_and_key_removed_fault_removes_the_key() -> None:
    planner = ReadPlanner(Transport.SERIAL)
    tx = planner.plan(FLEET.session(3), FaultChoice(Fault.KEY_REMOVED), random.Random(3),
                      first_seq=0)
    sends = [s for s in tx.steps if isinstance(s, SerialSend)]
    assert sends[0].data == encode_frame(FrameType.KEY_PRESENT)
    assert sends[-1].data == encode_frame(FrameType.KEY_REMOVED)
    assert tx.key_removed
    clean = planner.plan(FLEET.session(3), CLEAN, random.Random(3), first_seq=0)
    assert not clean.key_removed
    assert not any(isinstance(s, Pause) for s in clean.steps)
    reread = planner.plan_reread(FLEET.session(3), first_seq=1)
    assert reread.sessions[0].reread
    first_send = next(s for s in reread.steps if isinstance(s, SerialSend))
    assert decode_can_payload(first_send.data[3:-3]).arbitration_id == SESSION_START_ID


def test_a_session_left_open_ends_with_a_quiet_pause() -> None:
    planner = ReadPlanner(Transport.SERIAL, quiet_s=1.5)
    tx = planner.plan(FLEET.session(4), FaultChoice(Fault.TRUNCATED), random.Random(4),
                      first_seq=0)
    assert tx.steps[-1] == Pause(1.5)
    assert tx.sessions[0].reason == "timeout"


def test_unsupported_version_with_repeats_still_yields_one_outcome() -> None:
    planner = ReadPlanner(Transport.CAN)
    choice = FaultChoice(Fault.UNSUPPORTED_VERSION, frozenset({Fault.DUPLICATED}))
    for index in range(30):
        tx = planner.plan(FLEET.session(index), choice, random.Random(index), first_seq=index)
        assert not tx.fell_back
        starts = [s for s in _can_frames(tx) if s.frame.arbitration_id == SESSION_START_ID]
        assert len(starts) == 1
        _check(tx, _replay(tx, Transport.CAN, random.Random(index)))


def test_quiet_must_exceed_the_agent_timeout() -> None:
    with pytest.raises(ValueError):
        ReadPlanner(Transport.CAN, quiet_s=0.6, agent_timeout_s=0.5)


# -- rates -----------------------------------------------------------------------------------

def test_rates_parse_and_validate() -> None:
    rates = FaultRates.parse(Transport.SERIAL, "noise=0.5, bit-flip=0.1,truncated=0")
    assert dict(rates.rates) == {Fault.NOISE: 0.5, Fault.BIT_FLIP: 0.1}
    everything = FaultRates.parse(Transport.CAN, "dropped=0.2", default_rate=0.01)
    assert set(everything.rates) == set(faults_for(Transport.CAN))
    assert everything.rates[Fault.DROPPED] == 0.2
    assert not FaultRates.parse(Transport.CAN, None)
    for bad in ("nonsense=0.1", "noise", "noise=x", "noise=1.5"):
        with pytest.raises(FaultSpecError):
            FaultRates.parse(Transport.SERIAL, bad)
    with pytest.raises(FaultSpecError, match="transport"):
        FaultRates.parse(Transport.CAN, "key_removed=0.1")
    with pytest.raises(FaultSpecError, match="transport"):
        FaultRates.parse(Transport.SERIAL, "bus_off=0.1")


def test_choice_follows_the_rates_and_is_reproducible() -> None:
    always = FaultRates.parse(Transport.SERIAL, "crc_mismatch=1,noise=1")
    assert always.choose(random.Random(0)) == FaultChoice(Fault.CRC_MISMATCH,
                                                          frozenset({Fault.NOISE}))
    rates = FaultRates.parse(Transport.SERIAL, default_rate=0.2)  # decisive rates sum above 1
    choices = [rates.choose(random.Random(i)) for i in range(200)]
    assert all(c.decisive is not None for c in choices)
    assert len({c.decisive for c in choices}) > 10
    assert choices == [rates.choose(random.Random(i)) for i in range(200)]
    never = FaultRates.parse(Transport.CAN, "")
    assert never.choose(random.Random(1)) == CLEAN
