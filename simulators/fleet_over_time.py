"""A fleet of vehicles over the years, visiting one workshop: key readouts plus the truth.

What it is for: measuring the service forecast (bench/forecast_accuracy.py). Each vehicle
has hidden properties the forecast never sees (its daily-distance habits and their drift,
its per-item wear rates, its climate) and produces, at realistic workshop visits, the
:class:`~protocols.key_session.KeySession` its key would hold, together with the day each item
truly falls due when nobody services it (``FleetReadout.true_due``).

The world, in short (docs/forecast.md, "The simulated fleet", has the figures):

* Daily distance: an owner's base rate (log-normal, median 35 km/day) that drifts (a slow
  random walk plus rare life changes: new job, new owner), a weekly pattern (commuter,
  leisure, business), public holidays, a yearly holiday (away by car or parked), a seasonal
  swing, day-to-day noise and days without driving.
* Climate by region (nordic, central, mediterranean, desert): daily temperature with seasonal
  swing and persistent noise; cold days (< 0 °C) and hot days (max > 30 °C); dust.
* The key's CBS items run down at hidden per-km rates: engine oil with the day's severity
  (short trips, cold, heat, towing/dust) and a per-car fuel factor, falling faster below 50 %
  (BMW's CBS4 oil forecast does); microfilter with dust; brake pads with the car's city share
  and driving style, their remaining km being the car's own projection (thickness left at the
  wear pace seen since the pads were fitted); brake fluid and the statutory inspection by
  time only. Availability is the share of nominal life (pad thickness) left.
* Visits: when the car's display asks for service (remaining <= 2,000 km, due within a
  month, availability <= 5 %) the owner comes after a personal delay; also seasonal tyre
  changes and random repairs. At a visit the workshop reads the key at reception, services
  what is due or nearly due, and sometimes reads the key again at delivery. Now and then the
  customer hands over a spare key whose data is months old, and a few cars get a replaced
  instrument cluster (the odometer jumps back).

Everything is drawn from ``random.Random`` seeded per vehicle, so a fleet is reproducible and
vehicles can be simulated independently (and in parallel). Nothing here imports agent/.
"""

from __future__ import annotations

import argparse
import calendar
import json
import math
import random
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

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
from protocols.key_session_json import session_to_dict

__all__ = ["FleetConfig", "FleetReadout", "Region", "VehicleProfile", "add_fleet_subcommand",
           "simulate_fleet", "simulate_vehicle"]

_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_EXTRA_DAYS = 7  # driving simulated beyond the tail so bisects never run off the end


# --- the world ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Region:
    name: str
    share: float             # of the fleet
    temp_mean_c: float       # yearly mean of the daily mean temperature
    temp_swing_c: float      # half the summer-winter difference
    dust: float              # share of distance on dusty roads
    winter_tyres: float      # share of owners who change tyres twice a year


REGIONS: tuple[Region, ...] = (
    Region("nordic", 0.20, 4.0, 10.0, 0.00, 0.85),
    Region("central", 0.45, 10.0, 9.0, 0.02, 0.60),
    Region("mediterranean", 0.25, 17.0, 7.5, 0.05, 0.05),
    Region("desert", 0.10, 24.0, 9.0, 0.25, 0.00),
)

#: Fixed-date public holidays (month, day): fewer km on these days.
_HOLIDAYS = frozenset({(1, 1), (1, 6), (5, 1), (8, 15), (10, 3), (11, 1), (12, 24), (12, 25),
                       (12, 26), (12, 31)})

_WEEKLY = {  # Monday..Sunday, mean 1
    "commuter": (1.18, 1.18, 1.18, 1.18, 1.18, 0.62, 0.48),
    "leisure": (0.85, 0.85, 0.85, 0.85, 0.95, 1.40, 1.25),
    "business": (1.30, 1.30, 1.30, 1.30, 1.20, 0.35, 0.25),
}


@dataclass(frozen=True, slots=True)
class ItemSpec:
    type: CbsType
    rate: str                     # which hidden wear series runs it down ("time": none)
    interval_months: int | None
    first_months: int | None      # first interval after the build (factory fill)
    availability: Literal["distance", "time", "none"]


