"""Encoding key sessions into CAN frames with the DBC: the reader's side of the protocol.

Used by the simulators and the tests; the agent itself only decodes. Field values go through
cantools (``scaling=False``: the raw integers of the spec), so the DBC stays the one place
that knows where a bit lives.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from cantools.database.can import Database

from dbc import key_reader_database
from protocols.can_frame import CanFrame
from protocols.errors import ProtocolError
from protocols.key_messages import (
    KEY_CBS_HISTORY,
    KEY_CBS_STATUS,
    KEY_CHECK_CONTROL,
    KEY_DTC,
    KEY_SESSION_END,
    KEY_SESSION_START,
    KEY_USAGE,
    KEY_VEHICLE,
    KEY_VIN,
)
from protocols.key_session import KeySession, ServiceItem, UsageData

NOT_AVAILABLE_U8 = 255
NOT_AVAILABLE_KM = -524288
NEVER_SERVICED_KM = 0xFFFFFF


def encode_raw(frame_id: int, raw_signals: dict[str, int], *, db: Database | None = None) -> bytes:
    """8 data bytes of one message from raw (unscaled) signal values; raises ProtocolError."""
    db = db if db is not None else key_reader_database()
    try:
        return bytes(db.encode_message(frame_id, raw_signals, scaling=False, strict=True))
    except Exception as exc:  # cantools: EncodeError, KeyError for a missing signal, ...
        raise ProtocolError(f"cannot encode 0x{frame_id:03X} {raw_signals}: {exc}") from exc


def _ambient_raw(value_c: float | None) -> int:
    return NOT_AVAILABLE_U8 if value_c is None else round((value_c + 40) / 0.5)


def _usage_raw(usage: UsageData) -> dict[str, int]:
    return {
        "AmbientAvg": _ambient_raw(usage.ambient_avg_c),
        "AmbientMin": _ambient_raw(usage.ambient_min_c),
        "AmbientMax": _ambient_raw(usage.ambient_max_c),
        "HotSharePct": usage.hot_share_pct,
        "ColdSharePct": usage.cold_share_pct,
        "ShortTripPct": usage.short_trip_pct,
        "SevereDutyPct": usage.severe_duty_pct,
        "AvgTripKm": round(usage.avg_trip_km * 10),
    }


def _status_raw(item: ServiceItem) -> dict[str, int]:
    return {
        "ItemIndex": item.index,
        "CbsType": item.code,
        "AvailabilityPct": NOT_AVAILABLE_U8 if item.availability_pct is None else item.availability_pct,
        "RemainingKm": NOT_AVAILABLE_KM if item.remaining_km is None else item.remaining_km,
        "DueYear": item.due_year - 2000,
        "DueMonth": item.due_month or 0,
        "ServiceCount": item.service_count,
    }


def _history_raw(item: ServiceItem) -> dict[str, int]:
    h = item.history
    assert h is not None
    return {
        "ItemIndex": item.index,
        "LastServiceKm": NEVER_SERVICED_KM if h.last_service_km is None else h.last_service_km,
        "LastServiceYear": h.last_service_year - 2000,
        "LastServiceMonth": h.last_service_month or 0,
        "IntervalKm": (h.interval_km or 0) // 100,
        "IntervalMonths": h.interval_months or 0,
    }


def data_frame_payloads(session: KeySession, *, db: Database | None = None) -> list[tuple[int, bytes]]:
    """(id, 8 bytes) of every data frame of ``session``, in the canonical order:
    VIN parts, vehicle, usage, each item's status then history, check controls, DTCs."""
    db = db if db is not None else key_reader_database()
    vin = session.vin.encode("ascii")
    if len(vin) != 17:
        raise ProtocolError(f"VIN {session.vin!r} is not 17 characters")
    out: list[tuple[int, bytes]] = []
    for part, chars in enumerate((vin[0:7], vin[7:14], vin[14:17] + b"\0\0\0\0")):
        raw = {"VinPart": part} | {f"VinChar{i}": chars[i] for i in range(7)}
        out.append((KEY_VIN, encode_raw(KEY_VIN, raw, db=db)))
    v = session.vehicle
    out.append((KEY_VEHICLE, encode_raw(KEY_VEHICLE, {
        "MileageKm": v.mileage_km, "DataYear": v.data_date.year - 2000,
        "DataMonth": v.data_date.month, "DataDay": v.data_date.day,
        "FuelLevelPct": NOT_AVAILABLE_U8 if v.fuel_level_pct is None else v.fuel_level_pct,
        "BuildYear": v.build_year - 2000, "BuildMonth": v.build_month or 0}, db=db)))
    if session.usage is not None:
        out.append((KEY_USAGE, encode_raw(KEY_USAGE, _usage_raw(session.usage), db=db)))
    for item in session.services:
        out.append((KEY_CBS_STATUS, encode_raw(KEY_CBS_STATUS, _status_raw(item), db=db)))
        if item.history is not None:
            out.append((KEY_CBS_HISTORY, encode_raw(KEY_CBS_HISTORY, _history_raw(item), db=db)))
    for cc in session.check_controls:
        out.append((KEY_CHECK_CONTROL, encode_raw(KEY_CHECK_CONTROL, {
            "CcIndex": cc.index, "CcId": cc.cc_id, "CcStatus": int(cc.status),
            "CcMileageKm": cc.mileage_km}, db=db)))
    for dtc in session.dtcs:
        out.append((KEY_DTC, encode_raw(KEY_DTC, {
            "DtcIndex": dtc.index, "DtcCode": dtc.code, "DtcStatus": dtc.status,
            "EcuAddress": dtc.ecu_address, "Occurrences": dtc.occurrences}, db=db)))
    return out


