"""The forecast on hand-computed cases (contract "The forecast", docs/forecast.md)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest
from forecast_fixtures import (
    ACTIVE_CC,
    CONFIRMED_DTC,
    PENDING_DTC,
    STORED_CC,
    WORKED_USAGE,
    at,
    item,
    moved,
    past,
    session,
    worked_example,
)
from pydantic import ValidationError

from agent.domain.climate import ClimateModel, climate_factor, severe_share
from agent.domain.forecast import ForecastSettings, forecast_session, last_day_of_month
from agent.domain.models import Estimate, NextDue, ServiceForecast, Summary
from protocols.cbs_types import CbsType
from protocols.key_session import ServiceHistory, UsageData

DEFAULTS = ForecastSettings()
READ = at(date(2026, 11, 27), 9, 15)          # read date 2026-11-27 (UTC)
DATA = date(2026, 11, 25)                      # the sessions' default data date


def run(s, read_at=READ, history=(), settings=DEFAULTS):
    return forecast_session(s, read_at, list(history), settings)


# --- the worked example of the protocol --------------------------------------------------------
def test_worked_example_by_hand() -> None:
    result = run(worked_example())
    # Vehicle age: built 2022-03 (taken as the 15th) to 2026-11-25 = 1716 days; 48,371 km / 1716.
    # Usage model: short trips 0.35 * 4 km / 14.2 km = 0.0986 of distance, x1.11 for 11 % cold
    # = 0.1094; heat 0.5 * 0.08 = 0.04; cold 0.25 * 0.11 = 0.0275;
    # s = 1 - 0.8906 * 0.96 * 0.9725 = 0.1686 -> factor 1 + 0.1686 = 1.17.
    assert result.estimate == Estimate(km_per_day=28.2, km_per_day_basis="vehicle_age", climate_factor=1.17)
    # Oil: 1800 km / (28.2 * 1.17 = 32.994 km/day) = 54.56 days -> day 55 after 2026-11-25.
    # The interval (contract: due_date_early / due_date_late, docs/forecast.md "The interval"):
    # log-variance of the daily distance by vehicle age, drift d = 0.12^2 / 365.25 per day:
    # d * 1716 / 3 + 0.5^2 / 1716 + 0.15^2 = 0.0452; over the 54.56 days ahead
    # + d * 54.56 / 3 + 0.25 / 54.56 = 0.0498; oil's climate factor 0.1^2 and limit 0.06^2:
    # 0.0641, sd 0.2532, x exp(-+1.2816 * 0.2532) = / 1.3833 -> 39.44 and 75.47 days -> days
    # 40 and 76 after 2026-11-25.
    assert result.services[0] == ServiceForecast(status="due_soon", due_date=date(2027, 1, 19),
                                                 basis="distance", days_left=53, km_left=1800,
                                                 due_date_early=date(2027, 1, 4),
                                                 due_date_late=date(2027, 2, 9))
    # Brake fluid: time only, the last day of 2027-03.
    assert result.services[1] == ServiceForecast(status="ok", due_date=date(2027, 3, 31), basis="time",
                                                 days_left=124, km_left=None)
    # An active check-control message and a confirmed DTC rule the express lane out.
    assert result.summary == Summary(status="due_soon",
                                     next_due=NextDue(type="engine_oil", due_date=date(2027, 1, 19)),
                                     express_eligible=False)


def test_worked_example_without_faults_is_express() -> None:
    assert run(worked_example(check_controls=(), dtcs=())).summary.express_eligible is True


# --- month ends and leap years -------------------------------------------------------------------
@pytest.mark.parametrize(("year", "month", "last"), [
    (2028, 2, date(2028, 2, 29)),   # leap year
    (2027, 2, date(2027, 2, 28)),
    (2100, 2, date(2100, 2, 28)),   # divisible by 100, not by 400
    (2000, 2, date(2000, 2, 29)),   # divisible by 400
    (2027, 4, date(2027, 4, 30)),
    (2027, 12, date(2027, 12, 31)),
])
def test_last_day_of_month(year: int, month: int, last: date) -> None:
    assert last_day_of_month(year, month) == last


def test_due_month_february_of_a_leap_year() -> None:
    result = run(session(item(0, CbsType.BRAKE_FLUID, due=(2028, 2))))
    assert result.services[0] == ServiceForecast(status="ok", due_date=date(2028, 2, 29), basis="time",
                                                 days_left=(date(2028, 2, 29) - date(2026, 11, 27)).days,
                                                 km_left=None)


# --- overdue -----------------------------------------------------------------------------------
def test_negative_remaining_km_is_overdue_in_the_past() -> None:
    # Past the limit by the key: due on the data date (2026-11-25), the last day it is known
    # to have been overdue; when it crossed the limit is not known.
    f = run(session(item(0, remaining=-500)), ).services[0]
    # The interval: the data date is its late end; the early end projects the 500 km back at
    # the slow end of the daily distance (-17.7 days at 28.2 km/day, spread -> -25 days).
    assert f == ServiceForecast(status="overdue", due_date=date(2026, 11, 25), basis="distance",
                                days_left=-2, km_left=-500, due_date_early=date(2026, 10, 31),
                                due_date_late=date(2026, 11, 25))


def test_zero_remaining_on_the_read_date_is_due_the_day_before() -> None:
    s = session(item(0, remaining=0), data_date=date(2026, 11, 27))
    f = run(s).services[0]
    assert (f.status, f.due_date, f.days_left, f.basis) == ("overdue", date(2026, 11, 26), -1, "distance")


def test_zero_availability_is_overdue_from_the_data_date() -> None:
    f = run(session(item(0, CbsType.BRAKE_PADS_FRONT, availability=0, remaining=5000))).services[0]
    assert (f.status, f.due_date, f.basis, f.days_left, f.km_left) == ("overdue", DATA, "wear", -2, 5000)


def test_zero_availability_of_a_time_item_is_overdue() -> None:
    f = run(session(item(0, CbsType.BRAKE_FLUID, availability=0, due=(2027, 5)))).services[0]
    assert (f.status, f.basis, f.due_date) == ("overdue", "wear", DATA)


def test_past_due_month_is_overdue() -> None:
    f = run(session(item(0, CbsType.STATUTORY_INSPECTION, due=(2026, 10)))).services[0]
    assert f == ServiceForecast(status="overdue", due_date=date(2026, 10, 31), basis="time", days_left=-27,
                                km_left=None)


def test_stale_data_date_projects_into_the_past() -> None:
    # The key was last written 100 days before the read: 1000 km at 28.2 km/day ran out long ago.
    s = session(item(0, remaining=1000), data_date=date(2026, 8, 19), mileage=48_000)
    f = run(s).services[0]
    assert f.status == "overdue" and f.due_date < date(2026, 11, 27) and f.days_left < 0


# --- due soon: both horizons, inclusive ------------------------------------------------------------
def test_due_soon_by_km_horizon_is_inclusive() -> None:
    f = run(session(item(0, CbsType.VEHICLE_CHECK, remaining=2000))).services[0]
    assert (f.status, f.km_left) == ("due_soon", 2000)     # 71 days away, but 2,000 km
    g = run(session(item(0, CbsType.VEHICLE_CHECK, remaining=2001))).services[0]
    assert g.status == "ok"


def test_due_soon_by_day_horizon_is_inclusive() -> None:
    s = session(item(0, CbsType.BRAKE_FLUID, due=(2027, 3)), data_date=date(2027, 2, 20), mileage=52_000)
    on_edge = run(s, read_at=at(date(2027, 3, 1))).services[0]
    assert (on_edge.days_left, on_edge.status) == (30, "due_soon")
    outside = run(s, read_at=at(date(2027, 2, 28))).services[0]
    assert (outside.days_left, outside.status) == (31, "ok")


def test_custom_horizons() -> None:
    settings = ForecastSettings(horizon_days=200, horizon_km=100)
    f = run(session(item(0, CbsType.BRAKE_FLUID, due=(2027, 3))), settings=settings).services[0]
    assert f.status == "due_soon"


# --- not available ------------------------------------------------------------------------------
def test_item_without_distance_date_or_availability_has_no_forecast() -> None:
    result = run(session(item(0, CbsType.ENGINE_OIL), item(1, CbsType.BRAKE_FLUID, due=(2027, 5))))
    assert result.services[0] is None
    assert result.summary.next_due == NextDue(type="brake_fluid", due_date=date(2027, 5, 31))


def test_session_without_forecastable_items() -> None:
    result = run(session(item(0, CbsType.ENGINE_OIL), item(1, "unknown")))
    assert result.services == {0: None, 1: None}
    assert result.summary == Summary(status="ok", next_due=None, express_eligible=False)


def test_session_without_items() -> None:
    result = run(session())
    assert result.services == {}
    assert result.summary == Summary(status="ok", next_due=None, express_eligible=False)


def test_availability_only_item_without_trend_uses_the_nominal_life() -> None:
    # Serviced once, no history frame: no trend; 50 % of 730 days.
    f = run(session(item(0, CbsType.BATTERY, availability=50, count=1))).services[0]
    assert (f.basis, f.due_date) == ("wear", DATA + timedelta(days=365))


def test_availability_only_item_never_serviced_counts_from_the_build_date() -> None:
    # 50 % lost in the 1716 days since 2022-03-15: another 1716 days to 0 %.
    f = run(session(item(0, CbsType.BATTERY, availability=50, count=0))).services[0]
    assert (f.basis, f.due_date) == ("wear", DATA + timedelta(days=1716))


def test_unknown_type_with_remaining_km_counts_at_face_value() -> None:
    result = run(session(item(0, "unknown", remaining=2820), usage=WORKED_USAGE))
    assert result.services[0].due_date == DATA + timedelta(days=100)      # 2820 / 28.2, factor unused


# --- wear -------------------------------------------------------------------------------------
def test_brake_pads_wear_trend_from_the_last_service() -> None:
    # 60 % worn over 30,000 km since the pads were fitted at 20,000 km: 0.002 %/km.
    # 40 % left = 20,000 km at 29.1 km/day (50,000 km / 1716 days) = 687.3 -> 688 days,
    # before the key's 30,000 km at face value (1031 days).
    pads = item(0, CbsType.BRAKE_PADS_FRONT, availability=40, remaining=30_000,
                history=ServiceHistory(20_000, 2024, 5, None, None))
    result = run(session(pads, mileage=50_000, usage=WORKED_USAGE))
    assert result.estimate.km_per_day == 29.1
    assert result.services[0].basis == "wear"
    assert result.services[0].due_date == DATA + timedelta(days=688)
    assert result.item_rates[0].fall_per_km == 1.0           # pads: no climate factor


def test_wear_trend_from_history_beats_the_service_estimate() -> None:
    # Pads fell from 70 % to 60 % over the last 2,000 km: 0.005 %/km; 60 % -> 12,000 km.
    earlier = session(item(0, CbsType.BRAKE_PADS_FRONT, availability=70, remaining=50_000),
                      mileage=46_000, data_date=date(2026, 9, 26))
    now = session(item(0, CbsType.BRAKE_PADS_FRONT, availability=60, remaining=50_000), mileage=48_000)
    result = run(now, history=[past(earlier)])
    kpd = result.estimate.km_per_day                       # 2000 km / 60 days
    assert (kpd, result.estimate.km_per_day_basis) == (33.3, "history")
    assert result.services[0].basis == "wear"
    assert result.services[0].due_date == DATA + timedelta(days=361)   # 60 / (0.005 * 33.3) = 360.4


def test_time_only_items_ignore_their_availability() -> None:
    f = run(session(item(0, CbsType.BRAKE_FLUID, availability=3, due=(2027, 5), count=2,
                         history=ServiceHistory(30_000, 2025, 5, None, 24)))).services[0]
    assert (f.basis, f.due_date) == ("time", date(2027, 5, 31))


# --- ties ---------------------------------------------------------------------------------------
def test_limits_tie_goes_to_distance() -> None:
    # Default 40 km/day (no build month): 400 km -> 10 days -> 2027-03-31 = end of the due month.
    s = session(item(0, CbsType.VEHICLE_CHECK, remaining=400, due=(2027, 3)), build=(2020, None),
                data_date=date(2027, 3, 21))
    f = run(s, read_at=at(date(2027, 3, 22))).services[0]
    assert (f.due_date, f.basis) == (date(2027, 3, 31), "distance")


def test_next_due_tie_goes_to_the_lowest_index() -> None:
    s = session(item(1, CbsType.STATUTORY_INSPECTION, due=(2027, 5)),
                item(3, CbsType.BRAKE_FLUID, due=(2027, 5)),
                item(5, CbsType.VEHICLE_CHECK, due=(2027, 6)))
    assert run(s).summary.next_due == NextDue(type="statutory_inspection", due_date=date(2027, 5, 31))


def test_summary_status_is_the_worst() -> None:
    s = session(item(0, CbsType.VEHICLE_CHECK, due=(2028, 5)),
                item(1, CbsType.ENGINE_OIL, remaining=1500),
                item(2, CbsType.BRAKE_FLUID, due=(2026, 9)))
    result = run(s)
    assert [result.services[i].status for i in (0, 1, 2)] == ["ok", "due_soon", "overdue"]
    assert result.summary.status == "overdue"
    assert result.summary.next_due == NextDue(type="brake_fluid", due_date=date(2026, 9, 30))


# --- express ------------------------------------------------------------------------------------
OIL_SOON = item(0, CbsType.ENGINE_OIL, remaining=1500)
FILTER_SOON = item(1, CbsType.MICROFILTER, remaining=900)
PADS_OVERDUE = item(2, CbsType.BRAKE_PADS_FRONT, remaining=-100, availability=0)
FLUID_OK = item(3, CbsType.BRAKE_FLUID, due=(2028, 1))


@pytest.mark.parametrize(("items", "ccs", "dtcs", "eligible"), [
    ((OIL_SOON, FLUID_OK), (), (), True),
    ((OIL_SOON, FILTER_SOON, FLUID_OK), (), (), True),
    ((OIL_SOON, PADS_OVERDUE), (), (), False),           # a due item outside the express set
    ((FLUID_OK,), (), (), False),                         # nothing due
    ((OIL_SOON,), (ACTIVE_CC,), (), False),
    ((OIL_SOON,), (STORED_CC,), (), True),                # stored messages do not count
    ((OIL_SOON,), (), (CONFIRMED_DTC,), False),
    ((OIL_SOON,), (), (PENDING_DTC,), True),              # status 0x24: bit 3 clear
])
def test_express_rules(items, ccs, dtcs, eligible) -> None:
    assert run(session(*items, check_controls=ccs, dtcs=dtcs)).summary.express_eligible is eligible


def test_express_set_is_configurable() -> None:
    settings = ForecastSettings(express_types=["brake_pads_front", "engine_oil"])
    assert run(session(OIL_SOON, PADS_OVERDUE), settings=settings).summary.express_eligible is True


# --- read date and time zone -------------------------------------------------------------------
def test_read_date_is_taken_in_the_site_time_zone() -> None:
    late_evening = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)      # 00:30 in Berlin
    s = session(item(0, CbsType.BRAKE_FLUID, due=(2027, 3)))
    utc = run(s, read_at=late_evening).services[0]
    berlin = run(s, read_at=late_evening, settings=ForecastSettings(timezone="Europe/Berlin")).services[0]
    assert (utc.days_left, berlin.days_left) == (125, 124)


def test_naive_read_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(session(OIL_SOON), read_at=datetime(2026, 11, 27, 9, 0))


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        ForecastSettings(timezone="Mars/Olympus")


# --- daily distance ------------------------------------------------------------------------------
def test_default_without_build_month() -> None:
    est = run(session(OIL_SOON, build=(2022, None))).estimate
    assert (est.km_per_day, est.km_per_day_basis) == (40.0, "default")
    est = run(session(OIL_SOON, build=(2022, None)), settings=ForecastSettings(default_km_per_day=55)).estimate
    assert est.km_per_day == 55.0


def test_default_when_the_vehicle_is_younger_than_30_days() -> None:
    # Built 2026-11 (the 15th): 10 days before the data date.
    assert run(session(OIL_SOON, build=(2026, 11), mileage=300)).estimate.km_per_day_basis == "default"
    # Built 2026-10-15: 41 days.
    est = run(session(OIL_SOON, build=(2026, 10), mileage=410)).estimate
    assert (est.km_per_day, est.km_per_day_basis) == (10.0, "vehicle_age")


@pytest.mark.parametrize(("days", "km", "basis"), [
    (7, 100, "history"), (6, 600, "vehicle_age"), (7, 99, "vehicle_age")])
def test_history_needs_7_days_and_100_km(days: int, km: int, basis: str) -> None:
    now = session(OIL_SOON)
    earlier = moved(now, mileage=48_371 - km, data_date=DATA - timedelta(days=days))
    assert run(now, history=[past(earlier)]).estimate.km_per_day_basis == basis


def test_history_weighs_recent_segments_more() -> None:
    # 2026-07-28 40,000 km -> 2026-10-26 41,800 km (90 days, 20 km/day) -> 2026-11-25 43,300 km
    # (30 days, 50 km/day). Ages at the segments' midpoints: 75 and 15 days; half-life 120 days.
    now = session(OIL_SOON, mileage=43_300)
    h = [past(moved(now, mileage=40_000, data_date=date(2026, 7, 28))),
         past(moved(now, mileage=41_800, data_date=date(2026, 10, 26)))]
    w_a, w_b = 0.5 ** (75 / 120), 0.5 ** (15 / 120)
    expected = round((w_a * 1800 + w_b * 1500) / (w_a * 90 + w_b * 30), 1)
    est = run(now, history=h).estimate
    assert (est.km_per_day, est.km_per_day_basis) == (expected, "history")
    assert expected == 29.6                       # between 20 and 50, nearer the recent 50 than 3300/120


def test_history_of_other_vehicles_and_later_reads_is_ignored() -> None:
    now = session(OIL_SOON)
    other = past(moved(now, mileage=40_000, data_date=date(2026, 10, 1), vin="WBA00000000000001"))
    later = past(moved(now, mileage=40_000, data_date=date(2026, 10, 1)), day=date(2026, 12, 1))
    assert run(now, history=[other, later]).estimate.km_per_day_basis == "vehicle_age"


def test_stale_key_is_ignored_and_counted() -> None:
    now = session(OIL_SOON, mileage=44_800)
    a = past(moved(now, mileage=40_000, data_date=date(2026, 10, 1)))
    spare = past(moved(now, mileage=35_000, data_date=date(2026, 6, 1), key_id=99), day=date(2026, 10, 20))
    result = run(now, history=[a, spare])
    assert result.estimate.km_per_day == 87.3                # 4,800 km / 55 days, spare left out
    assert (result.anomalies.stale_keys, result.anomalies.odometer_rollbacks) == (1, 0)


def test_current_stale_key_falls_back_to_history_only() -> None:
    newer = past(moved(session(OIL_SOON), mileage=45_000, data_date=date(2026, 11, 20)))
    spare_now = session(OIL_SOON, mileage=44_000, data_date=date(2026, 11, 1))
    result = run(spare_now, history=[newer])
    assert result.anomalies.stale_keys == 1
    assert result.estimate.km_per_day_basis == "vehicle_age"


def test_odometer_rollback_restarts_the_series() -> None:
    now = session(OIL_SOON, mileage=11_650)
    h = [past(moved(now, mileage=40_000, data_date=date(2026, 9, 1))),
         past(moved(now, mileage=10_000, data_date=date(2026, 10, 1)))]
    result = run(now, history=h)
    assert result.anomalies.odometer_rollbacks == 1
    assert (result.estimate.km_per_day, result.estimate.km_per_day_basis) == (30.0, "history")


def test_implausible_jump_is_ignored() -> None:
    now = session(OIL_SOON, mileage=300_000)
    h = [past(moved(now, mileage=40_000, data_date=date(2026, 11, 1)))]
    result = run(now, history=h)
    assert result.anomalies.implausible_segments == 1
    assert result.estimate.km_per_day_basis == "vehicle_age"


# --- climate factor ---------------------------------------------------------------------------
def test_climate_factor_learned_from_the_oil_item() -> None:
    # Oil remaining fell 3,000 -> 1,500 km over 1,000 km driven: 1.5 km per km.
    hist = ServiceHistory(30_000, 2025, 11, 15_000, 24)
    now = session(item(0, remaining=1500, count=4, history=hist), item(1, CbsType.MICROFILTER, remaining=9000),
                  usage=WORKED_USAGE)
    earlier = session(item(0, remaining=3000, count=4, history=hist), item(1, CbsType.MICROFILTER, remaining=9900),
                      mileage=47_371, data_date=date(2026, 10, 26))
    result = run(now, history=[past(earlier)])
    assert result.estimate == Estimate(km_per_day=33.3, km_per_day_basis="history", climate_factor=1.5)
    # 1500 / (33.3 * 1.5) = 30.03 -> 31 days.
    assert result.services[0].due_date == DATA + timedelta(days=31)
    # The microfilter learned its own 0.9 km per km: 9000 / (33.3 * 0.9) = 300.3 -> 301 days.
    assert result.item_rates[1].fall_per_km == pytest.approx(0.9)
    assert result.services[1].due_date == DATA + timedelta(days=301)


def test_no_fall_rate_across_a_service() -> None:
    now = session(item(0, remaining=14_000, count=5), usage=None)
    earlier = session(item(0, remaining=500, count=4), mileage=47_371, data_date=date(2026, 10, 26))
    result = run(now, history=[past(earlier)])
    assert result.estimate.climate_factor == 1.0
    assert result.item_rates[0].fall_per_km == 1.0


def test_learned_factor_is_clamped_to_at_least_one() -> None:
    # The oil fell slower than driven (0.5 km per km): the item keeps 0.5, the published factor 1.0.
    now = session(item(0, remaining=2500, count=4))
    earlier = session(item(0, remaining=3000, count=4), mileage=47_371, data_date=date(2026, 10, 26))
    result = run(now, history=[past(earlier)])
    assert result.estimate.climate_factor == 1.0
    assert result.item_rates[0].fall_per_km == 0.5


def test_usage_model_anchors() -> None:
    mild = UsageData(15.0, 5.0, 25.0, 0, 0, 0, 0, 30.0)
    assert climate_factor(mild) == 1.0
    assert climate_factor(None) == 1.0
    severe = UsageData(15.0, 5.0, 25.0, 0, 0, 0, 100, 30.0)
    assert climate_factor(severe) == 2.0                # severe-service schedules: half the interval
    half = UsageData(15.0, 5.0, 25.0, 0, 0, 0, 50, 30.0)
    assert climate_factor(half) == 1.5
    # All trips short (8 km, mean 4 km) and avg trip 4 km: all distance severe.
    shorts = UsageData(15.0, 5.0, 25.0, 0, 0, 100, 0, 4.0)
    assert severe_share(shorts) == 1.0
    assert climate_factor(UsageData(35.0, 20.0, 45.0, 100, 0, 0, 0, 30.0)) == 1.5   # heat: half severe
    assert climate_factor(severe, ClimateModel(max_factor=1.6)) == 1.6


def test_results_are_deterministic() -> None:
    s = worked_example()
    h = [past(moved(s, mileage=47_000, data_date=date(2026, 10, 1)))]
    assert run(s, history=h) == run(s, history=list(h))


# --- the interval (due_date_early / due_date_late) ---------------------------------------------
def _width(f: ServiceForecast) -> int:
    return (f.due_date_late - f.due_date_early).days


def _oil(remaining: int) -> object:
    return item(0, CbsType.ENGINE_OIL, availability=60, remaining=remaining, due=(2028, 6), count=2,
                history=ServiceHistory(30_000, 2025, 11, 15_000, 24))


def _steady_history(now, *, visits: int, km_per_day: float, scatter: float = 0.0):
    """``visits`` earlier readouts, 60 days apart, driven at ``km_per_day`` (+- ``scatter``
    alternately), the oil's remaining km falling one for one."""
    out, mileage, remaining = [], now.vehicle.mileage_km, now.services[0].remaining_km
    day = now.vehicle.data_date
    for n in range(visits):
        rate = km_per_day * (1 + (scatter if n % 2 else -scatter))
        mileage -= round(rate * 60)
        remaining += round(rate * 60)
        day -= timedelta(days=60)
        out.append(past(moved(now, mileage=mileage, data_date=day,
                              services=(_oil(remaining),))))
    return out