_ITEMS: tuple[ItemSpec, ...] = (
    ItemSpec(CbsType.ENGINE_OIL, "oil", 24, 24, "distance"),
    ItemSpec(CbsType.BRAKE_PADS_FRONT, "pads_front", None, None, "distance"),
    ItemSpec(CbsType.BRAKE_PADS_REAR, "pads_rear", None, None, "distance"),
    ItemSpec(CbsType.BRAKE_FLUID, "time", 24, 36, "time"),
    ItemSpec(CbsType.MICROFILTER, "micro", 24, 24, "distance"),
    ItemSpec(CbsType.VEHICLE_CHECK, "flat", 24, 24, "distance"),
    ItemSpec(CbsType.STATUTORY_INSPECTION, "time", 24, 36, "none"),
    ItemSpec(CbsType.SPARK_PLUGS, "spark", 48, 48, "distance"),
)
_RATES = ("oil", "pads_front", "pads_rear", "micro", "spark", "flat")


@dataclass(frozen=True, slots=True)
class FleetConfig:
    vehicles: int = 1000
    seed: int = 1
    start: date = date(2024, 1, 1)        # first day the site reads keys
    end: date = date(2027, 12, 31)        # last day the site reads keys
    oldest_build: date = date(2016, 1, 1)
    newest_build: date = date(2027, 6, 30)
    tail_days: int = 6 * 365              # driving simulated after ``end`` to know due days
    site_timezone: str = "Europe/Berlin"
    spare_key_share: float = 0.04         # reception reads that get a stale spare key
    delivery_read_share: float = 0.35     # service visits read again after the service
    cluster_swap_share: float = 0.01      # vehicles whose odometer jumps back once
    repair_visits_per_year: float = 0.3
    oil_late_life_speedup: float = 0.15   # oil CBS falls this much faster below 50 %


@dataclass(frozen=True, slots=True)
class VehicleProfile:
    """The hidden truth about one vehicle."""

    index: int
    vin: str
    region: Region
    build: date
    petrol: bool
    pattern: str
    base_km_per_day: float
    short_trip_share: float          # of trips shorter than 8 km
    avg_trip_km: float
    severe_share: float              # of distance towing / mountains (dust is the region's)
    oil_fuel_factor: float           # per-car oil consumption of life per km
    brake_style: float               # per-car brake wear multiplier
    city_share: float
    oil_interval_km: int
    pads_front_km: int
    pads_rear_km: int
    punctuality: str
    winter_tyres: bool


@dataclass(frozen=True, slots=True)
class FleetReadout:
    """One key read at the workshop and, per item index, the day the item truly falls due
    without service (None: not within the simulated tail)."""

    vehicle: int
    readout_id: str
    read_at: datetime
    session: KeySession
    true_due: dict[int, date | None]
    visit: Literal["service", "tyres", "repair"]
    moment: Literal["reception", "delivery"]
    spare_key: bool
    #: The day the vehicle is next read at the site's reception (None: not before the site's
    #: last day): the truth behind "the customer's likely next visit".
    next_visit: date | None = None


# --- helpers --------------------------------------------------------------------------------
def _add_months(day: date, months: int) -> tuple[int, int]:
    total = day.year * 12 + day.month - 1 + months
    return total // 12, total % 12 + 1


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _vin(rng: random.Random) -> str:
    return "WBA" + "".join(rng.choice(_VIN_CHARS) for _ in range(14))


def _round_half(value: float) -> float:
    return round(value * 2) / 2


# --- per-vehicle simulation -------------------------------------------------------------------
def make_profile(index: int, config: FleetConfig) -> VehicleProfile:
    rng = random.Random(f"profile/{config.seed}/{index}")
    region = rng.choices(REGIONS, weights=[r.share for r in REGIONS])[0]
    span = (config.newest_build - config.oldest_build).days
    build = config.oldest_build + timedelta(days=rng.randrange(span))
    pattern = rng.choices(("commuter", "leisure", "business"), weights=(0.5, 0.25, 0.25))[0]
    base = min(250.0, max(4.0, _lognormal(rng, 35.0 if pattern != "business" else 60.0, 0.55)))
    short = {"commuter": 0.30, "leisure": 0.45, "business": 0.15}[pattern]
    short = min(0.95, max(0.0, rng.gauss(short, 0.12)))
    long_trip = _lognormal(rng, 45.0 if pattern == "business" else 22.0, 0.3)
    avg_trip = short * 4.5 + (1 - short) * long_trip
    severe = rng.uniform(0.05, 0.4) if rng.random() < 0.15 else 0.0
    city = min(0.95, max(0.05, short + rng.gauss(0.1, 0.12)))
    return VehicleProfile(
        index=index, vin=_vin(rng), region=region, build=build, petrol=rng.random() < 0.7,
        pattern=pattern, base_km_per_day=base, short_trip_share=short, avg_trip_km=avg_trip,
        severe_share=severe, oil_fuel_factor=_lognormal(rng, 1.0, 0.08),
        brake_style=_lognormal(rng, 1.0, 0.25), city_share=city,
        oil_interval_km=rng.randrange(15_000, 30_001, 1000),
        pads_front_km=rng.randrange(40_000, 60_001, 1000),
        pads_rear_km=rng.randrange(60_000, 90_001, 1000),
        punctuality=rng.choices(("prompt", "relaxed", "late"), weights=(0.5, 0.35, 0.15))[0],
        winter_tyres=rng.random() < region.winter_tyres)


