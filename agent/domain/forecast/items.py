"""One item's forecast from its key figures and the vehicle's rates: the contract's three
limits (distance, time, wear), the earliest of which wins, and the item's status.

Conventions (docs/forecast.md):

* A limit reached after ``x`` days of driving falls due on ``data_date + ceil(x)``: the day
  the remaining km (or availability) runs out, counting the data date as day 0.
* ``time`` is the last day of ``due_month``; a leap February ends on the 29th.
* An item the key itself marks overdue (remaining km <= 0, availability 0) falls due no later
  than the day before the read date, so ``days_left`` is negative whenever the status is
  ``overdue``. An item with remaining km <= 0 is due on its data date (when it crossed the limit
  is not known).
* Ties between limits go to the first of distance, time, wear.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import date, timedelta

from agent.domain.forecast.settings import ForecastSettings
from agent.domain.models import ForecastBasis, ForecastStatus, ServiceForecast, construct
from protocols.cbs_types import CbsType
from protocols.key_session import ServiceItem
from protocols.values import fast_init

__all__ = ["DISTANCE_DRIVEN", "SEVERITY_DRIVEN", "WEAR_MODELLED", "ItemRates", "forecast_item",
           "last_day_of_month"]

#: Items whose CBS counts nominal km that severe use consumes faster (BMW's oil forecast
#: follows fuel burned; filters and fluids age with dust, heat and short trips): the climate
#: factor applies to their remaining km.
SEVERITY_DRIVEN: frozenset[CbsType] = frozenset({
    CbsType.ENGINE_OIL, CbsType.MICROFILTER, CbsType.PARTICULATE_FILTER,
    CbsType.TRANSFER_CASE_OIL, CbsType.SPARK_PLUGS_ADAPTIVE, CbsType.NOX_ADDITIVE,
    CbsType.SPARK_PLUGS, CbsType.PARTICULATE_FILTER_ADDITIVE, CbsType.TRANSMISSION_OIL,
})
#: Items whose remaining km the car already computes from a wear model (brake pads: two
#: wear-sensor stages plus a computed wear rate), so their km count at face value; their
#: availability (thickness left) gives the wear trend.
WEAR_MODELLED: frozenset[CbsType] = frozenset({
    CbsType.BRAKE_PADS_FRONT, CbsType.BRAKE_PADS_REAR, CbsType.CLUTCH, CbsType.SHOCK_ABSORBERS,
})
#: Items that wear with distance: their availability trend is counted per km driven.
DISTANCE_DRIVEN: frozenset[CbsType] = SEVERITY_DRIVEN | WEAR_MODELLED

_EPS = 1e-9


@fast_init
@dataclass(frozen=True, slots=True)
class ItemRates:
    """How fast one item runs out, as the session forecast estimated it."""

    km_per_day: float
    fall_per_km: float               # remaining km lost per km driven (climate factor or learned)
    wear_pct_per_km: float | None    # availability trend, per km driven...
    wear_pct_per_day: float | None   # ...or per day


def last_day_of_month(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _after(start: date, days: float, settings: ForecastSettings) -> date:
    """``start`` + ceil(days), never further than ``max_projection_days`` either way."""
    limit = settings.max_projection_days
    if days > limit:
        return start + timedelta(days=limit)
    if days < -limit:
        return start - timedelta(days=limit)
    return start + timedelta(days=math.ceil(days - _EPS))


def _distance(item: ServiceItem, data_date: date, read_date: date, rates: ItemRates,
              settings: ForecastSettings) -> date | None:
    remaining = item.remaining_km
    if remaining is None:
        return None
    if remaining <= 0:
        # The key says the limit is behind us; when it was crossed is not known (projecting
        # back at the daily distance would make a higher daily distance give a *later* date).
        # The data date is the last day it is known to have been overdue.
        return min(data_date, read_date - timedelta(days=1))
    speed = rates.km_per_day * rates.fall_per_km
    return _after(data_date, remaining / speed if speed > 0 else math.inf, settings)


def _time(item: ServiceItem) -> date | None:
    return None if item.due_month is None else last_day_of_month(item.due_year, item.due_month)


def _wear(item: ServiceItem, data_date: date, read_date: date, rates: ItemRates,
          settings: ForecastSettings) -> date | None:
    availability = item.availability_pct
    if availability is None:
        return None
    if availability == 0:
        return min(data_date, read_date - timedelta(days=1))
    availability_only = item.remaining_km is None and item.due_month is None
    if not availability_only and (item.remaining_km is None or availability > 100):
        # Time-only items: the due month is exact and their availability merely mirrors it.
        return None
    if rates.wear_pct_per_km is not None:
        per_day = rates.wear_pct_per_km * rates.km_per_day
        return _after(data_date, availability / per_day if per_day > 0 else math.inf, settings)
    if rates.wear_pct_per_day is not None:
        return _after(data_date, availability / rates.wear_pct_per_day, settings)
    if availability_only:
        return _after(data_date, availability / 100.0 * settings.nominal_wear_life_days, settings)
    return None


def forecast_item(item: ServiceItem, *, data_date: date, read_date: date, rates: ItemRates,
                  settings: ForecastSettings) -> ServiceForecast | None:
    """The item's forecast; None when the key gives no remaining km, no due month and no
    availability."""
    limits: list[tuple[date, ForecastBasis]] = []
    for basis, due in (("distance", _distance(item, data_date, read_date, rates, settings)),
                       ("time", _time(item)),
                       ("wear", _wear(item, data_date, read_date, rates, settings))):
        if due is not None:
            limits.append((due, basis))  # type: ignore[arg-type]
    if not limits:
        return None
    due_date, basis = min(limits, key=lambda limit: limit[0])  # first of equals wins
    days_left = (due_date - read_date).days
    overdue_by_key = ((item.remaining_km is not None and item.remaining_km <= 0)
                      or item.availability_pct == 0)
    status: ForecastStatus
    if overdue_by_key or due_date < read_date:
        status = "overdue"
    elif days_left <= settings.horizon_days or (
            item.remaining_km is not None and item.remaining_km <= settings.horizon_km):
        status = "due_soon"
    else:
        status = "ok"
    # Built without re-validation (agent.domain.models.construct): every value above is of the
    # field's type and within its limits; tests/agent/test_trusted_payloads.py holds it so.
    return construct(ServiceForecast, {"status": status, "due_date": due_date, "basis": basis,
                                       "days_left": days_left, "km_left": item.remaining_km})
