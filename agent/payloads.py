"""Turning protocol events into the contract's payloads: pure functions, no I/O.

Identifiers are derived from what was read, not drawn at random, so that decoding the same
capture twice gives the same ``readout_id`` (integrators deduplicate on it) while two reads
never share one: the END time, the reader and the session's own content all go in.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from agent.forecast import ForecastResult
from agent.models import (
    CheckControlEntry,
    DtcEntry,
    KeyInfo,
    LastService,
    Readout,
    Rejected,
    ServiceEntry,
    Transport,
    UsageInfo,
    VehicleInfo,
)
from protocols.key_session import CheckControlStatus, KeySession, ServiceItem
from protocols.session import SessionRejected


def event_time(timestamp: float) -> datetime:
    """A frame timestamp (epoch seconds) as an aware UTC datetime, truncated to milliseconds."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def make_id(kind: str, site: str, reader: str, moment: datetime, *content: object) -> str:
    """``20261127T091502123Z-<12 hex>``: sortable by time, unique by content."""
    digest = hashlib.sha256(repr((kind, site, reader, moment.isoformat(), content)).encode()).hexdigest()
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z"
    return f"{stamp}-{digest[:12]}"


def _month(year: int, month: int | None) -> str | None:
    return None if month is None else f"{year:04d}-{month:02d}"


def _service_entry(item: ServiceItem, result: ForecastResult) -> ServiceEntry:
    history = item.history
    last_service = None
    if history is not None and history.last_service_km is not None:
        last_service = LastService(mileage_km=history.last_service_km,
                                   month=_month(history.last_service_year, history.last_service_month))
    return ServiceEntry(
        index=item.index, type=str(item.type), code=item.code,
        availability_pct=item.availability_pct, remaining_km=item.remaining_km,
        due_month=_month(item.due_year, item.due_month), service_count=item.service_count,
        last_service=last_service,
        interval_km=history.interval_km if history is not None else None,
        interval_months=history.interval_months if history is not None else None,
        forecast=result.services.get(item.index))


def build_readout(session: KeySession, *, site: str, reader: str, transport: Transport,
                  read_at: datetime, forecast: ForecastResult, readout_id: str | None = None) -> Readout:
    """The ``cbs.readout/1`` payload of an accepted session."""
    v = session.vehicle
    u = session.usage
    return Readout(
        readout_id=readout_id or make_id("readout", site, reader, read_at, session),
        site=site, reader=reader, transport=transport, read_at=read_at,
        key=KeyInfo(key_id=session.key_id, slot=session.key_slot),
        vehicle=VehicleInfo(vin=session.vin, mileage_km=v.mileage_km, data_date=v.data_date,
                            build_month=_month(v.build_year, v.build_month),
                            fuel_level_pct=v.fuel_level_pct),
        usage=None if u is None else UsageInfo(
            ambient_avg_c=u.ambient_avg_c, ambient_min_c=u.ambient_min_c,
            ambient_max_c=u.ambient_max_c, hot_share_pct=u.hot_share_pct,
            cold_share_pct=u.cold_share_pct, short_trip_pct=u.short_trip_pct,
            severe_duty_pct=u.severe_duty_pct, avg_trip_km=u.avg_trip_km),
        services=[_service_entry(item, forecast) for item in session.services],
        check_control=[
            CheckControlEntry(id=cc.cc_id, mileage_km=cc.mileage_km,
                              status="active" if cc.status is CheckControlStatus.ACTIVE else "stored")
            for cc in session.check_controls],
        dtcs=[DtcEntry(code=d.code_hex, sae=d.sae, failure_type=d.failure_type, status=d.status,
                       confirmed=d.confirmed, ecu=d.ecu_address, occurrences=d.occurrences)
              for d in session.dtcs],
        estimate=forecast.estimate, summary=forecast.summary)


def build_rejection(event: SessionRejected, *, site: str, reader: str, transport: Transport,
                    at: datetime | None = None) -> Rejected:
    """The ``cbs.rejected/1`` payload of a rejected session (``at`` defaults to the event's time)."""
    moment = at if at is not None else event_time(event.at)
    return Rejected(
        rejection_id=make_id("rejected", site, reader, moment, event.reason, event.detail,
                             event.key_id, event.frames_received),
        site=site, reader=reader, transport=transport, at=moment, reason=event.reason.value,
        detail=event.detail, key_id=event.key_id, frames_received=event.frames_received)
