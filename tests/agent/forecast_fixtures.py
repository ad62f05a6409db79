"""Builders for the forecast and vehicle-history tests: small sessions with readable defaults."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

from agent.domain.forecast import PastReading
from protocols.cbs_types import TYPE_TO_CODE, CbsType
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

VIN = "WBA8E5107FK123456"


UNKNOWN_CODE = 0x2A  # not in the protocol's table


def item(index: int, kind: CbsType | str = CbsType.ENGINE_OIL, *, availability: int | None = None,
         remaining: int | None = None, due: tuple[int, int] | None = None, count: int = 1,
         history: ServiceHistory | None = None) -> ServiceItem:
    kind = CbsType(kind)
    code = UNKNOWN_CODE if kind is CbsType.UNKNOWN else TYPE_TO_CODE[kind]
    year, month = due if due is not None else (2000, None)
    return ServiceItem(index=index, code=code, availability_pct=availability, remaining_km=remaining,
                       due_year=year, due_month=month, service_count=count, history=history)


def session(*items: ServiceItem, mileage: int = 48_371, data_date: date = date(2026, 11, 25),
            build: tuple[int, int | None] = (2022, 3), usage: UsageData | None = None,
            check_controls: tuple[CheckControlMessage, ...] = (), dtcs: tuple[StoredDtc, ...] = (),
            key_id: int = 0x12345678, vin: str = VIN) -> KeySession:
    return KeySession(session_seq=7, key_id=key_id, key_slot=2, vin=vin,
                      vehicle=VehicleData(mileage_km=mileage, data_date=data_date, fuel_level_pct=63,
                                          build_year=build[0], build_month=build[1]),
                      usage=usage, services=tuple(items), check_controls=check_controls, dtcs=dtcs)


def at(day: date, hour: int = 9, minute: int = 15) -> datetime:
    return datetime.combine(day, time(hour, minute), UTC)


def past(s: KeySession, day: date | None = None, *, readout_id: str | None = None) -> PastReading:
    """``s`` as an earlier readout, read on its data date (or ``day``)."""
    read_day = day if day is not None else s.vehicle.data_date
    return PastReading.from_session(s, at(read_day), readout_id or f"r-{read_day}-{s.vehicle.mileage_km}")


def visit(days: int, km: int, serviced: int = 3, *, vin: str = VIN) -> KeySession:
    """A visit ``days`` after 2024-01-01 at ``km``: oil and front pads wearing with time and
    distance, the oil serviced ``serviced`` times (a history of visits in a few lines)."""
    oil = item(0, CbsType.ENGINE_OIL, availability=max(0, 90 - days // 10),
               remaining=max(1, 15_000 - km % 15_000), due=(2027, 6), count=serviced)
    pads = item(1, CbsType.BRAKE_PADS_FRONT, availability=max(0, 80 - days // 20),
                remaining=max(1, 40_000 - km % 40_000), count=1)
    return session(oil, pads, mileage=km, data_date=date(2024, 1, 1) + timedelta(days=days), vin=vin)


def moved(s: KeySession, *, mileage: int, data_date: date, **changes: object) -> KeySession:
    """``s`` with another odometer and data date (items unchanged unless given)."""
    vehicle = replace(s.vehicle, mileage_km=mileage, data_date=data_date)
    return replace(s, vehicle=vehicle, **changes)


#: The protocol's worked example (spec section 4) as a session.
WORKED_USAGE = UsageData(ambient_avg_c=22.0, ambient_min_c=-7.0, ambient_max_c=37.0, hot_share_pct=8,
                         cold_share_pct=11, short_trip_pct=35, severe_duty_pct=0, avg_trip_km=14.2)
ACTIVE_CC = CheckControlMessage(index=0, cc_id=0x102, status=CheckControlStatus.ACTIVE, mileage_km=48_010)
STORED_CC = CheckControlMessage(index=0, cc_id=0x102, status=CheckControlStatus.STORED, mileage_km=48_010)
CONFIRMED_DTC = StoredDtc(index=0, code=0x03011F, status=0x2F, ecu_address=0x12, occurrences=3)
PENDING_DTC = StoredDtc(index=0, code=0x03011F, status=0x24, ecu_address=0x12, occurrences=3)


def worked_example(**changes: object) -> KeySession:
    s = session(
        item(0, CbsType.ENGINE_OIL, availability=12, remaining=1800, due=(2027, 2), count=4,
             history=ServiceHistory(30_000, 2025, 11, 15_000, 24)),
        item(1, CbsType.BRAKE_FLUID, due=(2027, 3), count=1),
        usage=WORKED_USAGE, check_controls=(ACTIVE_CC,), dtcs=(CONFIRMED_DTC,))
    return replace(s, **changes)
