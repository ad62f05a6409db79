"""The history's trends kept as sums (agent/domain/forecast/trends.py, HistorySummary) against
the sums they stand for, computed here segment by segment with each segment's own recency
weight, 2^(-(newest data date - its middle day) / half-life): the factorised weights, the
moves of the reference day (a half-life of a day over years of visits) and the view's scale
give the same daily distance, fall rate and availability trend. Also: a summary made with
another half-life is not used."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.domain.forecast import ForecastSettings, PastItem, PastReading, extend, summarize_history
from agent.domain.forecast.trends import (
    availability_trend_fit,
    build_view,
    history_km_per_day,
    item_fall_rates,
    view_of,
)

VIN = "WBA00000000000001"
KEY = (1, 1)
START = date(2015, 3, 1)


def reading(n: int, day: date, km: int, remaining_km: int, availability: int) -> PastReading:
    return PastReading(readout_id=f"r{n}", vin=VIN,
                       read_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC) + timedelta(seconds=n),
                       key_id=1, data_date=day, mileage_km=km,
                       items=(PastItem(1, 1, remaining_km, availability, 3),))


# One unbroken series (no anomaly: at most max_plausible_km_per_day): (days after the one
# before, km a day, remaining km lost, points lost).
steps = st.lists(st.tuples(st.integers(1, 400), st.integers(0, 1_400), st.integers(0, 3_000),
                           st.integers(0, 5)), min_size=2, max_size=30)


def series(gaps: list[tuple[int, int, int, int]]) -> list[PastReading]:
    day, km, remaining, availability = START, 10_000, 1_000_000, 100
    out = [reading(0, day, km, remaining, availability)]
    for n, (days, per_day, lost, points) in enumerate(gaps, start=1):
        day, km = day + timedelta(days=days), km + days * per_day
        remaining, availability = remaining - lost, max(0, availability - points)
        out.append(reading(n, day, km, remaining, availability))
    return out


def direct(readings: list[PastReading], half_life: float) -> dict[str, float]:
    """The sums segment by segment, each with its own weight."""
    newest = readings[-1].data_date.toordinal()
    sums = dict.fromkeys(("km", "days", "fall", "driven", "step", "step_days"), 0.0)
    for a, b in zip(readings, readings[1:], strict=False):
        start, days = a.data_date.toordinal(), (b.data_date - a.data_date).days
        km = b.mileage_km - a.mileage_km
        weight = 0.5 ** (((newest - start) - days / 2.0) / half_life)
        sums["km"] += weight * km
        sums["days"] += weight * days
        if km > 0:
            sums["fall"] += weight * (a.items[0].remaining_km - b.items[0].remaining_km)  # type: ignore[operator]
            sums["driven"] += weight * km
        sums["step"] += weight * (a.items[0].availability_pct - b.items[0].availability_pct)  # type: ignore[operator]
        sums["step_days"] += weight * days
    return sums


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-250)


@settings(max_examples=300, deadline=None)
@given(steps, st.sampled_from([0.5, 3.0, 30.0, 120.0, 2_000.0]))
def test_the_sums_give_what_each_segments_own_weight_gives(
        gaps: list[tuple[int, int, int, int]], half_life: float) -> None:
    readings = series(gaps)
    forecast = ForecastSettings(history_half_life_days=half_life, min_history_days=1,
                                min_history_km=1, min_ratio_km=1, min_wear_days=1,
                                min_wear_drop_pct=1)
    view = build_view(readings[:-1], readings[-1], forecast)
    want = direct(readings, half_life)
    observed = history_km_per_day(view, forecast)
    if readings[-1].mileage_km == readings[0].mileage_km:
        assert observed is None  # under min_history_km
    else:
        assert observed is not None
        assert close(observed[0], want["km"]) and close(observed[1], want["days"])
    rates = item_fall_rates(view, [KEY], forecast)
    if want["driven"] > 0 and KEY in rates and want["fall"] > 0:
        assert math.isclose(rates[KEY][0], want["fall"] / want["driven"], rel_tol=1e-9)
    fit = availability_trend_fit(view, KEY, per_km=False, settings=forecast)
    if fit is not None and want["step"] > 0:
        assert math.isclose(fit.rate, want["step"] / want["step_days"], rel_tol=1e-9)


@settings(max_examples=100, deadline=None)
@given(steps)
def test_a_summary_extended_one_readout_at_a_time_is_the_one_made_at_once(
        gaps: list[tuple[int, int, int, int]]) -> None:
    forecast = ForecastSettings(history_half_life_days=1.0)  # the reference day moves often
    readings = series(gaps)
    summary = summarize_history(readings[:1], VIN, forecast)
    for n in range(1, len(readings)):
        extended = extend(summary, readings[n], forecast)
        assert extended is not None
        summary = extended[0]
        assert summary == summarize_history(readings[:n + 1], VIN, forecast)


def test_a_summary_made_with_another_half_life_is_not_used() -> None:
    readings = series([(100, 50, 500, 2), (100, 50, 500, 2)])
    made = summarize_history(readings[:-1], VIN, ForecastSettings(history_half_life_days=120.0))
    other = ForecastSettings(history_half_life_days=60.0)
    assert not made.stands_for(other)
    assert extend(made, readings[-1], other) is None  # the history summarises its readings again
    with pytest.raises(ValueError, match="half_life"):
        view_of(made, readings[-1], other)