@dataclass(slots=True)
class _Drive:
    """Day-by-day driving of one vehicle, as cumulative series indexed by day - build."""

    first: date
    odo: array[float] = field(default_factory=lambda: array("d"))   # km at the end of the day
    wear: dict[str, array[float]] = field(default_factory=dict)     # cumulative per-km wear
    temp: array[float] = field(default_factory=lambda: array("d"))
    cold: array[int] = field(default_factory=lambda: array("b"))
    hot: array[int] = field(default_factory=lambda: array("b"))

    def day(self, d: date) -> int:
        return (d - self.first).days


_TWO_PI = 2 * math.pi
#: Seasonal shapes by day of the year (1-366): coldest around 20 January, most driving in May.
_WINTER = [0.0] + [-math.cos(_TWO_PI * (doy - 20) / 365.25) for doy in range(1, 367)]
_SEASON_KM = [1.0] + [1.0 + 0.1 * math.sin(_TWO_PI * (doy - 110) / 365.25) for doy in range(1, 367)]


def _simulate_drive(p: VehicleProfile, config: FleetConfig, last: date) -> _Drive:
    """Day by day from the build to ``last``. The hot loop works on ordinals and locals: a
    fleet of 1,000 vehicles is about four million vehicle-days."""
    rng = random.Random(f"drive/{config.seed}/{p.index}")
    gauss, uniform01 = rng.gauss, rng.random
    exp = math.exp
    drive = _Drive(first=p.build)
    odo_s: list[float] = []
    wear_s: dict[str, list[float]] = {name: [] for name in _RATES}
    temp_s: list[float] = []
    cold_s: list[int] = []
    hot_s: list[int] = []
    oil_s, pf_s, pr_s, micro_s, spark_s = (wear_s[n] for n in ("oil", "pads_front", "pads_rear", "micro", "spark"))
    odo = oil = pads_f = pads_r = micro = spark = 0.0
    level = 1.0                      # drift of the base rate (log random walk)
    noise_c = 0.0                    # persistent weather anomaly
    weekly = _WEEKLY[p.pattern]
    t_mean, t_swing = p.region.temp_mean_c, p.region.temp_swing_c
    base = p.base_km_per_day
    short_dist = min(1.0, p.short_trip_share * 4.5 / p.avg_trip_km)
    mild = 1.0 - p.severe_share
    oil_k = p.oil_fuel_factor
    pf_k = p.brake_style * (0.55 + 1.3 * p.city_share)
    pr_k = p.brake_style * (0.65 + 0.9 * p.city_share)
    micro_k = 1.0 + 2.0 * p.region.dust
    year = p.build.year
    year_start = date(year, 1, 1).toordinal()
    next_year = date(year + 1, 1, 1).toordinal()
    holidays: set[int] = set()
    trip: tuple[int, bool] = (0, False)

    def new_year(y: int) -> tuple[set[int], tuple[int, bool]]:
        first = date(y, 1, 1).toordinal()
        days = {date(y, m, d).toordinal() - first + 1 for m, d in _HOLIDAYS}
        return days, (rng.randrange(170, 230), uniform01() < 0.6)

    holidays, trip = new_year(year)
    for ordinal in range(p.build.toordinal(), last.toordinal() + 1):
        if ordinal >= next_year:
            year += 1
            year_start, next_year = next_year, date(year + 1, 1, 1).toordinal()
            holidays, trip = new_year(year)
        doy = ordinal - year_start + 1
        if uniform01() < 1 / 30:
            level *= exp(gauss(0.0, 0.06))
            if uniform01() < 30 / 1500:                      # new job, new owner, ...
                level *= exp(gauss(0.0, 0.45))
            level = min(3.0, max(0.3, level))
        noise_c = 0.75 * noise_c + gauss(0.0, 2.0)
        temp = t_mean + t_swing * _WINTER[doy] + noise_c
        km = base * level * weekly[(ordinal - 1) % 7] * _SEASON_KM[doy]
        if doy in holidays:
            km *= 0.6
        start, away = trip
        if start <= doy < start + 16:
            km *= (6.0 if doy in (start, start + 15) else 0.5) if away else 0.1
        if uniform01() < 0.08:
            km = 0.0
        else:
            km = float(round(km * exp(gauss(0.0, 0.45) - 0.1)))
        cold = temp < 0.0
        hot = temp > 24.0                                    # daily maximum above 30 °C
        short_today = short_dist * 1.6 if cold else short_dist
        severity = 1.0 - mild * (1.0 - min(1.0, short_today)) * (0.6 if hot else 1.0) * (0.8 if cold else 1.0)
        odo += km
        oil += km * oil_k * (1.0 + 0.9 * severity)
        pads_f += km * pf_k * (1.1 if hot else 1.0)
        pads_r += km * pr_k
        micro += km * (micro_k + 0.3 * severity)
        spark += km * (1.0 + 0.3 * severity)
        odo_s.append(odo)
        oil_s.append(oil)
        pf_s.append(pads_f)
        pr_s.append(pads_r)
        micro_s.append(micro)
        spark_s.append(spark)
        temp_s.append(temp)
        cold_s.append(cold)
        hot_s.append(hot)
    drive.odo = array("d", odo_s)
    drive.wear = {name: array("d", series) for name, series in wear_s.items() if name != "flat"}
    drive.wear["flat"] = drive.odo
    drive.temp = array("d", temp_s)
    drive.cold = array("b", cold_s)
    drive.hot = array("b", hot_s)
    return drive