def session_crc32(payloads: Iterable[bytes]) -> int:
    """The END frame's CRC-32: zlib.crc32 over the data bytes, in order."""
    crc = 0
    for data in payloads:
        crc = zlib.crc32(data, crc)
    return crc


def start_payload(*, seq: int, frame_count: int, key_id: int, key_slot: int,
                  version: int = 1, db: Database | None = None) -> bytes:
    return encode_raw(KEY_SESSION_START, {
        "ProtocolVersion": version, "SessionSeq": seq, "FrameCount": frame_count,
        "KeyId": key_id, "KeySlot": key_slot}, db=db)


def end_payload(*, seq: int, frame_count: int, crc32: int, db: Database | None = None) -> bytes:
    return encode_raw(KEY_SESSION_END, {"SessionSeq": seq, "FrameCount": frame_count,
                                        "Crc32": crc32}, db=db)


def frame_session(session: KeySession, data: Sequence[tuple[int, bytes]], *,
                  start_time: float = 0.0, frame_gap_s: float = 0.0,
                  db: Database | None = None, **start_overrides: Any) -> list[CanFrame]:
    """START + ``data`` + END as timestamped frames, with the END's count and CRC computed
    from ``data`` as given (so a caller may reorder data frames and still get a valid session)."""
    db = db if db is not None else key_reader_database()
    header = {"seq": session.session_seq, "frame_count": len(data), "key_id": session.key_id,
              "key_slot": session.key_slot} | start_overrides
    payloads = [(KEY_SESSION_START, start_payload(**header, db=db)), *data,
                (KEY_SESSION_END, end_payload(seq=header["seq"], frame_count=len(data),
                                              crc32=session_crc32(d for _, d in data), db=db))]
    return [CanFrame(fid, d, start_time + i * frame_gap_s) for i, (fid, d) in enumerate(payloads)]


def encode_session(session: KeySession, *, start_time: float = 0.0, frame_gap_s: float = 0.0,
                   db: Database | None = None) -> list[CanFrame]:
    """The complete, valid session of frames a reader sends for ``session``."""
    return frame_session(session, data_frame_payloads(session, db=db), start_time=start_time,
                         frame_gap_s=frame_gap_s, db=db)
