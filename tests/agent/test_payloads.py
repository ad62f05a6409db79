"""The spec's worked example, decoded and turned into the contract's readout, field by field."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from spec_example import spec_frames

from agent.domain.forecast import ForecastSettings
from agent.domain.models import to_json
from agent.pipeline import ReadoutPipeline
from protocols.can_frame import CanFrame
from protocols.session import SessionAccepted, SessionAssembler, SessionRejected

# The contract's example payload, trimmed to what the worked example determines.
CONTRACT_KEYS = {"schema", "readout_id", "site", "reader", "transport", "read_at", "key", "vehicle",
                 "usage", "services", "check_control", "dtcs", "estimate", "summary", "proposal"}


def _events(frames: list[CanFrame]) -> list[SessionAccepted | SessionRejected]:
    assembler = SessionAssembler()
    return [event for frame in frames for event in assembler.feed(frame)]


@pytest.fixture
def readout() -> dict:
    (event,) = _events(spec_frames())
    assert isinstance(event, SessionAccepted)
    pipeline = ReadoutPipeline(site="S1", reader="desk1", transport="serial",
                               forecast=ForecastSettings())
    return json.loads(to_json(pipeline.readout(event)))


def test_readout_top_level_matches_contract(readout: dict) -> None:
    assert set(readout) == CONTRACT_KEYS  # the contract's keys plus the additive "proposal"
    assert readout["schema"] == "cbs.readout/1"
    assert readout["site"] == "S1" and readout["reader"] == "desk1"
    assert readout["transport"] == "serial"
    assert readout["read_at"] == "2026-11-27T09:15:02.123Z"
    assert readout["key"] == {"key_id": 305419896, "slot": 2}


def test_vehicle_and_usage(readout: dict) -> None:
    assert readout["vehicle"] == {"vin": "WBA8E5107FK123456", "mileage_km": 48371,
                                  "data_date": "2026-11-25", "build_month": "2022-03",
                                  "fuel_level_pct": 63}
    assert readout["usage"] == {"ambient_avg_c": 22.0, "ambient_min_c": -7.0, "ambient_max_c": 37.0,
                                "hot_share_pct": 8, "cold_share_pct": 11, "short_trip_pct": 35,
                                "severe_duty_pct": 0, "avg_trip_km": 14.2}


def test_services(readout: dict) -> None:
    oil, fluid = readout["services"]
    forecast = oil.pop("forecast")
    assert oil == {"index": 0, "type": "engine_oil", "code": 1, "availability_pct": 12,
                   "remaining_km": 1800, "due_month": "2027-02", "service_count": 4,
                   "last_service": {"mileage_km": 30000, "month": "2025-11"},
                   "interval_km": 15000, "interval_months": 24}
    assert set(forecast) == {"status", "due_date", "basis", "days_left", "km_left",
                             "due_date_early", "due_date_late"}  # the interval: a compatible addition
    assert forecast["due_date_early"] <= forecast["due_date"] <= forecast["due_date_late"]
    assert forecast["km_left"] == 1800
    assert forecast["status"] == "due_soon"  # 1,800 km left is inside the 2,000 km horizon
    fluid_forecast = fluid.pop("forecast")
    assert fluid == {"index": 1, "type": "brake_fluid", "code": 3, "availability_pct": None,
                     "remaining_km": None, "due_month": "2027-03", "service_count": 1,
                     "last_service": None, "interval_km": None, "interval_months": None}
    # Only the due month is known: the last day of March 2027.
    # The calendar limit is sure: both ends of the interval are that day.
    assert fluid_forecast == {"status": "ok", "due_date": "2027-03-31", "basis": "time",
                              "days_left": 124, "km_left": None,
                              "due_date_early": "2027-03-31", "due_date_late": "2027-03-31"}


def test_check_control_and_dtcs(readout: dict) -> None:
    assert readout["check_control"] == [{"id": 258, "status": "active", "mileage_km": 48010}]
    assert readout["dtcs"] == [{"code": "03011F", "sae": "P0301", "failure_type": 31, "status": 47,
                                "confirmed": True, "ecu": 18, "occurrences": 3}]


def test_estimate_and_summary(readout: dict) -> None:
    estimate = readout["estimate"]
    assert estimate["km_per_day_basis"] == "vehicle_age"
    assert estimate["climate_factor"] >= 1.0
    summary = readout["summary"]
    assert summary["status"] == "due_soon"
    assert summary["next_due"]["type"] == "engine_oil"
    # An active check-control message and a confirmed DTC keep the visit out of the express lane.
    assert summary["express_eligible"] is False


def test_readout_id_is_stable_and_distinct() -> None:
    (first,) = _events(spec_frames())
    (again,) = _events(spec_frames())
    (later,) = _events(spec_frames(end_at=1795770903.0))
    pipeline = ReadoutPipeline(site="S1", reader="desk1", transport="can", forecast=ForecastSettings())
    assert isinstance(first, SessionAccepted) and isinstance(again, SessionAccepted)
    assert isinstance(later, SessionAccepted)
    a, b, c = (pipeline.readout(e).readout_id for e in (first, again, later))
    assert a == b != c
    assert a.startswith("20261127T091502123Z-")


def test_rejection_payload() -> None:
    frames = spec_frames()
    bad_end = CanFrame(0x6FF, bytes.fromhex("070A000000000000"), frames[-1].timestamp)
    (event,) = _events([*frames[:-1], bad_end])
    assert isinstance(event, SessionRejected)
    pipeline = ReadoutPipeline(site="S1", reader="desk1", transport="can", forecast=ForecastSettings())
    payload = json.loads(to_json(pipeline.rejection(event)))
    assert set(payload) == {"schema", "rejection_id", "site", "reader", "transport", "at", "reason",
                            "detail", "key_id", "frames_received"}
    assert payload["schema"] == "cbs.rejected/1"
    assert payload["reason"] == "crc_mismatch"
    assert "Crc32" in payload["detail"] and "KEY_SESSION_END" in payload["detail"]
    assert payload["key_id"] == 0x12345678
    assert payload["frames_received"] == 10
    assert payload["at"] == "2026-11-27T09:15:02.123Z"
    assert datetime.fromisoformat(payload["at"].replace("Z", "+00:00")).tzinfo == timezone.utc
