"""``forecast_session``: the contract's forecast of one key read, as a pure function.

Order of work: the daily distance (history, else vehicle age, else the default), the climate
factor (learned from history, else the usage model of agent/domain/climate.py, else 1.0), then per
item its own rates and its forecast (agent/domain/forecast/items.py), then the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from agent.domain.climate import climate_factor as usage_climate_factor
from agent.domain.forecast.items import (
    DISTANCE_DRIVEN,
    SEVERITY_DRIVEN,
    WEAR_MODELLED,
    ItemRates,
    forecast_item,
)
from agent.domain.forecast.readings import PastReading
from agent.domain.forecast.settings import ForecastSettings
from agent.domain.forecast.spread import distance_spread
from agent.domain.forecast.trends import (
    HistoryAnomalies,
    HistorySummary,
    HistoryView,
    SummarizedReadings,
    TrendFit,
    availability_trend_fit,
    build_view,
    history_km_per_day,
    item_fall_rates,
    read_at_us,
    view_of,
)
from agent.domain.models import (
    Estimate,
    ForecastStatus,
    KmPerDayBasis,
    NextDue,
    ServiceForecast,
    Summary,
    construct,
)
from protocols.cbs_types import CbsType
from protocols.key_session import CheckControlStatus, KeySession, ServiceItem

__all__ = ["ForecastResult", "forecast_session", "read_date_of"]

_RANK: dict[ForecastStatus, int] = {"ok": 0, "due_soon": 1, "overdue": 2}


@dataclass(frozen=True)
class ForecastResult:
    """Everything the readout payload needs from the forecast, plus diagnostics.

    ``services`` maps item index to its forecast (None: the key gave nothing to forecast on).
    ``item_rates`` says, per index, which rates the item was projected with.
    """

    services: dict[int, ServiceForecast | None]
    estimate: Estimate
    summary: Summary
    anomalies: HistoryAnomalies = field(default_factory=HistoryAnomalies)
    item_rates: dict[int, ItemRates] = field(default_factory=dict)


def read_date_of(read_at: datetime, settings: ForecastSettings) -> date:
    """The read date: the day of ``read_at`` in the site's time zone."""
    if read_at.tzinfo is None or read_at.utcoffset() is None:
        raise ValueError("read_at must be timezone-aware")
    return read_at.astimezone(settings.zone).date()


def _vehicle_age_days(session: KeySession, settings: ForecastSettings) -> int | None:
    vehicle = session.vehicle
    if vehicle.build_month is None:
        return None
    built = date(vehicle.build_year, vehicle.build_month, settings.build_day)
    age_days = (vehicle.data_date - built).days
    return age_days if age_days >= settings.min_vehicle_age_days else None


def _vehicle_age_km_per_day(session: KeySession, settings: ForecastSettings) -> float | None:
    age_days = _vehicle_age_days(session, settings)
    return None if age_days is None else session.vehicle.mileage_km / age_days


def _daily_distance(session: KeySession, view: HistoryView,
                    settings: ForecastSettings) -> tuple[float, KmPerDayBasis]:
    by_age = _vehicle_age_km_per_day(session, settings)
    observed = history_km_per_day(view, settings)
    if observed is not None:
        km, days = observed
        prior = by_age if by_age is not None else settings.default_km_per_day
        weight = settings.history_prior_days
        return (km + weight * prior) / (days + weight), "history"
    if by_age is not None:
        return by_age, "vehicle_age"
    return settings.default_km_per_day, "default"


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def _vehicle_factor(session: KeySession, learned: dict[tuple[int, int], tuple[float, int]],
                    settings: ForecastSettings) -> float:
    """Engine oil's learned rate if there is one, else the km-weighted mean of the learned
    rates of the other severity-driven items, else the usage model."""
    driven = {key: v for key, v in learned.items() if CbsType.from_code(key[1]) in SEVERITY_DRIVEN}
    oil = [v for key, v in driven.items() if CbsType.from_code(key[1]) is CbsType.ENGINE_OIL]
    if oil:
        factor = oil[0][0]
    elif driven:
        factor = sum(r * km for r, km in driven.values()) / sum(km for _, km in driven.values())
    else:
        factor = usage_climate_factor(session.usage, settings.climate)
    return round(_clamp(factor, 1.0, settings.max_climate_factor), 2)


def _service_wear_trend(item: ServiceItem, session: KeySession, *, per_km: bool,
                        settings: ForecastSettings) -> float | None:
    """Availability lost per km (or day) since the last service, when availability starts at
    100 % after a service; a never-serviced item counts from new (0 km, the build date). Its
    one point lost ``100 - availability``, which the interval uses."""
    availability = item.availability_pct
    if availability is None or availability > 100:
        return None
    drop = 100 - availability
    if drop < settings.min_wear_drop_pct:
        return None
    vehicle = session.vehicle
    history = item.history
    never_serviced = item.service_count == 0 and (history is None or history.last_service_km is None)
    if per_km:
        if history is not None and history.last_service_km is not None:
            start_km = history.last_service_km
        elif never_serviced:
            start_km = 0
        else:
            return None
        driven = vehicle.mileage_km - start_km
        return drop / driven if driven >= settings.min_wear_km else None
    if history is not None and history.last_service_km is not None:
        if history.last_service_month is None:
            return None
        start = date(history.last_service_year, history.last_service_month, settings.build_day)
    elif never_serviced and vehicle.build_month is not None:
        start = date(vehicle.build_year, vehicle.build_month, settings.build_day)
    else:
        return None
    days = (vehicle.data_date - start).days
    return drop / days if days >= settings.min_wear_days else None


