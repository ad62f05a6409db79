"""protocols.key_session_json: the exact round trip the ground truth relies on."""

from __future__ import annotations

import json
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import ProtocolError
from protocols.key_session import (
    CheckControlMessage,
    CheckControlStatus,
    KeySession,
    ServiceHistory,
    ServiceItem,
    StoredDtc,
    UsageData,
    VehicleData,
)
from protocols.key_session_json import session_from_dict, session_to_dict
from simulators.fleet import Fleet

WORKED_EXAMPLE = KeySession(
    session_seq=7, key_id=0x12345678, key_slot=2, vin="WBA8E5107FK123456",
    vehicle=VehicleData(mileage_km=48_371, data_date=date(2026, 11, 25), fuel_level_pct=63,
                        build_year=2022, build_month=3),
    usage=UsageData(ambient_avg_c=22.0, ambient_min_c=-7.0, ambient_max_c=37.0, hot_share_pct=8,
                    cold_share_pct=11, short_trip_pct=35, severe_duty_pct=0, avg_trip_km=14.2),
    services=(
        ServiceItem(index=0, code=0x01, availability_pct=12, remaining_km=1800, due_year=2027,
                    due_month=2, service_count=4,
                    history=ServiceHistory(last_service_km=30_000, last_service_year=2025,
                                           last_service_month=11, interval_km=15_000,
                                           interval_months=24)),
        ServiceItem(index=1, code=0x03, availability_pct=None, remaining_km=None, due_year=2027,
                    due_month=3, service_count=1),
    ),
    check_controls=(CheckControlMessage(0, 0x0102, CheckControlStatus.ACTIVE, 48_010),),
    dtcs=(StoredDtc(index=0, code=0x03011F, status=0x2F, ecu_address=0x12, occurrences=3),),
)


def _through_json(session: KeySession) -> KeySession:
    return session_from_dict(json.loads(json.dumps(session_to_dict(session))))


def test_worked_example_round_trips_and_is_json_safe() -> None:
    data = session_to_dict(WORKED_EXAMPLE)
    assert data["vehicle"]["data_date"] == "2026-11-25"
    assert data["check_controls"][0]["status"] == 1
    assert data["services"][1]["remaining_km"] is None
    assert json.loads(json.dumps(data)) == data
    assert _through_json(WORKED_EXAMPLE) == WORKED_EXAMPLE


def test_not_available_values_and_empty_collections_round_trip() -> None:
    session = KeySession(
        session_seq=255, key_id=0, key_slot=9, vin="5UXCR6C05N9K12345",
        vehicle=VehicleData(0, date(2000, 1, 1), None, 2000, None), usage=None,
        services=(ServiceItem(15, 0xFE, 250, -524287, 2127, None, 31,
                              ServiceHistory(None, 2000, None, None, None)),))
    assert _through_json(session) == session


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), index=st.integers(0, 5000))
def test_fleet_sessions_round_trip_through_json(seed: int, index: int) -> None:
    session = Fleet(seed, date(2026, 5, 1), vehicle_count=5).session(index)
    assert _through_json(session) == session


@pytest.mark.parametrize("broken", [
    {},
    {**session_to_dict(WORKED_EXAMPLE), "key_id": "12"},
    {**session_to_dict(WORKED_EXAMPLE), "key_slot": True},
    {**session_to_dict(WORKED_EXAMPLE),
     "vehicle": {**session_to_dict(WORKED_EXAMPLE)["vehicle"], "data_date": "2026-13-01"}},
    {**session_to_dict(WORKED_EXAMPLE), "check_controls": [{"index": 0, "cc_id": 1,
                                                            "status": 7, "mileage_km": 0}]},
])
def test_malformed_dicts_raise_protocol_error(broken: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        session_from_dict(broken)
