"""Turning protocol events into the contract's payloads: pure functions, no I/O.

Identifiers are derived from what was read, not drawn at random, so that decoding the same
capture twice gives the same ``readout_id`` (integrators deduplicate on it) while two reads
never share one: the END time, the reader and the session's own content all go in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from agent.forecast import ForecastResult
from agent.models import Readout, Rejected, Transport
from protocols.cbs_types import CbsType
from protocols.key_session import CheckControlStatus, KeySession
from protocols.session import SessionRejected


def event_time(timestamp: float) -> datetime:
    """A frame timestamp (epoch seconds) as an aware UTC datetime, truncated to milliseconds."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def make_id(kind: str, site: str, reader: str, moment: datetime, *content: object) -> str:
    """``20261127T091502123Z-<12 hex>``: sortable by time, unique by content.

    The digest is over ``repr((kind, site, reader, moment.isoformat(), content))``; the repr
    of the session dataclasses is produced by :func:`content_repr` (the same text, faster)."""
    text = (f"({kind!r}, {site!r}, {reader!r}, {moment.isoformat()!r}, "
            f"{content_repr(content)})")
    digest = hashlib.sha256(text.encode()).hexdigest()
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z"
    return f"{stamp}-{digest[:12]}"


# -- repr without the recursion guard ------------------------------------------------------
#
# A readout's id hashes the repr of its KeySession. A dataclass repr guards every object
# against recursion (a set of ids per thread), which costs more than the formatting itself
# on a tree of ~20 small objects. content_repr renders the same text with per-class
# functions compiled like dataclasses compiles its own __repr__; tests/agent hold it equal
# to repr() over whole fleets.

_RENDERERS: dict[type, Callable[[Any], str]] = {}
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def content_repr(value: object) -> str:
    """``repr(value)`` for values made of tuples, plain values and dataclasses with their
    generated ``__repr__``; anything else goes through ``repr`` itself."""
    cls = type(value)
    render = _RENDERERS.get(cls)
    if render is None:
        render = _RENDERERS[cls] = _renderer_for(cls)
    return render(value)


def _tuple_repr(value: tuple[Any, ...]) -> str:
    if len(value) == 1:
        return f"({content_repr(value[0])},)"
    return "(" + ", ".join([content_repr(item) for item in value]) + ")"


def _renderer_for(cls: type) -> Callable[[Any], str]:
    if cls is tuple:
        return _tuple_repr
    generated = cls.__dict__.get("__repr__")
    if not (dataclasses.is_dataclass(cls) and getattr(generated, "__wrapped__", None) is not None):
        return repr  # not a dataclass with the generated repr: ask the object itself
    module = sys.modules.get(cls.__module__)
    scope = vars(module) if module is not None else {}

    def may_nest(annotation: object) -> bool:
        # Only a speed choice: a field rendered with !r gives the same text either way.
        text = annotation if isinstance(annotation, str) else repr(annotation)
        return any(name == "tuple" or dataclasses.is_dataclass(scope.get(name))
                   for name in _IDENTIFIER.findall(text))

    parts = [f"{f.name}={{_render(self.{f.name})}}" if may_nest(f.type)
             else f"{f.name}={{self.{f.name}!r}}"
             for f in dataclasses.fields(cls) if f.repr]
    source = (f"def render(self):\n"
              f"    return f'{cls.__qualname__}({', '.join(parts)})'\n")
    namespace: dict[str, Any] = {"_render": content_repr}
    exec(source, namespace)  # noqa: S102 - compiled from the dataclass's own field names
    return namespace["render"]  # type: ignore[no-any-return]


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


def build_readout(session: KeySession, *, site: str, reader: str, transport: Transport,
                  read_at: datetime, forecast: ForecastResult, readout_id: str | None = None) -> Readout:
    """The ``cbs.readout/1`` payload of an accepted session.

    The payload is assembled as plain data and validated in one ``Readout.model_validate``
    call (pydantic checks every field, nested models included, in one pass): several times
    cheaper than calling each nested model's constructor."""
    v = session.vehicle
    u = session.usage
    forecasts = forecast.services
    services = []
    for item in session.services:
        history = item.history
        if history is None:
            last_service = interval_km = interval_months = None
        else:
            last_service = None if history.last_service_km is None else {
                "mileage_km": history.last_service_km,
                "month": _month(history.last_service_year, history.last_service_month)}
            interval_km, interval_months = history.interval_km, history.interval_months
        services.append({
            "index": item.index, "type": _type_name(item.code), "code": item.code,
            "availability_pct": item.availability_pct, "remaining_km": item.remaining_km,
            "due_month": _month(item.due_year, item.due_month),
            "service_count": item.service_count, "last_service": last_service,
            "interval_km": interval_km, "interval_months": interval_months,
            "forecast": forecasts.get(item.index)})
    return Readout.model_validate({
        "readout_id": readout_id or make_id("readout", site, reader, read_at, session),
        "site": site, "reader": reader, "transport": transport, "read_at": read_at,
        "key": {"key_id": session.key_id, "slot": session.key_slot},
        "vehicle": {"vin": session.vin, "mileage_km": v.mileage_km, "data_date": v.data_date,
                    "build_month": _month(v.build_year, v.build_month),
                    "fuel_level_pct": v.fuel_level_pct},
        "usage": None if u is None else {
            "ambient_avg_c": u.ambient_avg_c, "ambient_min_c": u.ambient_min_c,
            "ambient_max_c": u.ambient_max_c, "hot_share_pct": u.hot_share_pct,
            "cold_share_pct": u.cold_share_pct, "short_trip_pct": u.short_trip_pct,
            "severe_duty_pct": u.severe_duty_pct, "avg_trip_km": u.avg_trip_km},
        "services": services,
        "check_control": [
            {"id": cc.cc_id, "mileage_km": cc.mileage_km,
             "status": "active" if cc.status is CheckControlStatus.ACTIVE else "stored"}
            for cc in session.check_controls],
        "dtcs": [{"code": d.code_hex, "sae": d.sae, "failure_type": d.failure_type,
                  "status": d.status, "confirmed": d.confirmed, "ecu": d.ecu_address,
                  "occurrences": d.occurrences} for d in session.dtcs],
        "estimate": forecast.estimate, "summary": forecast.summary})


def build_rejection(event: SessionRejected, *, site: str, reader: str, transport: Transport,
                    at: datetime | None = None) -> Rejected:
    """The ``cbs.rejected/1`` payload of a rejected session (``at`` defaults to the event's time)."""
    moment = at if at is not None else event_time(event.at)
    return Rejected(
        rejection_id=make_id("rejected", site, reader, moment, event.reason, event.detail,
                             event.key_id, event.frames_received),
        site=site, reader=reader, transport=transport, at=moment, reason=event.reason.value,
        detail=event.detail, key_id=event.key_id, frames_received=event.frames_received)
