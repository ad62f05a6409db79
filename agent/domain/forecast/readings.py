"""What the vehicle history keeps of an earlier readout, and the same view of the current one.

Only what the forecast learns from is kept: when and how far the vehicle had gone, and per
item the figures whose trend matters. The current session is turned into a
:class:`PastReading` too, so that "earlier readouts plus this one" is one series.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from protocols.key_session import KeySession, ServiceItem
from protocols.values import fast_init

__all__ = ["PastItem", "PastReading"]


@fast_init
@dataclass(frozen=True, slots=True)
class PastItem:
    """One service item of an earlier readout."""

    index: int
    code: int
    remaining_km: int | None
    availability_pct: int | None
    service_count: int
    last_service_km: int | None = None

    @property
    def key(self) -> tuple[int, int]:
        """Items of two readouts are the same item when index and type code agree."""
        return (self.index, self.code)

    @classmethod
    def from_item(cls, item: ServiceItem) -> PastItem:
        last_km = item.history.last_service_km if item.history is not None else None
        return cls(index=item.index, code=item.code, remaining_km=item.remaining_km,
                   availability_pct=item.availability_pct, service_count=item.service_count,
                   last_service_km=last_km)


@fast_init
@dataclass(frozen=True, slots=True)
class PastReading:
    """An earlier readout of one vehicle on this site (``read_at`` is tz-aware UTC)."""

    readout_id: str
    vin: str
    read_at: datetime
    key_id: int
    data_date: date
    mileage_km: int
    items: tuple[PastItem, ...] = ()

    @classmethod
    def from_session(cls, session: KeySession, read_at: datetime, readout_id: str) -> PastReading:
        return cls(readout_id=readout_id, vin=session.vin, read_at=read_at, key_id=session.key_id,
                   data_date=session.vehicle.data_date, mileage_km=session.vehicle.mileage_km,
                   items=tuple(PastItem.from_item(i) for i in session.services))

    def item(self, key: tuple[int, int]) -> PastItem | None:
        index, code = key  # compared field by field: the forecast asks this per item and segment
        for candidate in self.items:
            if candidate.index == index and candidate.code == code:
                return candidate
        return None
