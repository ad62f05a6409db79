"""The generated fleet: reproducible, valid, realistic, and spread over the value ranges."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import BASE_DATE, environment_without_hash_seed

from protocols.cbs_types import CbsType
from protocols.encoder import encode_session
from protocols.key_messages import VIN_PATTERN
from protocols.key_session_json import session_to_dict
from protocols.session import SessionAccepted, SessionAssembler
from simulators.fleet import Fleet
from simulators.vin import check_digit, has_valid_check_digit

BASE = date.fromisoformat(BASE_DATE)
ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_same_sessions_and_random_access() -> None:
    first = list(Fleet(7, BASE).sessions(60))
    assert first == list(Fleet(7, BASE).sessions(60))
    fleet = Fleet(7, BASE)
    assert [fleet.session(i) for i in (59, 3, 17)] == [first[59], first[3], first[17]]
    assert list(fleet.sessions(5, start=10)) == first[10:15]


def test_other_seed_or_base_date_gives_other_sessions() -> None:
    sessions = list(Fleet(7, BASE).sessions(20))
    assert sessions != list(Fleet(8, BASE).sessions(20))
    assert sessions != list(Fleet(7, date(2026, 6, 1)).sessions(20))


def test_rolling_sequence_number() -> None:
    fleet = Fleet(1, BASE, first_seq=250)
    assert [s.session_seq for s in fleet.sessions(10)] == [250, 251, 252, 253, 254, 255, 0, 1, 2, 3]


def test_reproducible_across_processes_and_hash_seeds() -> None:
    """String seeds must not depend on PYTHONHASHSEED; also exercises ``cbs-sim sessions``."""
    outputs = []
    for hash_seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-m", "simulators.cli", "sessions", "--seed", "42", "--base-date",
             BASE_DATE, "--sessions", "5"], capture_output=True, text=True, check=True,
            env=environment_without_hash_seed(hash_seed), cwd=ROOT, timeout=60)
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    expected = [session_to_dict(s) for s in Fleet(42, BASE).sessions(5)]
    assert [json.loads(line) for line in outputs[0].splitlines()] == expected


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), index=st.integers(0, 100_000),
       edge_rate=st.sampled_from([0.0, 0.03, 0.5, 1.0]))
def test_every_session_round_trips_through_encoder_and_assembler(
        seed: int, index: int, edge_rate: float) -> None:
    session = Fleet(seed, BASE, vehicle_count=8, edge_rate=edge_rate).session(index)
    assembler = SessionAssembler()
    events = [e for frame in encode_session(session) for e in assembler.feed(frame)]
    assert len(events) == 1 and isinstance(events[0], SessionAccepted), events
    assert events[0].session == session


def test_a_generated_fleet_covers_the_value_ranges() -> None:
    counts: Counter[str] = Counter()
    assembler = SessionAssembler()
    sessions = [s for seed in range(4) for s in Fleet(seed, BASE).sessions(300)]
    for session in sessions:
        events = [e for frame in encode_session(session) for e in assembler.feed(frame)]
        assert isinstance(events[0], SessionAccepted) and events[0].session == session
        assert VIN_PATTERN.fullmatch(session.vin)
        assert session.vin[:3] in {"WBA", "WBS", "WBY", "WMW", "WBX", "5UX"}
        if session.vin.startswith("5UX"):
            assert has_valid_check_digit(session.vin)
        assert 1 <= len(session.services) <= 12
        assert abs((session.vehicle.data_date - BASE).days) <= 1500
        counts[f"items={len(session.services)}"] += 1
        counts["usage none"] += session.usage is None
        counts["fuel none"] += session.vehicle.fuel_level_pct is None
        counts["build month none"] += session.vehicle.build_month is None
        counts["check controls"] += bool(session.check_controls)
        counts["dtcs"] += bool(session.dtcs)
        counts["mileage 0"] += session.vehicle.mileage_km == 0
        counts["mileage max"] += session.vehicle.mileage_km == 0xFFFFFF
        counts["slot >= 4"] += session.key_slot >= 4
        for item in session.services:
            counts["overdue km"] += item.remaining_km is not None and item.remaining_km < 0
            counts["remaining none"] += item.remaining_km is None
            counts["remaining edge"] += item.remaining_km in (-524287, 524287)
            counts["no due date"] += item.due_month is None
            counts["availability none"] += item.availability_pct is None
            counts["availability > 100"] += (item.availability_pct or 0) > 100
            counts["unknown code"] += item.type is CbsType.UNKNOWN
            counts["history"] += item.history is not None
            counts["never serviced"] += (item.history is not None
                                         and item.history.last_service_km is None)
            counts["service count 31"] += item.service_count == 31
        counts["sparse indices"] += [i.index for i in session.services] != list(
            range(len(session.services)))
    required = ["items=1", "items=12", "usage none", "fuel none", "build month none",
                "check controls", "dtcs", "mileage 0", "mileage max", "slot >= 4", "overdue km",
                "remaining none", "remaining edge", "no due date", "availability none",
                "availability > 100", "unknown code", "history", "never serviced",
                "service count 31", "sparse indices"]
    missing = [name for name in required if not counts[name]]
    assert not missing, (missing, counts)
    assert len({s.vin for s in sessions}) > 50
    types = {item.type for s in sessions for item in s.services}
    assert len(types) >= 20, types


@pytest.mark.parametrize("vin", ["1M8GDM9AXKP042788", "11111111111111111", "5UXWX7C5*BA"])
def test_vin_check_digit(vin: str) -> None:
    if len(vin) != 17:
        with pytest.raises(ValueError):
            check_digit(vin)
    else:
        assert has_valid_check_digit(vin)


def test_fleet_rejects_a_base_date_outside_the_protocol_years() -> None:
    with pytest.raises(ValueError):
        Fleet(0, date(1999, 1, 1))