def test_interval_holds_the_due_date_and_a_sure_calendar_limit_is_exact() -> None:
    result = run(worked_example())
    oil, fluid = result.services[0], result.services[1]
    assert oil.due_date_early < oil.due_date < oil.due_date_late
    assert fluid.due_date_early == fluid.due_date == fluid.due_date_late == date(2027, 3, 31)


def test_interval_late_end_never_passes_the_due_month() -> None:
    # 9,000 km at 28 km/day is about 290 days; the due month 2027-03 comes first, but the early
    # end of the distance limit may come before it.
    s = session(item(0, CbsType.ENGINE_OIL, remaining=9_000, due=(2027, 3), count=1))
    f = run(s).services[0]
    assert f.basis == "time" and f.due_date_late == f.due_date == date(2027, 3, 31)
    assert f.due_date_early <= f.due_date


def test_interval_narrows_as_the_history_grows() -> None:
    now = session(_oil(9_000), mileage=60_000)
    first = run(now).services[0]
    widths = [_width(run(now, history=_steady_history(now, visits=n, km_per_day=30.0)).services[0])
              for n in (1, 3, 6)]
    # A first visit knows only the vehicle's age; one earlier visit gives its own daily distance
    # and oil rate; more visits show how steady it is. (Much older readouts do not narrow it
    # further: today's pace may have drifted from them.)
    assert _width(first) > widths[0] > widths[1] > 0 and widths[2] < widths[0]