def forecast_session(session: KeySession, read_at: datetime,
                     history: Sequence[PastReading] | HistorySummary,
                     settings: ForecastSettings) -> ForecastResult:
    """The forecast of ``session`` read at ``read_at`` (tz-aware), given the vehicle's earlier
    readouts on this site, or their :class:`HistorySummary` (what the vehicle history keeps
    and gives with :class:`SummarizedReadings`: the same forecast for less work). Pure and
    deterministic; raises ValueError for a naive ``read_at`` or a summary of readouts read
    after it."""
    read_date = read_date_of(read_at, settings)
    current = PastReading.from_session(session, read_at.astimezone(UTC), "")
    if isinstance(history, HistorySummary):
        if history.read_until_us is not None and history.read_until_us > read_at_us(current):
            raise ValueError("the history summary has readouts read after this one")
        view = view_of(history, current, settings)
    elif isinstance(history, SummarizedReadings) and (
            kept := history.summary_until(read_at)) is not None and kept.stands_for(settings):
        view = view_of(kept, current, settings)  # the readings are not read at all
    else:
        view = build_view(history, current, settings)

    km_per_day, basis = _daily_distance(session, view, settings)
    km_per_day = round(km_per_day, 1)
    learned = item_fall_rates(view, [i.key for i in current.items], settings)
    factor = _vehicle_factor(session, learned, settings)
    # The forecast's models are built without re-validation (agent.domain.models.construct): the
    # values are computed here, of the fields' types and within their limits (floats made
    # floats); tests/agent/test_trusted_payloads.py holds them to pydantic's validation.
    estimate = construct(Estimate, {"km_per_day": float(km_per_day), "km_per_day_basis": basis,
                                    "climate_factor": float(factor)})

    spread = distance_spread(view, basis, vehicle_age_days=_vehicle_age_days(session, settings),
                             settings=settings)
    services: dict[int, ServiceForecast | None] = {}
    item_rates: dict[int, ItemRates] = {}
    data_date = session.vehicle.data_date
    for item in session.services:
        key = (item.index, item.code)
        kind = item.type
        severity = kind in SEVERITY_DRIVEN
        if key in learned:
            rate, watched = learned[key]
            fall = _clamp(rate, settings.min_item_ratio, settings.max_item_ratio)
            fall_var = settings.fall_rate_sd_at_1000_km ** 2 * 1000.0 / max(watched, 1)
        else:
            fall = factor if severity else 1.0
            fall_var = settings.climate_factor_sd ** 2 if severity else 0.0
        if severity:
            fall_var += settings.severity_limit_sd ** 2
        elif kind in WEAR_MODELLED:
            fall_var += settings.wear_modelled_limit_sd ** 2
        per_km = kind in DISTANCE_DRIVEN or item.remaining_km is not None
        fit: TrendFit | None = availability_trend_fit(view, key, per_km=per_km, settings=settings)
        trend = None if fit is None else fit.rate
        drop = 0.0
        if trend is None:
            trend = _service_wear_trend(item, session, per_km=per_km, settings=settings)
            if trend is not None and item.availability_pct is not None:
                drop = float(100 - item.availability_pct)
        rates = ItemRates(km_per_day=km_per_day, fall_per_km=fall,
                          wear_pct_per_km=trend if per_km else None,
                          wear_pct_per_day=None if per_km else trend,
                          distance_spread=spread, fall_var=fall_var, wear_fit=fit,
                          wear_drop_pct=drop)
        item_rates[item.index] = rates
        services[item.index] = forecast_item(item, data_date=data_date, read_date=read_date,
                                             rates=rates, settings=settings)
    return ForecastResult(services=services, estimate=estimate,
                          summary=summarize(session, services, settings),
                          anomalies=view.anomalies, item_rates=item_rates)


def summarize(session: KeySession, services: dict[int, ServiceForecast | None],
              settings: ForecastSettings) -> Summary:
    """Worst status, earliest due item (ties: lowest index) and express eligibility."""
    forecast_items = [(item, f) for item in session.services
                      if (f := services.get(item.index)) is not None]
    if not forecast_items:
        return construct(Summary, {"status": "ok", "next_due": None, "express_eligible": False})
    status = max((f.status for _, f in forecast_items), key=_RANK.__getitem__)
    first_item, first = min(forecast_items, key=lambda pair: (pair[1].due_date, pair[0].index))
    flagged = [item for item, f in forecast_items if f.status != "ok"]
    express = set(settings.express_types)
    eligible = (bool(flagged)
                and all(item.type.value in express for item in flagged)
                and not any(cc.status is CheckControlStatus.ACTIVE for cc in session.check_controls)
                and not any(dtc.confirmed for dtc in session.dtcs))
    return construct(Summary, {
        "status": status,
        "next_due": construct(NextDue, {"type": first_item.type.value, "due_date": first.due_date}),
        "express_eligible": eligible})
