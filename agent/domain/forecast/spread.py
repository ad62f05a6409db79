"""How sure the forecast is: the spread behind each item's due-date interval.

The contract's ``due_date_early`` / ``due_date_late`` are the 10th and 90th percentile of the
day an item falls due. A distance or wear limit falls due after ``x = amount / speed`` days,
where the speed is the vehicle's daily distance times the item's own rate. Each factor is an
estimate with an error of its own, and the errors multiply, so the forecast treats ``log x``
as normal with a variance that is the sum of the factors' relative (log) variances:

* **daily distance** (:class:`DistanceSpread`): how well today's rate is known (the span and
  age of the history, or only the vehicle's age, or only the default), how much the rate will
  drift over the coming ``x`` days (a random walk of the owner's habits), and how much one
  day's distance scatters about it (weekdays, holidays, seasons), which averages out over a
  long horizon. The scatter is measured on this vehicle's own history segments, shrunk toward
  a prior when there are few;
* **the item's rate**: a fall rate learned from history is known better the more km it was
  watched over; the usage model's climate factor at a first visit is a guess with a spread of
  its own; remaining km counted at face value add nothing here;
* **the limit itself**: the key's remaining km are the car's own projection (oil speeds up
  late in its life, brake pads use the car's wear model), and an availability trend has the
  rounding of whole percents, the residuals of its fit, and the error of extrapolating it.

Every figure is a setting of :class:`~agent.domain.forecast.settings.ForecastSettings`; the
defaults and how they were chosen are in docs/forecast.md ("The interval"). There is no fixed
margin anywhere: an item with a long, consistent history gets a narrow interval, a first
visit a wide one. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.domain.forecast.settings import ForecastSettings
from agent.domain.forecast.trends import HistoryView, TrendFit
from protocols.values import fast_init

__all__ = ["Z90", "DistanceSpread", "distance_spread", "trend_fit_var"]

#: The 90th percentile of the standard normal: ``x * exp(-+Z90 * sd)`` are the 10th and 90th
#: percentile of a log-normal ``x``.
Z90 = 1.2815515655446004

_DAYS_PER_YEAR = 365.25


@fast_init
@dataclass(frozen=True, slots=True)
class DistanceSpread:
    """Relative (log) variances of the vehicle's mean daily distance over a coming period."""

    estimate_var: float        # of today's rate as the forecast estimated it
    drift_var_per_day: float   # of the owner's level, a random walk
    day_var: float             # of one day's distance about the level

    def var_over(self, days: float) -> float:
        """Variance of the log of the mean daily distance over the next ``days`` days.

        The drift of a random walk, averaged over the period, has a third of the variance it
        reaches at the period's end; the daily scatter averages out as ``1 / days``."""
        span = max(days, 1.0)
        return self.estimate_var + self.drift_var_per_day * span / 3.0 + self.day_var / span


def distance_spread(view: HistoryView, basis: str, *, vehicle_age_days: int | None,
                    settings: ForecastSettings) -> DistanceSpread:
    """The spread of the daily distance the forecast uses, by its basis (history, vehicle age,
    default)."""
    drift = settings.km_per_day_drift_sd_per_year ** 2 / _DAYS_PER_YEAR
    prior_day_var = settings.km_per_day_day_sd ** 2
    fleet_var = settings.km_per_day_fleet_sd ** 2
    day_var = prior_day_var
    # The segments with days > 0, as sums (agent/domain/forecast/trends.py, _SPAN_SUMS).
    count, total_days, total_km, km_squares, _, weighted_days, weighted_middles, newest = view.spans
    if basis == "history" and count:
        mean = total_km / total_days
        if mean > 0 and count > 1:
            # d * (r / mean - 1)^2 estimates the daily variance, segment by segment (a segment
            # of d days at r km a day averages d days of scatter), shrunk toward the prior;
            # expanded: sum(km^2 / d) / mean^2 - 2 * sum(km) / mean + sum(d).
            observed = max(0.0, km_squares / mean ** 2 - 2.0 * total_km / mean + total_days)
            weight = settings.km_per_day_spread_prior_segments
            day_var = (weight * prior_day_var + observed) / (weight + count - 1)
        # How far the data lie behind the data date: the weighted age of the segments' middles.
        lag = (newest - view.ref_day) - weighted_middles / weighted_days if weighted_days > 0 else 0.0
        estimate = min(fleet_var, day_var / max(total_days, 1.0) + drift * max(lag, 0.0))
    elif basis == "vehicle_age" and vehicle_age_days:
        # The lifetime mean stands for today's level: the level has wandered since the build.
        estimate = min(fleet_var, drift * vehicle_age_days / 3.0 + prior_day_var / vehicle_age_days
                       + settings.km_per_day_age_sd ** 2)
    else:
        estimate = fleet_var
    return DistanceSpread(estimate, drift, day_var)


def trend_fit_var(fit: TrendFit | None, remaining_pct: float, drop_pct: float,
                  settings: ForecastSettings) -> float:
    """Relative variance of the days an availability trend takes to use ``remaining_pct``.

    ``fit`` is the history's trend (None: the trend since the last service, one point that
    lost ``drop_pct``). Rounding: each availability is a whole percent (variance 1/12 at each
    end); the fit: the scatter of the history segments' slopes, shrunk toward the prior
    ``wear_trend_sd`` as the daily distance's scatter is; extrapolation: a trend carried
    further than the fall it was seen over errs more (the prior grows with the square root of
    the ratio)."""
    drop = max(fit.drop_pct if fit is not None else drop_pct, 1.0)
    rounding = (2.0 / 12.0) / drop ** 2
    prior = settings.wear_trend_sd ** 2 * max(1.0, math.sqrt(max(remaining_pct, 0.0) / drop))
    if fit is None or fit.segments < 2:
        return rounding + prior
    weight = settings.km_per_day_spread_prior_segments
    extra = fit.segments - 1
    return rounding + (weight * prior + extra * fit.residual_var) / (weight + extra)
