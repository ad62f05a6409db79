"""Payloads for the desk's tests, made by the agent's own pipeline (as the agent publishes them)."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Any

from agent.domain.forecast import ForecastSettings
from agent.domain.models import to_json
from agent.domain.proposal import ProposalContext, ProposalSettings
from agent.pipeline import ReadoutPipeline
from protocols.can_frame import CanFrame
from protocols.key_session import KeySession, ServiceItem, StoredDtc, VehicleData
from protocols.session import SessionAccepted, SessionAssembler

SITE = "S1"
READER = "desk1"
PREFIX = "cbs/v1"
SPEC_VIN = "WBA8E5107FK123456"
SPEC_FRAMES = [
    (0x6F0, "01 07 0A 78 56 34 12 02"), (0x6F1, "00 57 42 41 38 45 35 31"),
    (0x6F1, "01 30 37 46 4B 31 32 33"), (0x6F1, "02 34 35 36 00 00 00 00"),
    (0x6F2, "F3 BC 00 9A CD 3F 96 01"), (0x6F3, "7C 42 9A 88 C5 08 E0 08"),
    (0x6F4, "00 01 0C 08 07 B0 11 02"), (0x6F4, "01 03 FF 00 00 B8 99 00"),
    (0x6F5, "00 30 75 00 99 B5 04 03"), (0x6F6, "00 02 01 01 8A BB 00 00"),
    (0x6F7, "00 03 01 1F 2F 12 03 00"), (0x6FF, "07 0A 9F 2A B0 2C 00 00"),
]
SPEC_READ_AT = datetime(2026, 11, 27, 9, 15, 2, 123000, tzinfo=timezone.utc)


def pipeline(look_ahead_days: int = 150) -> ReadoutPipeline:
    return ReadoutPipeline(site=SITE, reader=READER, transport="serial",
                           forecast=ForecastSettings(),
                           proposal=ProposalContext(settings=ProposalSettings(
                               look_ahead_days=look_ahead_days)))


def spec_readout(read_at: datetime = SPEC_READ_AT, look_ahead_days: int = 150) -> dict[str, Any]:
    """The spec's worked example: engine oil due soon, brake fluid optional (with 150 days of
    look-ahead), check control 258 active, P0301 confirmed."""
    assembler = SessionAssembler()
    events = []
    for i, (fid, data) in enumerate(SPEC_FRAMES):
        events += assembler.feed(CanFrame(fid, bytes.fromhex(data), 1795770902.112 + i * 0.001))
    accepted = next(e for e in events if isinstance(e, SessionAccepted))
    readout = pipeline(look_ahead_days).readout(accepted, read_at=read_at)
    return json.loads(to_json(readout))


def express_session(vin: str = "WBS8M9C59J5K98765", *, today: date | None = None,
                    dtcs: tuple[StoredDtc, ...] = ()) -> KeySession:
    """Only the engine oil is due (900 km left), nothing else wrong: fits the express lane."""
    today = today or date.today()
    later = today.year + 2
    return KeySession(
        session_seq=9, key_id=0xCAFE0001, key_slot=0, vin=vin,
        vehicle=VehicleData(mileage_km=31250, data_date=today, fuel_level_pct=40,
                            build_year=today.year - 3, build_month=3),
        usage=None,
        services=(ServiceItem(index=0, code=0x01, availability_pct=20, remaining_km=900,
                              due_year=later, due_month=6, service_count=2),
                  ServiceItem(index=1, code=0x03, availability_pct=None, remaining_km=None,
                              due_year=later, due_month=3, service_count=1)),
        dtcs=dtcs)


def readout_of(session: KeySession, read_at: datetime) -> dict[str, Any]:
    accepted = SessionAccepted(session=session, completed_at=read_at.timestamp(),
                               frames_received=10, crc32=0)
    return json.loads(to_json(pipeline().readout(accepted, read_at=read_at)))


def diagnosis(vin: str, *, confirmed: bool = True, lamp: bool = False,
              other_vin: str | None = None, readout_id: str | None = None) -> dict[str, Any]:
    """A cbs.diagnosis/1 report as diagnostics.md describes it."""
    return {
        "schema": "cbs.diagnosis/1", "diagnosis_id": f"diag-{vin}-{confirmed}-{lamp}",
        "site": SITE, "reader": READER, "transport": "can", "protocol": "bmw",
        "started_at": "2026-12-06T09:20:01.004Z", "finished_at": "2026-12-06T09:20:01.870Z",
        "outcome": "complete",
        "vehicle": {"vin": vin, "vin_consistent": other_vin is None, "mileage_km": 48412},
        "key_readout_id": readout_id,
        "ecus": [
            {"address": 18, "name": "DME", "vin": vin, "part_number": "8631234",
             "software": "SW 12.4.1", "hardware": "HW 03", "serial": "A1B2C3D4",
             "dtcs": [{"code": "03011F", "sae": "P0301", "failure_type": 31, "status": 47,
                       "confirmed": confirmed, "pending": True, "warning_lamp": lamp,
                       "occurrences": 3}], "errors": []},
            {"address": 0x40, "name": "BDC", "vin": other_vin or vin, "part_number": None,
             "software": None, "hardware": None, "serial": None, "dtcs": [], "errors": []},
        ],
        "absent": [1, 19],
        "summary": {"ecus_present": 2, "ecus_failed": 0, "dtcs": 1,
                    "confirmed": 1 if confirmed else 0, "warning_lamp": lamp},
    }


def status(state: str = "online", connected: bool = True) -> bytes:
    return json.dumps({"schema": "cbs.status/1", "state": state,
                       "reader": {"transport": "serial", "port": "/dev/x",
                                  "connected": connected}}).encode()
