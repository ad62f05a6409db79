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
from agent.domain.forecast.spread import Z90, DistanceSpread, trend_fit_var
from agent.domain.forecast.trends import TrendFit
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
_exp, _sqrt = math.exp, math.sqrt


@fast_init
@dataclass(frozen=True, slots=True)
class ItemRates:
    """How fast one item runs out, as the session forecast estimated it."""

    km_per_day: float
    fall_per_km: float               # remaining km lost per km driven (climate factor or learned)
    wear_pct_per_km: float | None    # availability trend, per km driven...
    wear_pct_per_day: float | None   # ...or per day
    # How sure each rate is (agent/domain/forecast/spread.py); the defaults say "certain",
    # which makes both ends of the interval the due date.
    distance_spread: DistanceSpread | None = None
    fall_var: float = 0.0            # relative variance of fall_per_km and of the km limit
    wear_fit: TrendFit | None = None  # the history's availability trend, when it gave the rate
    wear_drop_pct: float = 0.0       # else the fall since the last service the rate came from


def last_day_of_month(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


Dated = tuple[date, date, date]  # (due, early, late)


def _after(start: date, days: float, settings: ForecastSettings) -> date:
    """``start`` + ceil(days), never further than ``max_projection_days`` either way."""
    limit = settings.max_projection_days
    if days > limit:
        return start + timedelta(days=limit)
    if days < -limit:
        return start - timedelta(days=limit)
    return start + timedelta(days=math.ceil(days - _EPS))


def _spread(start: date, days: float, var: float, settings: ForecastSettings) -> Dated:
    """The due day after ``days`` and its 10th / 90th percentile when ``log days`` has the
    variance ``var`` (a negative ``days``, a limit in the past, spreads the same way)."""
    due = _after(start, days, settings)
    if var <= 0 or not math.isfinite(days) or days == 0:
        return due, due, due
    k = _exp(Z90 * _sqrt(var))
    if days > 0:
        return due, _after(start, days / k, settings), _after(start, days * k, settings)
    return due, _after(start, days * k, settings), _after(start, days / k, settings)


def _distance_var(rates: ItemRates, days: float) -> float:
    spread = rates.distance_spread
    return (0.0 if spread is None else spread.var_over(abs(days))) + rates.fall_var


def _distance(item: ServiceItem, data_date: date, read_date: date, rates: ItemRates,
              settings: ForecastSettings) -> Dated | None:
    remaining = item.remaining_km
    if remaining is None:
        return None
    speed = rates.km_per_day * rates.fall_per_km
    if remaining <= 0:
        # The key says the limit is behind us; when it was crossed is not known (projecting
        # back at the daily distance would make a higher daily distance give a *later* date).
        # The data date is the last day it is known to have been overdue: the due date and the
        # late end; the early end is the projection back at the slow end of the speed.
        due = min(data_date, read_date - timedelta(days=1))
        if speed <= 0 or remaining == 0:
            return due, due, due
        back = remaining / speed
        _, early, _ = _spread(data_date, back, _distance_var(rates, back), settings)
        return due, min(early, due), due
    days = remaining / speed if speed > 0 else math.inf
    return _spread(data_date, days, _distance_var(rates, days), settings)


def _time(item: ServiceItem) -> Dated | None:
    if item.due_month is None:
        return None
    end = last_day_of_month(item.due_year, item.due_month)
    return end, end, end


def _wear(item: ServiceItem, data_date: date, read_date: date, rates: ItemRates,
          settings: ForecastSettings) -> Dated | None:
    availability = item.availability_pct
    if availability is None:
        return None
    if availability == 0:
        due = min(data_date, read_date - timedelta(days=1))
        return due, due, due
    availability_only = item.remaining_km is None and item.due_month is None
    if not availability_only and (item.remaining_km is None or availability > 100):
        # Time-only items: the due month is exact and their availability merely mirrors it.
        return None
    trend_var = trend_fit_var(rates.wear_fit, availability, rates.wear_drop_pct, settings)
    if rates.wear_pct_per_km is not None:
        per_day = rates.wear_pct_per_km * rates.km_per_day
        days = availability / per_day if per_day > 0 else math.inf
        spread = rates.distance_spread
        var = trend_var + (0.0 if spread is None or not math.isfinite(days)
                           else spread.var_over(days))
        return _spread(data_date, days, var if spread is not None else 0.0, settings)
    if rates.wear_pct_per_day is not None:
        return _spread(data_date, availability / rates.wear_pct_per_day,
                       trend_var if rates.distance_spread is not None else 0.0, settings)
    if availability_only:
        var = settings.nominal_wear_life_sd ** 2 if rates.distance_spread is not None else 0.0
        return _spread(data_date, availability / 100.0 * settings.nominal_wear_life_days, var,
                       settings)
    return None


def forecast_item(item: ServiceItem, *, data_date: date, read_date: date, rates: ItemRates,
                  settings: ForecastSettings) -> ServiceForecast | None:
    """The item's forecast; None when the key gives no remaining km, no due month and no
    availability."""
    limits: list[tuple[Dated, ForecastBasis]] = []
    for basis, dated in (("distance", _distance(item, data_date, read_date, rates, settings)),
                         ("time", _time(item)),
                         ("wear", _wear(item, data_date, read_date, rates, settings))):
        if dated is not None:
            limits.append((dated, basis))  # type: ignore[arg-type]
    if not limits:
        return None
    (due_date, _, _), basis = min(limits, key=lambda limit: limit[0][0])  # first of equals wins
    # The limits move together (each is the vehicle's pace), so the percentile of the
    # earliest is the earliest of their percentiles; a calendar limit caps both ends. A brake
    # pad's remaining km and its availability are two readings of one thing, the thickness
    # left: the earlier of the two is not a second limit but the more pessimistic reading, so
    # its late end is the later of theirs.
    if len(limits) == 1:
        early, late = limits[0][0][1], limits[0][0][2]
    else:
        ends = [dated for dated, _ in limits]
        if item.type in WEAR_MODELLED and limits[0][1] == "distance" and limits[-1][1] == "wear":
            (_, e1, l1), (_, e2, l2) = ends[0], ends[-1]
            ends = [*ends[1:-1], (due_date, min(e1, e2), max(l1, l2))]
        early = min(dated[1] for dated in ends)
        late = min(dated[2] for dated in ends)
    early, late = min(early, due_date), max(late, due_date)
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
                                       "days_left": days_left, "km_left": item.remaining_km,
                                       "due_date_early": early, "due_date_late": late})
