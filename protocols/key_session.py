"""The domain values of one key read: what a valid session means, free of wire details.

Values the key marks "not available" are ``None`` here; sentinels never leave the codec.
Collections are tuples ordered by their index so that two equal reads compare equal.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from protocols.cbs_types import CbsType
from protocols.dtc import DtcRecord, sae_reading
from protocols.values import fast_init


class CheckControlStatus(enum.IntEnum):
    ACTIVE = 1
    STORED = 2


@fast_init
@dataclass(frozen=True, slots=True)
class VehicleData:
    mileage_km: int
    data_date: date
    fuel_level_pct: int | None
    build_year: int
    build_month: int | None


@fast_init
@dataclass(frozen=True, slots=True)
class UsageData:
    ambient_avg_c: float | None
    ambient_min_c: float | None
    ambient_max_c: float | None
    hot_share_pct: int
    cold_share_pct: int
    short_trip_pct: int
    severe_duty_pct: int
    avg_trip_km: float


@fast_init
@dataclass(frozen=True, slots=True)
class ServiceHistory:
    """KEY_CBS_HISTORY of an item. ``last_service_km`` is None when never serviced."""

    last_service_km: int | None
    last_service_year: int
    last_service_month: int | None
    interval_km: int | None
    interval_months: int | None


@fast_init
@dataclass(frozen=True, slots=True)
class ServiceItem:
    index: int
    code: int
    availability_pct: int | None
    remaining_km: int | None
    due_year: int
    due_month: int | None
    service_count: int
    history: ServiceHistory | None = None

    @property
    def type(self) -> CbsType:
        return CbsType.from_code(self.code)


@fast_init
@dataclass(frozen=True, slots=True)
class CheckControlMessage:
    index: int
    cc_id: int
    status: CheckControlStatus
    mileage_km: int


@fast_init
@dataclass(frozen=True, slots=True)
class StoredDtc:
    """A diagnostic trouble code; ``code`` is the 24-bit value in ISO 14229-1 byte order."""

    index: int
    code: int
    status: int
    ecu_address: int
    occurrences: int

    @property
    def code_hex(self) -> str:
        return f"{self.code:06X}"

    @property
    def failure_type(self) -> int:
        return self.code & 0xFF

    @property
    def confirmed(self) -> bool:
        return bool(self.status & 0x08)

    @property
    def sae(self) -> str:
        """SAE J2012 reading of the first two bytes, e.g. 0x0301 -> ``P0301``."""
        return sae_reading(self.code >> 8)

    def record(self) -> DtcRecord:
        """The same code in the form the vehicle test reports (protocols/dtc.py)."""
        return DtcRecord(self.code, 3, self.status)


@fast_init
@dataclass(frozen=True, slots=True)
class KeySession:
    """One complete, validated key read."""

    session_seq: int
    key_id: int
    key_slot: int
    vin: str
    vehicle: VehicleData
    usage: UsageData | None
    services: tuple[ServiceItem, ...]
    check_controls: tuple[CheckControlMessage, ...] = ()
    dtcs: tuple[StoredDtc, ...] = ()
