"""A :class:`KeySession` as plain JSON-safe data, and back, without loss.

The simulators write the session a reader meant to send into their ground-truth files, and
tests compare it with what the agent decoded, so the round trip must be exact:
``session_from_dict(session_to_dict(s)) == s`` for every valid session, also after a trip
through ``json.dumps``/``json.loads``. Dates are ISO strings, enums their integer values,
"not available" is ``None`` (``null``), tuples become lists. Keys are the dataclass field
names, so a reader of the JSON needs no other documentation than :mod:`key_session`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

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


def session_to_dict(session: KeySession) -> dict[str, Any]:
    """The JSON-safe dict of ``session`` (only str, int, float, None, list and dict)."""
    v = session.vehicle
    return {
        "session_seq": session.session_seq,
        "key_id": session.key_id,
        "key_slot": session.key_slot,
        "vin": session.vin,
        "vehicle": {
            "mileage_km": v.mileage_km,
            "data_date": v.data_date.isoformat(),
            "fuel_level_pct": v.fuel_level_pct,
            "build_year": v.build_year,
            "build_month": v.build_month,
        },
        "usage": None if session.usage is None else _usage_to_dict(session.usage),
        "services": [_item_to_dict(item) for item in session.services],
        "check_controls": [
            {"index": cc.index, "cc_id": cc.cc_id, "status": int(cc.status),
             "mileage_km": cc.mileage_km}
            for cc in session.check_controls],
        "dtcs": [
            {"index": d.index, "code": d.code, "status": d.status, "ecu_address": d.ecu_address,
             "occurrences": d.occurrences}
            for d in session.dtcs],
    }


def session_from_dict(data: dict[str, Any]) -> KeySession:
    """The session of a dict made by :func:`session_to_dict` (or its JSON).

    Raises :class:`ProtocolError` when a key is missing or a value has the wrong type; it
    does not re-validate protocol ranges (the dict describes a session, valid or not).
    """
    try:
        v = data["vehicle"]
        return KeySession(
            session_seq=_int(data["session_seq"]),
            key_id=_int(data["key_id"]),
            key_slot=_int(data["key_slot"]),
            vin=_str(data["vin"]),
            vehicle=VehicleData(
                mileage_km=_int(v["mileage_km"]),
                data_date=date.fromisoformat(_str(v["data_date"])),
                fuel_level_pct=_opt_int(v["fuel_level_pct"]),
                build_year=_int(v["build_year"]),
                build_month=_opt_int(v["build_month"]),
            ),
            usage=None if data["usage"] is None else _usage_from_dict(data["usage"]),
            services=tuple(_item_from_dict(item) for item in data["services"]),
            check_controls=tuple(
                CheckControlMessage(index=_int(cc["index"]), cc_id=_int(cc["cc_id"]),
                                    status=CheckControlStatus(_int(cc["status"])),
                                    mileage_km=_int(cc["mileage_km"]))
                for cc in data.get("check_controls", ())),
            dtcs=tuple(
                StoredDtc(index=_int(d["index"]), code=_int(d["code"]), status=_int(d["status"]),
                          ecu_address=_int(d["ecu_address"]), occurrences=_int(d["occurrences"]))
                for d in data.get("dtcs", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"not a key session dict: {type(exc).__name__}: {exc}") from exc


def _usage_to_dict(u: UsageData) -> dict[str, Any]:
    return {
        "ambient_avg_c": u.ambient_avg_c,
        "ambient_min_c": u.ambient_min_c,
        "ambient_max_c": u.ambient_max_c,
        "hot_share_pct": u.hot_share_pct,
        "cold_share_pct": u.cold_share_pct,
        "short_trip_pct": u.short_trip_pct,
        "severe_duty_pct": u.severe_duty_pct,
        "avg_trip_km": u.avg_trip_km,
    }


def _usage_from_dict(u: dict[str, Any]) -> UsageData:
    return UsageData(
        ambient_avg_c=_opt_float(u["ambient_avg_c"]),
        ambient_min_c=_opt_float(u["ambient_min_c"]),
        ambient_max_c=_opt_float(u["ambient_max_c"]),
        hot_share_pct=_int(u["hot_share_pct"]),
        cold_share_pct=_int(u["cold_share_pct"]),
        short_trip_pct=_int(u["short_trip_pct"]),
        severe_duty_pct=_int(u["severe_duty_pct"]),
        avg_trip_km=_float(u["avg_trip_km"]),
    )


def _item_to_dict(item: ServiceItem) -> dict[str, Any]:
    h = item.history
    return {
        "index": item.index,
        "code": item.code,
        "availability_pct": item.availability_pct,
        "remaining_km": item.remaining_km,
        "due_year": item.due_year,
        "due_month": item.due_month,
        "service_count": item.service_count,
        "history": None if h is None else {
            "last_service_km": h.last_service_km,
            "last_service_year": h.last_service_year,
            "last_service_month": h.last_service_month,
            "interval_km": h.interval_km,
            "interval_months": h.interval_months,
        },
    }


def _item_from_dict(item: dict[str, Any]) -> ServiceItem:
    h = item.get("history")
    return ServiceItem(
        index=_int(item["index"]),
        code=_int(item["code"]),
        availability_pct=_opt_int(item["availability_pct"]),
        remaining_km=_opt_int(item["remaining_km"]),
        due_year=_int(item["due_year"]),
        due_month=_opt_int(item["due_month"]),
        service_count=_int(item["service_count"]),
        history=None if h is None else ServiceHistory(
            last_service_km=_opt_int(h["last_service_km"]),
            last_service_year=_int(h["last_service_year"]),
            last_service_month=_opt_int(h["last_service_month"]),
            interval_km=_opt_int(h["interval_km"]),
            interval_months=_opt_int(h["interval_months"]),
        ),
    )


def _int(value: Any) -> int:
    # bool is an int subclass but never a valid field value; a float would silently truncate
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else _float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value