@dataclass(slots=True)
class _ItemState:
    """One item since its last service (or since the build)."""

    spec: ItemSpec
    interval_km: int | None
    base_day: int           # drive index the item started from (service day)
    base_wear: float        # cumulative wear at the service day
    service_km: int | None  # odometer (as the key shows it) at the last service; None = never
    service_month: tuple[int, int]
    due: tuple[int, int] | None
    count: int


def _life_left(state: _ItemState, drive: _Drive, idx: int, speedup: float) -> float | None:
    """Nominal km of life left at the end of drive day ``idx`` (negative when overdue): what a
    fluid's or filter's CBS shows as remaining km, and the pad thickness in km of nominal wear."""
    if state.interval_km is None:
        return None
    used: float = drive.wear[state.spec.rate][idx] - state.base_wear
    half = state.interval_km / 2
    if state.spec.rate == "oil" and used > half:
        return half - (used - half) * (1 + speedup)
    return state.interval_km - used


def _remaining(state: _ItemState, drive: _Drive, idx: int, speedup: float) -> float | None:
    """The remaining km the car shows at the end of drive day ``idx``.

    Fluids and filters count nominal km that severe use consumes faster (BMW's oil CBS
    follows fuel burned). Brake pads show the thickness left divided by the wear rate the
    car has seen since the pads were fitted (its wear model), i.e. km at the current pace.
    """
    left = _life_left(state, drive, idx, speedup)
    if left is None or not state.spec.rate.startswith("pads"):
        return left
    driven = drive.odo[idx] - drive.odo[state.base_day]
    used = drive.wear[state.spec.rate][idx] - state.base_wear
    pace = used / driven if driven >= 1000 else 1.0
    return left / pace if pace > 0 else left


def _distance_due(state: _ItemState, drive: _Drive, speedup: float) -> int | None:
    """Drive index of the first day the item's remaining km reach 0."""
    if state.interval_km is None:
        return None
    need = float(state.interval_km)
    if state.spec.rate == "oil":
        half = state.interval_km / 2
        need = half + half / (1 + speedup)
    series = drive.wear[state.spec.rate]
    idx = bisect_left(series, state.base_wear + need - 1e-9, lo=state.base_day)
    return idx if idx < len(series) - _EXTRA_DAYS else None


