"""Properties of the forecast over generated sessions and histories (Hypothesis).

* deterministic, and independent of the order the history is handed over in;
* more remaining distance never gives an earlier due date (for any item);
* a higher daily distance never gives a later one (for every item; one the key marks overdue by
  distance is due on its data date, or the day before the read date if that is earlier);
* an item the key marks overdue is always ``overdue``; ``overdue`` exactly when days_left < 0;
* the summary agrees with the items;
* the interval holds the due date and never reaches past the due month.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.domain.forecast import (
    ForecastSettings,
    ItemRates,
    PastItem,
    PastReading,
    forecast_item,
    forecast_session,
    last_day_of_month,
)
from protocols.cbs_types import CODE_TO_TYPE
from protocols.key_session import KeySession, ServiceHistory, ServiceItem, UsageData, VehicleData


def _examples(n: int) -> int:
    """``n`` times CBS_HYPOTHESIS_SCALE (as in tests/protocols) for longer local runs."""
    return max(1, int(n * float(os.environ.get("CBS_HYPOTHESIS_SCALE", "1"))))


# Generating a session with its history costs far more than forecasting it; 60 examples a
# property keep the file near 15 s. CBS_HYPOTHESIS_SCALE=20 runs a thorough pass.
PROPERTIES = settings(deadline=None, max_examples=_examples(60),
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VIN = "WBA8E5107FK123456"
RANK = {"ok": 0, "due_soon": 1, "overdue": 2}

codes = st.sampled_from(sorted(CODE_TO_TYPE)) | st.just(0x2A)
maybe = st.none().__or__
histories = st.builds(
    ServiceHistory,
    last_service_km=maybe(st.integers(0, 400_000)),
    last_service_year=st.integers(2015, 2028),
    last_service_month=maybe(st.integers(1, 12)),
    interval_km=maybe(st.integers(1, 1000).map(lambda n: n * 100)),
    interval_months=maybe(st.integers(1, 48)))
usages = st.builds(
    UsageData,
    ambient_avg_c=maybe(st.integers(-60, 120).map(lambda r: r / 2)),
    ambient_min_c=maybe(st.integers(-80, 80).map(lambda r: r / 2)),
    ambient_max_c=maybe(st.integers(-20, 170).map(lambda r: r / 2)),
    hot_share_pct=st.integers(0, 100), cold_share_pct=st.integers(0, 100),
    short_trip_pct=st.integers(0, 100), severe_duty_pct=st.integers(0, 100),
    avg_trip_km=st.integers(0, 4095).map(lambda r: r / 10))


@st.composite
def service_items(draw: st.DrawFn, index: int) -> ServiceItem:
    due = draw(maybe(st.tuples(st.integers(2023, 2031), st.integers(1, 12))))
    return ServiceItem(
        index=index, code=draw(codes),
        availability_pct=draw(maybe(st.integers(0, 250))),
        remaining_km=draw(maybe(st.integers(-30_000, 120_000))),
        due_year=due[0] if due else 2000, due_month=due[1] if due else None,
        service_count=draw(st.integers(0, 31)), history=draw(maybe(histories)))


@st.composite
def sessions(draw: st.DrawFn) -> KeySession:
    indices = draw(st.lists(st.integers(0, 15), min_size=1, max_size=6, unique=True))
    data_date = draw(st.dates(date(2024, 1, 1), date(2028, 12, 31)))
    build_year = draw(st.integers(2010, data_date.year))
    return KeySession(
        session_seq=1, key_id=7, key_slot=0, vin=VIN,
        vehicle=VehicleData(mileage_km=draw(st.integers(0, 400_000)), data_date=data_date,
                            fuel_level_pct=None, build_year=build_year,
                            build_month=draw(maybe(st.integers(1, 12)))),
        usage=draw(maybe(usages)),
        services=tuple(draw(service_items(i)) for i in sorted(indices)))


@st.composite
def read_times(draw: st.DrawFn, s: KeySession) -> datetime:
    day = s.vehicle.data_date + timedelta(days=draw(st.integers(0, 90)))
    return datetime.combine(day, time(draw(st.integers(0, 23)), draw(st.integers(0, 59))), UTC)


@st.composite
def earlier_readings(draw: st.DrawFn, s: KeySession, read_at: datetime) -> list[PastReading]:
    """Up to five earlier readouts of the same vehicle: mostly plausible, sometimes stale
    keys, rollbacks, services in between and changed availability."""
    out = []
    for n in range(draw(st.integers(0, 5))):
        back_days = draw(st.integers(0, 700))
        data_date = s.vehicle.data_date - timedelta(days=back_days)
        mileage = max(0, s.vehicle.mileage_km - draw(st.integers(-2_000, 40_000)))
        read = min(read_at, datetime.combine(data_date, time(12), UTC)
                   + timedelta(days=draw(st.integers(0, 400))))
        items = []
        for it in s.services:
            if draw(st.booleans()):
                continue
            rem = None if it.remaining_km is None else it.remaining_km + draw(st.integers(-3_000, 20_000))
            avail = it.availability_pct
            if avail is not None:
                avail = min(250, max(0, avail + draw(st.integers(-10, 40))))
            items.append(PastItem(it.index, it.code, rem, avail,
                                  it.service_count - draw(st.sampled_from((0, 0, 0, 1))),
                                  it.history.last_service_km if it.history else None))
        out.append(PastReading(f"r{n}", VIN, read, 7, data_date, mileage, tuple(items)))
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[KeySession, datetime, list[PastReading], ForecastSettings]:
    s = draw(sessions())
    read_at = draw(read_times(s))
    history = draw(earlier_readings(s, read_at))
    zone = draw(st.sampled_from(("UTC", "Europe/Berlin", "America/Los_Angeles", "Pacific/Auckland")))
    return s, read_at, history, ForecastSettings(timezone=zone)


def _dates(result) -> dict[int, date | None]:
    return {i: None if f is None else f.due_date for i, f in result.services.items()}


@PROPERTIES
@given(cases(), st.randoms(use_true_random=False))
def test_deterministic_and_independent_of_history_order(case, rnd) -> None:
    s, read_at, history, cfg = case
    first = forecast_session(s, read_at, history, cfg)
    shuffled = list(history)
    rnd.shuffle(shuffled)
    assert forecast_session(s, read_at, shuffled, cfg) == first
    assert forecast_session(s, read_at, tuple(history), cfg) == first


@PROPERTIES
@given(cases(), st.data())
def test_more_remaining_distance_never_gives_an_earlier_due_date(case, data) -> None:
    s, read_at, history, cfg = case
    with_km = [i for i, it in enumerate(s.services) if it.remaining_km is not None]
    if not with_km:
        return
    pos = data.draw(st.sampled_from(with_km))
    more = data.draw(st.integers(1, 50_000))
    items = list(s.services)
    items[pos] = replace(items[pos], remaining_km=items[pos].remaining_km + more)
    before = _dates(forecast_session(s, read_at, history, cfg))
    after = _dates(forecast_session(replace(s, services=tuple(items)), read_at, history, cfg))
    for index, due in before.items():
        assert (due is None) == (after[index] is None)
        if due is not None:
            assert after[index] >= due, (index, due, after[index])


@PROPERTIES
@given(sessions(), st.data(), st.floats(1.0, 300.0), st.floats(0.1, 300.0))
def test_higher_daily_distance_never_gives_a_later_due_date(s, data, low, extra) -> None:
    s = replace(s, vehicle=replace(s.vehicle, build_month=None))     # no age: the default applies
    read_at = data.draw(read_times(s))
    slow = forecast_session(s, read_at, [], ForecastSettings(default_km_per_day=low))
    fast = forecast_session(s, read_at, [], ForecastSettings(default_km_per_day=low + extra))
    assert slow.estimate.km_per_day <= fast.estimate.km_per_day
    for it in s.services:
        due, due_fast = slow.services[it.index], fast.services[it.index]
        if due is None:
            assert due_fast is None
        else:
            assert due_fast.due_date <= due.due_date
            if it.remaining_km is not None and it.remaining_km <= 0:
                assert due_fast.status == due.status == "overdue"


@settings(PROPERTIES, max_examples=_examples(300))
@given(service_items(0), st.dates(date(2024, 1, 1), date(2028, 12, 31)), st.integers(-30, 90),
       st.floats(0.0, 500.0), st.floats(0.0, 500.0), st.floats(0.3, 3.0),
       maybe(st.floats(1e-5, 1.0)), st.booleans())
def test_item_level_daily_distance_monotone(item, data_date, read_offset, kpd, extra, fall, wear, per_km) -> None:
    read_date = data_date + timedelta(days=read_offset)
    cfg = ForecastSettings()

    def due(km_per_day: float) -> date | None:
        rates = ItemRates(km_per_day=km_per_day, fall_per_km=fall,
                          wear_pct_per_km=wear if per_km else None,
                          wear_pct_per_day=None if per_km else wear)
        f = forecast_item(item, data_date=data_date, read_date=read_date, rates=rates, settings=cfg)
        return None if f is None else f.due_date

    slow, fast = due(kpd), due(kpd + extra)
    assert (slow is None) == (fast is None)
    if slow is None:
        return
    assert fast <= slow
    if item.remaining_km is not None and item.remaining_km <= 0:
        assert max(slow, fast) < read_date        # overdue either way


@PROPERTIES
@given(cases())
def test_status_rules(case) -> None:
    s, read_at, history, cfg = case
    result = forecast_session(s, read_at, history, cfg)
    for it in s.services:
        f = result.services[it.index]
        key_overdue = (it.remaining_km is not None and it.remaining_km <= 0) or it.availability_pct == 0
        if it.remaining_km is None and it.due_month is None and it.availability_pct is None:
            assert f is None
            continue
        assert f is not None
        assert f.km_left == it.remaining_km
        if key_overdue:
            assert f.status == "overdue"
        assert (f.status == "overdue") == (f.days_left < 0)
        if f.status == "due_soon":
            assert f.days_left <= cfg.horizon_days or f.km_left <= cfg.horizon_km
        if f.status == "ok":
            assert f.days_left > cfg.horizon_days
            assert f.km_left is None or f.km_left > cfg.horizon_km
    forecasts = [(it.index, f) for it in s.services if (f := result.services[it.index]) is not None]
    summary = result.summary
    if not forecasts:
        assert summary.next_due is None and summary.status == "ok" and not summary.express_eligible
        return
    assert RANK[summary.status] == max(RANK[f.status] for _, f in forecasts)
    assert summary.next_due.due_date == min(f.due_date for _, f in forecasts)
    assert result.estimate.climate_factor >= 1.0


@PROPERTIES
@given(cases())
def test_interval_rules(case) -> None:
    """The contract's interval: early <= due <= late; late never after the due month; both the
    due month when the calendar limit is the only one."""
    s, read_at, history, cfg = case
    result = forecast_session(s, read_at, history, cfg)
    for it in s.services:
        f = result.services[it.index]
        if f is None:
            continue
        assert f.due_date_early <= f.due_date <= f.due_date_late
        if it.due_month is not None:
            month_end = last_day_of_month(it.due_year, it.due_month)
            assert f.due_date_late <= month_end
            if it.remaining_km is None and (it.availability_pct is None or it.availability_pct > 100):
                assert f.due_date_early == f.due_date_late == month_end
