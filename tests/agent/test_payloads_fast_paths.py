"""The fast paths of agent/contract/payloads.py change nothing on the wire: rejection ids are the ids
they always were, a readout id hashes the session's own bytes (key id, frame count, CRC-32),
and ``build_readout`` (models constructed from checked values) gives the readout that the
nested, validating model constructors give."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from agent.contract.payloads import build_readout, build_rejection, event_time, readout_id
from agent.domain.forecast import ForecastResult, ForecastSettings, forecast_session
from agent.domain.models import (
    CheckControlEntry,
    DtcEntry,
    KeyInfo,
    LastService,
    Readout,
    ServiceEntry,
    UsageInfo,
    VehicleInfo,
    to_json,
)
from protocols.key_session import CheckControlStatus, KeySession
from protocols.session import RejectReason, SessionAccepted, SessionRejected
from simulators.fleet import Fleet

SESSIONS = list(Fleet(13, None, vehicle_count=300, edge_rate=0.2).sessions(400))
MOMENT = datetime(2026, 11, 27, 9, 15, 2, 123000, tzinfo=timezone.utc)


def _reference_id(kind: str, site: str, reader: str, moment: datetime, *content: object) -> str:
    """make_id as it was written first: sha256 of the tuple's repr."""
    text = repr((kind, site, reader, moment.isoformat(), content))
    digest = hashlib.sha256(text.encode()).hexdigest()
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z"
    return f"{stamp}-{digest[:12]}"


def _month(year: int, month: int | None) -> str | None:
    return None if month is None else f"{year:04d}-{month:02d}"


def _reference_readout(session: KeySession, read_at: datetime, forecast: ForecastResult) -> Readout:
    """build_readout as it was written first: nested model constructors."""
    v, u = session.vehicle, session.usage
    services = []
    for item in session.services:
        h = item.history
        last = None
        if h is not None and h.last_service_km is not None:
            last = LastService(mileage_km=h.last_service_km,
                               month=_month(h.last_service_year, h.last_service_month))
        services.append(ServiceEntry(
            index=item.index, type=str(item.type), code=item.code,
            availability_pct=item.availability_pct, remaining_km=item.remaining_km,
            due_month=_month(item.due_year, item.due_month), service_count=item.service_count,
            last_service=last, interval_km=h.interval_km if h is not None else None,
            interval_months=h.interval_months if h is not None else None,
            forecast=forecast.services.get(item.index)))
    return Readout(
        readout_id="R1", site="S1",
        reader="desk1", transport="serial", read_at=read_at,
        key=KeyInfo(key_id=session.key_id, slot=session.key_slot),
        vehicle=VehicleInfo(vin=session.vin, mileage_km=v.mileage_km, data_date=v.data_date,
                            build_month=_month(v.build_year, v.build_month),
                            fuel_level_pct=v.fuel_level_pct),
        usage=None if u is None else UsageInfo(
            ambient_avg_c=u.ambient_avg_c, ambient_min_c=u.ambient_min_c,
            ambient_max_c=u.ambient_max_c, hot_share_pct=u.hot_share_pct,
            cold_share_pct=u.cold_share_pct, short_trip_pct=u.short_trip_pct,
            severe_duty_pct=u.severe_duty_pct, avg_trip_km=u.avg_trip_km),
        services=services,
        check_control=[CheckControlEntry(
            id=cc.cc_id, mileage_km=cc.mileage_km,
            status="active" if cc.status is CheckControlStatus.ACTIVE else "stored")
            for cc in session.check_controls],
        dtcs=[DtcEntry(code=d.code_hex, sae=d.sae, failure_type=d.failure_type, status=d.status,
                       confirmed=d.confirmed, ecu=d.ecu_address, occurrences=d.occurrences)
              for d in session.dtcs],
        estimate=forecast.estimate, summary=forecast.summary)


def test_ids_are_unchanged_for_rejections_and_hash_the_session_bytes_for_readouts() -> None:
    event = SessionRejected(RejectReason.CRC_MISMATCH, "KEY_SESSION_END field Crc32: 0x1", 7, 3,
                            MOMENT.timestamp())
    rejection = build_rejection(event, site="S1", reader="desk1", transport="can")
    assert rejection.rejection_id == _reference_id(
        "rejected", "S1", "desk1", event_time(event.at), event.reason, event.detail,
        event.key_id, event.frames_received)
    accepted = SessionAccepted(SESSIONS[0], MOMENT.timestamp(), 21, 0xDEADBEEF)
    assert readout_id(accepted, site="S1", reader="desk1", read_at=MOMENT) == _reference_id(
        "readout", "S1", "desk1", MOMENT, SESSIONS[0].key_id, 21, 0xDEADBEEF)
    other_bytes = SessionAccepted(SESSIONS[0], MOMENT.timestamp(), 21, 0xDEADBEEE)
    assert readout_id(other_bytes, site="S1", reader="desk1", read_at=MOMENT) != readout_id(
        accepted, site="S1", reader="desk1", read_at=MOMENT)


def test_readout_is_the_same_model_and_json() -> None:
    settings = ForecastSettings()
    for session in SESSIONS:
        forecast = forecast_session(session, MOMENT, [], settings)
        ours = build_readout(session, site="S1", reader="desk1", transport="serial",
                             read_at=MOMENT, forecast=forecast, readout_id="R1")
        reference = _reference_readout(session, MOMENT, forecast)
        assert ours == reference
        assert to_json(ours) == to_json(reference)