def _true_due(state: _ItemState, drive: _Drive, speedup: float) -> date | None:
    candidates = []
    idx = _distance_due(state, drive, speedup)
    if idx is not None:
        candidates.append(drive.first + timedelta(days=idx))
    elif state.interval_km is not None:
        # Not within the tail by distance: only a due month earlier than the tail's end counts.
        tail_end = drive.first + timedelta(days=len(drive.odo) - 1 - _EXTRA_DAYS)
        if state.due is None or _month_end(*state.due) > tail_end:
            return None
    if state.due is not None:
        candidates.append(_month_end(*state.due))
    return min(candidates) if candidates else None


class _Vehicle:
    """The service state machine of one vehicle over its drive."""

    def __init__(self, p: VehicleProfile, config: FleetConfig) -> None:
        self.p = p
        self.config = config
        self.rng = random.Random(f"visits/{config.seed}/{p.index}")
        self.drive = _simulate_drive(p, config, config.end + timedelta(days=config.tail_days + _EXTRA_DAYS))
        self.items = [spec for spec in _ITEMS if spec.type is not CbsType.SPARK_PLUGS or p.petrol]
        self.states = [self._new_state(spec) for spec in self.items]
        self.log: list[list[_ItemState]] = [[s] for s in self.states]   # per item, by service
        self.swap_day: int | None = None
        self.swap_offset = 0
        if self.rng.random() < config.cluster_swap_share:
            self.swap_day = self.rng.randrange(len(self.drive.odo) // 4, max(len(self.drive.odo) // 2, 2))
        self.keys = (self.rng.getrandbits(32), self.rng.getrandbits(32))
        self.reads = 0

    def _interval_km(self, spec: ItemSpec) -> int | None:
        return {"oil": self.p.oil_interval_km, "pads_front": self.p.pads_front_km,
                "pads_rear": self.p.pads_rear_km, "micro": 30_000, "flat": 60_000,
                "spark": 60_000}.get(spec.rate)

    def _new_state(self, spec: ItemSpec) -> _ItemState:
        build = self.p.build
        return _ItemState(spec, self._interval_km(spec), 0, 0.0, None, (build.year, build.month),
                          _add_months(build, spec.first_months) if spec.first_months else None, 0)

    def shown_km(self, idx: int) -> int:
        """The odometer as the instrument cluster shows it."""
        km = int(self.drive.odo[idx])
        if self.swap_day is not None and idx >= self.swap_day:
            km = max(0, km - self.swap_offset)
        return km

    # --- what the car's display says --------------------------------------------------------
    def _needs(self, state: _ItemState, idx: int, *, km_margin: float, months: int, pct: float) -> bool:
        day = self.drive.first + timedelta(days=idx)
        remaining = _remaining(state, self.drive, idx, self.config.oil_late_life_speedup)
        if remaining is not None and (remaining <= km_margin
                                      or remaining / state.interval_km * 100 <= pct):  # type: ignore[operator]
            return True
        if state.due is not None:
            limit = _add_months(day, months)
            if state.due <= limit:
                return True
        return False

    def _trigger_day(self, start: int) -> int | None:
        """First drive index from ``start`` on which the display asks for a service."""
        best: int | None = None
        for state in self.states:
            candidates = []
            if state.interval_km is not None:
                margin = 2000.0
                need = state.interval_km - margin
                if state.spec.rate == "oil":
                    half = state.interval_km / 2
                    need = half + max(0.0, half - margin) / (1 + self.config.oil_late_life_speedup)
                series = self.drive.wear[state.spec.rate]
                idx = bisect_left(series, state.base_wear + need, lo=max(start, state.base_day))
                if idx < len(series):
                    candidates.append(idx)
            if state.due is not None:
                y, m = state.due
                month_before = date(y, m, 1) - timedelta(days=30)
                candidates.append(max(start, (month_before - self.drive.first).days))
            for c in candidates:
                if best is None or c < best:
                    best = c
        return best

    # --- the visits ---------------------------------------------------------------------------
    def visits(self) -> list[tuple[int, str]]:
        """Reception days (drive index) with the visit kind, in order, up to ``config.end``."""
        end_idx = self.drive.day(self.config.end)
        fixed: list[tuple[int, str]] = []
        years = range(self.p.build.year, self.config.end.year + 1)
        if self.p.winter_tyres:
            for y in years:
                for month, lo in ((3, 15), (10, 10)):
                    day = date(y, month, lo) + timedelta(days=self.rng.randrange(45))
                    fixed.append((self.drive.day(day), "tyres"))
        n_years = (self.config.end - self.p.build).days / 365.25
        for _ in range(int(self.config.repair_visits_per_year * n_years + self.rng.random())):
            fixed.append((self.rng.randrange(max(1, end_idx)), "repair"))
        fixed = sorted((d, k) for d, k in fixed if 0 < d <= end_idx)
        return fixed

    def _delay_days(self) -> int:
        lo, hi = {"prompt": (2, 20), "relaxed": (10, 60), "late": (30, 120)}[self.p.punctuality]
        return self.rng.randint(lo, hi)

    def _workday(self, idx: int) -> int:
        day = self.drive.first + timedelta(days=idx)
        while day.weekday() >= 5 or (day.month, day.day) in _HOLIDAYS:
            day += timedelta(days=1)
        return (day - self.drive.first).days

    def run(self) -> list[FleetReadout]:
        """Drive to ``config.end``; return the readouts of the site's period, with the truth."""
        out: list[FleetReadout] = []
        end_idx = self.drive.day(self.config.end)
        start_idx = self.drive.day(self.config.start)
        fixed = self.visits()
        fi = 0
        idx = 1
        while idx <= end_idx:
            trigger = self._trigger_day(idx)
            service_day = None
            if trigger is not None:
                service_day = self._workday(trigger + self._delay_days())
            next_fixed = fixed[fi][0] if fi < len(fixed) else None
            if next_fixed is not None and (service_day is None or next_fixed <= service_day):
                day, kind = fixed[fi]
                fi += 1
                day = self._workday(max(day, idx))
            elif service_day is not None:
                day, kind = service_day, "service"
            else:
                break
            if day > end_idx:
                break
            self._maybe_swap(day)
            out.extend(self._visit(day, kind, read=day >= start_idx))
            idx = day + 1
        return _with_next_visits(out)

    def _maybe_swap(self, idx: int) -> None:
        if self.swap_day is not None and self.swap_offset == 0 and idx >= self.swap_day:
            # The replacement cluster came from a car with fewer km.
            self.swap_offset = int(self.drive.odo[self.swap_day] * self.rng.uniform(0.2, 0.9))

    def _visit(self, idx: int, kind: str, *, read: bool) -> list[FleetReadout]:
        out: list[FleetReadout] = []
        day = self.drive.first + timedelta(days=idx)
        local = ZoneInfo(self.config.site_timezone)
        minute = self.rng.randrange(7 * 60 + 15, 17 * 60 + 30)
        reception = datetime.combine(day, time(minute // 60, minute % 60), local)
        if read:
            spare = self.rng.random() < self.config.spare_key_share
            out.append(self._readout(idx, reception, kind, "reception", spare))
        # A service visit also does what would fall due soon; other visits only the urgent.
        km_margin, months, pct = (4000.0, 3, 20.0) if kind == "service" else (1000.0, 1, 5.0)
        serviced = False
        for i, state in enumerate(self.states):
            if self._needs(state, idx, km_margin=km_margin, months=months, pct=pct):
                self._service(i, idx)
                serviced = True
        if read and serviced and self.rng.random() < self.config.delivery_read_share:
            delivery = reception + timedelta(minutes=self.rng.randrange(90, 420))
            out.append(self._readout(idx, delivery, kind, "delivery", False))
        return out

    def _service(self, i: int, idx: int) -> None:
        old = self.states[i]
        day = self.drive.first + timedelta(days=idx)
        due = _add_months(day, old.spec.interval_months) if old.spec.interval_months else None
        base = self.drive.wear[old.spec.rate][idx] if old.spec.rate in self.drive.wear else 0.0
        new = _ItemState(old.spec, old.interval_km, idx, base, self.shown_km(idx),
                         (day.year, day.month), due, old.count + 1)
        self.states[i] = new
        self.log[i].append(new)

    def _state_at(self, i: int, idx: int) -> _ItemState:
        """The item's state as the key had it at the end of drive day ``idx``."""
        for state in reversed(self.log[i]):
            if state.base_day <= idx:
                return state
        return self.log[i][0]

    # --- the key ----------------------------------------------------------------------------
    def _readout(self, visit_idx: int, read_at_local: datetime, kind: str, moment: str,
                 spare: bool) -> FleetReadout:
        data_idx = visit_idx
        if spare:
            data_idx = max(0, visit_idx - self.rng.randrange(30, 400))
        self.reads += 1
        states = [self._state_at(i, data_idx) if spare else self.states[i] for i in range(len(self.states))]
        session = self._session(data_idx, states, spare)
        truth = {n: _true_due(s, self.drive, self.config.oil_late_life_speedup) for n, s in enumerate(states)}
        return FleetReadout(vehicle=self.p.index, readout_id=f"sim{self.config.seed}-{self.p.index}-{self.reads}",
                            read_at=read_at_local.astimezone(UTC), session=session,
                            true_due=truth, visit=kind, moment=moment, spare_key=spare)  # type: ignore[arg-type]

    def _usage(self, since: int, until: int) -> UsageData:
        drive = self.drive
        since = max(0, min(since, until - 1))
        days = range(since + 1, until + 1)
        km_total = 0.0
        cold_km = hot_km = 0.0
        temps = []
        for d in days:
            km = drive.odo[d] - drive.odo[d - 1]
            km_total += km
            if km > 0:
                temps.append(drive.temp[d])
                cold_km += km * drive.cold[d]
                hot_km += km * drive.hot[d]
        rng = self.rng
        if not temps:
            temps = [drive.temp[until]]
        km_total = max(km_total, 1.0)
        severe = min(1.0, self.p.severe_share + self.p.region.dust)
        return UsageData(
            ambient_avg_c=_round_half(sum(temps) / len(temps)),
            ambient_min_c=_round_half(max(-40.0, min(temps) - 4.0)),
            ambient_max_c=_round_half(min(87.0, max(temps) + 6.0)),
            hot_share_pct=round(100 * hot_km / km_total),
            cold_share_pct=round(100 * cold_km / km_total),
            short_trip_pct=min(100, max(0, round(100 * self.p.short_trip_share + rng.gauss(0, 3)))),
            severe_duty_pct=round(100 * severe),
            avg_trip_km=round(max(0.5, self.p.avg_trip_km * math.exp(rng.gauss(0, 0.08))), 1))

    def _session(self, idx: int, states: Sequence[_ItemState], spare: bool) -> KeySession:
        day = self.drive.first + timedelta(days=idx)
        speedup = self.config.oil_late_life_speedup
        items = []
        for n, state in enumerate(states):
            spec = state.spec
            remaining = _remaining(state, self.drive, idx, speedup)
            availability: int | None = None
            left = _life_left(state, self.drive, idx, speedup)
            if spec.availability == "distance" and left is not None and state.interval_km:
                availability = min(100, max(0, round(100 * left / state.interval_km)))
            elif spec.availability == "time" and state.due is not None:
                months = spec.interval_months if state.count else spec.first_months
                left = (_month_end(*state.due) - day).days
                availability = min(250, max(0, round(100 * left / (30.44 * (months or 24)))))
            rem_key = None if remaining is None else max(-524_287, min(524_287, round(remaining)))
            history = ServiceHistory(
                last_service_km=state.service_km,
                last_service_year=state.service_month[0] if state.count else self.p.build.year,
                last_service_month=state.service_month[1] if state.count else None,
                interval_km=state.interval_km, interval_months=spec.interval_months)
            due_year, due_month = state.due if state.due is not None else (2000, None)
            items.append(ServiceItem(index=n, code=TYPE_TO_CODE[spec.type], availability_pct=availability,
                                     remaining_km=rem_key, due_year=due_year, due_month=due_month,
                                     service_count=min(31, state.count), history=history))
        oil_state = states[0]
        usage = self._usage(oil_state.base_day, idx)
        rng = self.rng
        ccs: tuple[CheckControlMessage, ...] = ()
        roll = rng.random()
        if roll < 0.06:
            ccs = (CheckControlMessage(0, rng.choice((0x102, 0x0AE, 0x161)), CheckControlStatus.ACTIVE,
                                       self.shown_km(max(0, idx - 3))),)
        elif roll < 0.16:
            ccs = (CheckControlMessage(0, 0x0AE, CheckControlStatus.STORED, self.shown_km(max(0, idx - 40))),)
        dtcs: tuple[StoredDtc, ...] = ()
        if rng.random() < 0.06:
            dtcs = (StoredDtc(0, rng.choice((0x03011F, 0x480A00, 0x930B02)),
                              0x2F if rng.random() < 0.6 else 0x24, 0x12, rng.randint(1, 9)),)
        return KeySession(
            session_seq=self.reads % 256, key_id=self.keys[1 if spare else 0], key_slot=1 if spare else 0,
            vin=self.p.vin,
            vehicle=VehicleData(mileage_km=self.shown_km(idx), data_date=day,
                                fuel_level_pct=rng.randrange(5, 101), build_year=self.p.build.year,
                                build_month=self.p.build.month),
            usage=usage, services=tuple(items), check_controls=ccs, dtcs=dtcs)


def _with_next_visits(readouts: list[FleetReadout]) -> list[FleetReadout]:
    """Each readout with the day of the vehicle's next visit (visits are on different days;
    a delivery read shares its visit's day, so it is walked before its reception)."""
    out: list[FleetReadout] = []
    following: date | None = None
    for r in reversed(readouts):
        out.append(replace(r, next_visit=following))
        if r.moment == "reception":
            following = r.read_at.date()
    out.reverse()
    return out


def simulate_vehicle(index: int, config: FleetConfig) -> tuple[VehicleProfile, list[FleetReadout]]:
    """One vehicle's hidden profile and its readouts at the site, in read order."""
    profile = make_profile(index, config)
    if profile.build > config.end:
        return profile, []
    vehicle = _Vehicle(profile, config)
    return profile, vehicle.run()


def simulate_fleet(config: FleetConfig) -> Iterator[tuple[VehicleProfile, list[FleetReadout]]]:
    """Every vehicle of the fleet, one after the other (each independent of the others)."""
    for index in range(config.vehicles):
        yield simulate_vehicle(index, config)


# --- output -------------------------------------------------------------------------------
def readout_json(readout: FleetReadout) -> dict[str, Any]:
    """A readout as JSON-safe data: the session (protocols.key_session_json) and the truth."""
    return {
        "readout_id": readout.readout_id, "read_at": readout.read_at.isoformat(),
        "visit": readout.visit, "moment": readout.moment, "spare_key": readout.spare_key,
        "session": session_to_dict(readout.session),
        "true_due": {str(i): None if d is None else d.isoformat() for i, d in sorted(readout.true_due.items())},
        "next_visit": None if readout.next_visit is None else readout.next_visit.isoformat(),
    }


def write_candump(readouts: Sequence[FleetReadout], path: Path, *, interface: str = "can0") -> int:
    """The readouts as a candump log (``(ts) can0 6F0#...``), one session per readout, with
    read_at as the timestamps; returns the number of frames written."""
    from protocols.encoder import encode_session

    frames = 0
    with path.open("w", encoding="ascii") as fh:
        for r in readouts:
            for frame in encode_session(r.session, start_time=r.read_at.timestamp(), frame_gap_s=0.002):
                fh.write(f"({frame.timestamp:.6f}) {interface} {frame.arbitration_id:03X}#{frame.data.hex().upper()}\n")
                frames += 1
    return frames


def add_fleet_subcommand(subparsers: Any, name: str = "fleet-over-time") -> argparse.ArgumentParser:
    """Register ``fleet-over-time`` on an argparse subparsers object; the handler is
    ``args.func(args) -> int``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help="simulate a fleet over the years: key readouts at workshop visits plus true due days",
        description="Writes one JSON object per readout (key figures and each item's true due day) "
                    "and, with --candump, the sessions as CAN frames.")
    defaults = FleetConfig()
    parser.add_argument("--vehicles", type=int, default=100, metavar="N",
                        help="vehicles in the fleet (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="fleet seed (default 1)")
    parser.add_argument("--start", type=date.fromisoformat, default=defaults.start,
                        metavar="YYYY-MM-DD", help=f"first day simulated (default {defaults.start})")
    parser.add_argument("--end", type=date.fromisoformat, default=defaults.end,
                        metavar="YYYY-MM-DD", help=f"last day simulated (default {defaults.end})")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="JSON lines here (default: stdout)")
    parser.add_argument("--candump", type=Path, default=None, metavar="FILE",
                        help="also write a candump log here (default: none)")
    parser.set_defaults(func=run_fleet_command)
    return parser


def run_fleet_command(args: argparse.Namespace) -> int:
    config = FleetConfig(vehicles=args.vehicles, seed=args.seed, start=args.start, end=args.end)
    readouts = [r for _, rs in simulate_fleet(config) for r in rs]
    readouts.sort(key=lambda r: (r.read_at, r.readout_id))
    out = args.out.open("w", encoding="utf-8") if args.out is not None else sys.stdout
    try:
        for r in readouts:
            out.write(json.dumps(readout_json(r)) + "\n")
    finally:
        if args.out is not None:
            out.close()
    if args.candump is not None:
        write_candump(readouts, args.candump)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet_over_time")
    add_fleet_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fleet-over-time", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
