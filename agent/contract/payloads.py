"""Turning protocol events into the contract's payloads: pure functions, no I/O.

Identifiers are derived from what was read, not drawn at random, so that decoding the same
capture twice gives the same ``readout_id`` (integrators deduplicate on it) while two reads
never share one: the END time, the reader and the session's own content all go in.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from agent.domain.forecast import ForecastResult
from agent.domain.models import (
    READOUT_SCHEMA,
    CheckControlEntry,
    DtcEntry,
    KeyInfo,
    LastService,
    Proposal,
    Readout,
    Rejected,
    ServiceEntry,
    Transport,
    UsageInfo,
    VehicleInfo,
    construct,
    event_time,
)
from agent.domain.proposal import ProposalContext
from protocols.cbs_types import CbsType
from protocols.key_session import CheckControlStatus, KeySession
from protocols.session import SessionAccepted, SessionRejected


def make_id(kind: str, site: str, reader: str, moment: datetime, *content: object) -> str:
    """``20261127T091502123Z-<12 hex>``: sortable by time, unique by content.

    The digest is over ``repr((kind, site, reader, moment.isoformat(), content))``; content is
    made of plain values (numbers, text, enums)."""
    text = repr((kind, site, reader, moment.isoformat(), content))
    digest = hashlib.sha256(text.encode()).hexdigest()
    m = moment  # the stamp is strftime("%Y%m%dT%H%M%S") and milliseconds, without strftime's cost
    return (f"{m.year:04d}{m.month:02d}{m.day:02d}T{m.hour:02d}{m.minute:02d}{m.second:02d}"
            f"{m.microsecond // 1000:03d}Z-{digest[:12]}")


def readout_id(event: SessionAccepted, *, site: str, reader: str, read_at: datetime) -> str:
    """The id of the readout of an accepted session.

    The content that goes in is the key id, the number of data frames and the CRC-32 over all
    of them that the END frame confirmed: the session's own bytes, already summed by the
    assembler, so the id costs one short hash (the decoded session's repr, hashed before,
    cost a quarter of a frame decode per frame)."""
    return make_id("readout", site, reader, read_at, event.session.key_id, event.frames_received,
                   event.crc32)


# -- the readout ---------------------------------------------------------------------------

_TYPE_NAMES: dict[int, str] = {}


def _type_name(code: int) -> str:
    """``str(CbsType.from_code(code))``, remembered per code."""
    name = _TYPE_NAMES.get(code)
    if name is None:
        name = _TYPE_NAMES[code] = str(CbsType.from_code(code))
    return name


def _month(year: int, month: int | None) -> str | None:
    return None if month is None else f"{year:04d}-{month:02d}"


def service_entries(session: KeySession, forecast: ForecastResult) -> list[ServiceEntry]:
    """``services[]`` of the readout: the key's items, ordered by index, with their forecasts."""
    forecasts = forecast.services
    services = []
    for item in session.services:
        history = item.history
        if history is None:
            last_service = interval_km = interval_months = None
        else:
            last_service = None if history.last_service_km is None else construct(LastService, {
                "mileage_km": history.last_service_km,
                "month": _month(history.last_service_year, history.last_service_month)})
            interval_km, interval_months = history.interval_km, history.interval_months
        services.append(construct(ServiceEntry, {
            "index": item.index, "type": _type_name(item.code), "code": item.code,
            "availability_pct": item.availability_pct, "remaining_km": item.remaining_km,
            "due_month": _month(item.due_year, item.due_month),
            "service_count": item.service_count, "last_service": last_service,
            "interval_km": interval_km, "interval_months": interval_months,
            "forecast": forecasts.get(item.index)}))
    return services


def build_readout(session: KeySession, *, site: str, reader: str, transport: Transport,
                  read_at: datetime, forecast: ForecastResult, readout_id: str,
                  services: list[ServiceEntry] | None = None,
                  proposal: Proposal | None = None) -> Readout:
    """The ``cbs.readout/1`` payload of an accepted session.

    Built with :func:`agent.domain.models.construct` from values the protocol layer has checked
    (see there; a property test holds the result equal to pydantic's validation of it).
    ``services`` are :func:`service_entries` when the caller made them already (to price
    them before the readout is built)."""
    v = session.vehicle
    u = session.usage
    return construct(Readout, {
        "schema_": READOUT_SCHEMA, "readout_id": readout_id,
        "site": site, "reader": reader, "transport": transport, "read_at": read_at,
        "key": construct(KeyInfo, {"key_id": session.key_id, "slot": session.key_slot}),
        "vehicle": construct(VehicleInfo, {
            "vin": session.vin, "mileage_km": v.mileage_km, "data_date": v.data_date,
            "build_month": _month(v.build_year, v.build_month),
            "fuel_level_pct": v.fuel_level_pct}),
        "usage": None if u is None else construct(UsageInfo, {
            "ambient_avg_c": u.ambient_avg_c, "ambient_min_c": u.ambient_min_c,
            "ambient_max_c": u.ambient_max_c, "hot_share_pct": u.hot_share_pct,
            "cold_share_pct": u.cold_share_pct, "short_trip_pct": u.short_trip_pct,
            "severe_duty_pct": u.severe_duty_pct, "avg_trip_km": u.avg_trip_km}),
        "services": services if services is not None else service_entries(session, forecast),
        "check_control": [construct(CheckControlEntry, {
            "id": cc.cc_id,
            "status": "active" if cc.status is CheckControlStatus.ACTIVE else "stored",
            "mileage_km": cc.mileage_km}) for cc in session.check_controls],
        "dtcs": [construct(DtcEntry, {
            "code": d.code_hex, "sae": d.sae, "failure_type": d.failure_type,
            "status": d.status, "confirmed": d.confirmed, "ecu": d.ecu_address,
            "occurrences": d.occurrences}) for d in session.dtcs],
        "estimate": forecast.estimate, "summary": forecast.summary, "proposal": proposal})


def readout_payload(event: SessionAccepted, *, site: str, reader: str, transport: Transport,
                    read_at: datetime, forecast: ForecastResult,
                    proposal: ProposalContext) -> Readout:
    """The readout of an accepted session in one pass: its service entries from the
    forecast, priced by ``proposal`` (the domain rule), and the payload with its id. The
    pipeline calls this once per readout, after the forecast; nothing here calls back up."""
    session = event.session
    services = service_entries(session, forecast)
    priced = proposal.propose(services, express_eligible=forecast.summary.express_eligible)
    return build_readout(
        session, site=site, reader=reader, transport=transport, read_at=read_at,
        forecast=forecast, services=services, proposal=priced,
        readout_id=readout_id(event, site=site, reader=reader, read_at=read_at))


def build_rejection(event: SessionRejected, *, site: str, reader: str, transport: Transport,
                    at: datetime | None = None) -> Rejected:
    """The ``cbs.rejected/1`` payload of a rejected session (``at`` defaults to the event's time)."""
    moment = at if at is not None else event_time(event.at)
    return Rejected(
        rejection_id=make_id("rejected", site, reader, moment, event.reason, event.detail,
                             event.key_id, event.frames_received),
        site=site, reader=reader, transport=transport, at=moment, reason=event.reason.value,
        detail=event.detail, key_id=event.key_id, frames_received=event.frames_received)