def test_interval_widens_with_an_erratic_daily_distance() -> None:
    now = session(_oil(9_000), mileage=60_000)
    steady = run(now, history=_steady_history(now, visits=6, km_per_day=30.0)).services[0]
    erratic = run(now, history=_steady_history(now, visits=6, km_per_day=30.0, scatter=0.6)).services[0]
    assert _width(erratic) > _width(steady)


def test_interval_widens_with_the_lead_time() -> None:
    near = run(session(_oil(3_000), mileage=60_000)).services[0]
    far = run(session(_oil(12_000), mileage=60_000)).services[0]
    assert _width(far) > _width(near)


def test_interval_of_a_brake_pad_spans_both_readings_of_its_thickness() -> None:
    # Remaining km and the availability trend since the last service read the same thickness:
    # the earlier sets the due date, the later still bounds the late end.
    pads = item(0, CbsType.BRAKE_PADS_FRONT, availability=50, remaining=10_000, count=1,
                history=ServiceHistory(28_371, 2024, 6, None, None))
    f = run(session(pads)).services[0]
    rates = run(session(pads)).item_rates[0]
    wear_days = 50 / (rates.wear_pct_per_km * rates.km_per_day)
    distance_days = 10_000 / rates.km_per_day
    assert distance_days < wear_days
    assert f.basis == "distance" and f.due_date_late > DATA + timedelta(days=math.ceil(wear_days))


def test_settings_without_spread_give_a_point_interval() -> None:
    flat = ForecastSettings(km_per_day_day_sd=0, km_per_day_drift_sd_per_year=0, km_per_day_age_sd=0,
                            km_per_day_fleet_sd=0, climate_factor_sd=0, severity_limit_sd=0)
    f = run(session(_oil(9_000)), settings=flat).services[0]
    assert f.due_date_early == f.due_date == f.due_date_late
