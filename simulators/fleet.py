"""A seeded, reproducible fleet of BMW-group vehicles and the key reads a dealership sees.

``Fleet(seed, base_date).sessions(n)`` yields the same :class:`KeySession` values for the
same arguments, on any machine and in any process (string seeds go through SHA-512 in
:mod:`random`, independent of ``PYTHONHASHSEED``). Every session is *valid*: it encodes with
:func:`protocols.encoder.encode_session` and decodes back to an equal value; faults are
injected later (:mod:`simulators.faults`).

The model, in short: the fleet is a pool of vehicles (VIN, fuel, drive, build month, yearly
mileage, 1-4 keys with transponder ids and slots, the CBS items its ECUs keep). Read ``i``
picks a vehicle and one of its keys; the day the car last wrote the key lies near the base
date; mileage follows from the car's age; each CBS item's remaining distance, due month,
availability, service count and history follow from its interval, so a vehicle that comes
back shows consistent values. Some items are neglected (overdue, negative remaining km),
some never serviced. With a small probability (``edge_rate``) a field takes a value at the
edge of its valid range, so the decoder and forecaster meet the whole range, and with
``unknown_code_rate`` an item carries a CBS code outside the table.

Read ``i`` is a pure function of (seed, base_date, i): :meth:`Fleet.session` gives random
access and ``sessions()`` is only a loop over it.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from protocols.cbs_types import CODE_TO_TYPE
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
from simulators.vin import choose_wmi, make_vin

MAX_ITEMS = 12
MAX_MILEAGE_KM = 0xFFFFFF  # u24
MAX_LAST_SERVICE_KM = 0xFFFFFE  # 0xFFFFFF means "never serviced"
MAX_REMAINING_KM = 524287  # s20; -524288 means "not available"
MAX_INTERVAL_KM = 102300  # u10 x 100
UNKNOWN_CODES = tuple(c for c in range(256) if c not in CODE_TO_TYPE)


class Fuel(enum.StrEnum):
    PETROL = "petrol"
    DIESEL = "diesel"
    PHEV = "phev"
    BEV = "bev"


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """One CBS item a vehicle's ECUs keep, with its nominal intervals.

    ``neglected`` items skipped their last service, so they show up overdue; ``has_history``
    items are sent with a KEY_CBS_HISTORY frame.
    """

    code: int
    interval_km: int | None
    interval_months: int | None
    neglected: bool = False
    has_history: bool = False


@dataclass(frozen=True, slots=True)
class VehicleKey:
    slot: int
    key_id: int


@dataclass(frozen=True, slots=True)
class Vehicle:
    number: int
    vin: str
    fuel: Fuel
    xdrive: bool
    manual: bool
    build_date: date  # first day of the production month
    key_build_month: int | None  # what the key says; None = not available
    delivery_km: int
    annual_km: int
    keys: tuple[VehicleKey, ...]
    services: tuple[ServicePlan, ...]
    sparse_indices: bool  # item indices with gaps (valid, and seen on real keys)


# Check-control message ids and DTCs (3-byte ISO 14229-1 codes) a workshop sees often,
# with the ECU (diagnostic address) that stores them.
_CC_IDS = (24, 27, 29, 34, 39, 50, 62, 63, 142, 149, 169, 175, 184, 213, 220, 229, 257,
           281, 306, 339, 378, 563, 576, 586, 802, 3340)
_DTC_CODES = (  # (high+middle bytes of the SAE code, ECU address)
    (0x0301, 0x12), (0x0302, 0x12), (0x0171, 0x12), (0x0420, 0x12), (0x0128, 0x12),
    (0x0087, 0x12), (0x0299, 0x12), (0x2463, 0x12), (0x0700, 0x18), (0x4035, 0x29),
    (0x4121, 0x29), (0x5000, 0x30), (0xC100, 0x40), (0xC155, 0x60), (0x9000, 0x40),
    (0x9A12, 0x01), (0xC073, 0x63), (0x0562, 0x12),
)
_FAILURE_TYPES = (0x00, 0x11, 0x12, 0x13, 0x16, 0x17, 0x1C, 0x1F, 0x29, 0x64, 0x71, 0x87, 0x92)
_DTC_STATUSES = (0x08, 0x09, 0x0B, 0x28, 0x2C, 0x2F, 0xAF, 0x24)


class Fleet:
    """A reproducible dealership fleet; see the module docstring.

    ``base_date`` defaults to today (so sessions then change from day to day; pass a date
    for reproducible values). ``first_seq`` starts the rolling session counter that the
    sessions carry (``session_seq`` of read ``i`` is ``(first_seq + i) % 256``).
    """

    def __init__(self, seed: int = 0, base_date: date | None = None, *, vehicle_count: int = 25,
                 first_seq: int = 0, edge_rate: float = 0.03,
                 unknown_code_rate: float = 0.04) -> None:
        base = base_date if base_date is not None else date.today()
        if not 2001 <= base.year <= 2126:
            raise ValueError(f"base date {base} is outside the protocol's years 2001-2126")
        if vehicle_count < 1:
            raise ValueError("a fleet needs at least one vehicle")
        if not 0 <= edge_rate <= 1 or not 0 <= unknown_code_rate <= 1:
            raise ValueError("rates are probabilities between 0 and 1")
        self.seed = seed
        self.base_date = base
        self.first_seq = first_seq & 0xFF
        self.edge_rate = edge_rate
        self.unknown_code_rate = unknown_code_rate
        self.vehicles: tuple[Vehicle, ...] = tuple(
            self._make_vehicle(k) for k in range(vehicle_count))

    def __repr__(self) -> str:
        return (f"Fleet(seed={self.seed}, base_date={self.base_date}, "
                f"vehicle_count={len(self.vehicles)})")

    def sessions(self, n: int | None = None, *, start: int = 0) -> Iterator[KeySession]:
        """Reads ``start``, ``start + 1``, ... (``n`` of them, or endlessly when None)."""
        index = start
        while n is None or index < start + n:
            yield self.session(index)
            index += 1

    def session(self, index: int) -> KeySession:
        """Read number ``index`` (0-based) of this fleet."""
        if index < 0:
            raise IndexError(index)
        rng = random.Random(f"cbs-sim/fleet/{self.seed}/{self.base_date}/read/{index}")
        vehicle = self.vehicles[rng.randrange(len(self.vehicles))]
        return _ReadBuilder(self, vehicle, rng).build(seq=(self.first_seq + index) & 0xFF)

    def vehicle_of(self, vin: str) -> Vehicle | None:
        return next((v for v in self.vehicles if v.vin == vin), None)

    # -- vehicles -------------------------------------------------------------------------

    def _make_vehicle(self, number: int) -> Vehicle:
        rng = random.Random(f"cbs-sim/fleet/{self.seed}/{self.base_date}/vehicle/{number}")
        wmi = choose_wmi(rng)
        fuel = _choose_fuel(rng, wmi)
        xdrive = rng.random() < {"WBX": 0.85, "5UX": 0.9, "WBS": 0.5, "WMW": 0.15}.get(wmi, 0.35)
        manual = fuel is not Fuel.BEV and rng.random() < {"WMW": 0.2, "WBS": 0.15,
                                                          "WBA": 0.05}.get(wmi, 0.0)
        age_months = _choose_age_months(rng)
        if rng.random() < self.edge_rate:
            age_months = 10_000  # clamped below to the oldest year the protocol knows
        first_of_month = self.base_date.replace(day=1)
        build_date = _add_months(first_of_month, -age_months)
        if build_date.year < 2000:
            build_date = date(2000, rng.randint(1, 12), 1)
        model_year = build_date.year + (1 if build_date.month >= 9 else 0)
        vin = make_vin(rng, wmi=wmi, model_year=model_year)
        annual_km = int(min(80_000, max(2_000, rng.lognormvariate(math.log(15_000), 0.45))))
        return Vehicle(
            number=number, vin=vin, fuel=fuel, xdrive=xdrive, manual=manual,
            build_date=build_date,
            key_build_month=None if rng.random() < 0.03 else build_date.month,
            delivery_km=rng.randint(3, 60), annual_km=annual_km,
            keys=self._make_keys(rng), services=_service_plans(rng, wmi, fuel, xdrive, manual),
            sparse_indices=rng.random() < 0.1)

    def _make_keys(self, rng: random.Random) -> tuple[VehicleKey, ...]:
        count = rng.choices((1, 2, 3, 4), weights=(8, 62, 20, 10))[0]
        slots = list(range(count))
        if rng.random() < 0.12:  # a replacement key programmed into a higher slot
            slots[-1] = rng.randint(max(count, 4), 9)
        ids: set[int] = set()
        keys = []
        for slot in slots:
            key_id = rng.getrandbits(32)
            if rng.random() < self.edge_rate:
                key_id = rng.choice((0, 0xFFFFFFFF))
            while key_id in ids:
                key_id = rng.getrandbits(32)
            ids.add(key_id)
            keys.append(VehicleKey(slot, key_id))
        return tuple(keys)


def _choose_fuel(rng: random.Random, wmi: str) -> Fuel:
    if wmi == "WBY":
        return Fuel.BEV if rng.random() < 0.8 else Fuel.PHEV
    if wmi == "WBS":
        return Fuel.PETROL
    if wmi == "WMW":
        return rng.choices((Fuel.PETROL, Fuel.DIESEL, Fuel.BEV), weights=(75, 10, 15))[0]
    return rng.choices((Fuel.PETROL, Fuel.DIESEL, Fuel.PHEV, Fuel.BEV),
                       weights=(50, 35, 12, 3))[0]


def _choose_age_months(rng: random.Random) -> int:
    band = rng.choices(((0, 2), (3, 36), (37, 96), (97, 216)), weights=(10, 45, 35, 10))[0]
    return rng.randint(*band)


def _service_plans(rng: random.Random, wmi: str, fuel: Fuel, xdrive: bool,
                   manual: bool) -> tuple[ServicePlan, ...]:
    """The CBS items of a vehicle, in order of importance (most important first)."""
    combustion = fuel is not Fuel.BEV
    candidates: list[tuple[bool, int, int | None, int | None]] = [
        # (present, code, interval_km, interval_months)
        (combustion, 0x01, rng.choice((15_000, 20_000, 25_000, 30_000)), 24),
        (True, 0x03, None, 24),
        (True, 0x02, rng.randrange(40_000, 70_001, 5_000), None),
        (True, 0x06, rng.randrange(50_000, 90_001, 5_000), None),
        (True, 0x04, rng.choice((30_000, None)), 24),
        (True, 0x11, rng.choice((60_000, None)), 24),
        (rng.random() < 0.7, 0x20, None, 24),
        (combustion and rng.random() < 0.3, 0x21, None, 24),
        (fuel in (Fuel.PETROL, Fuel.PHEV) and rng.random() < 0.8, 0x10,
         rng.choice((60_000, 100_000)), 72),
        (fuel is Fuel.DIESEL and rng.random() < 0.9, 0x07, 100_000, None),
        (fuel is Fuel.DIESEL and rng.random() < 0.7, 0x0D, None, None),
        (fuel is Fuel.DIESEL and rng.random() < 0.3, 0x0A, 100_000, 96),
        (xdrive and rng.random() < 0.5, 0x09, 100_000, None),
        (manual, 0x32, 100_000, None),
        (rng.random() < 0.25, 0x08, None, None),
        (rng.random() < 0.15, 0x23, 100_000, 120),
        (rng.random() < 0.15, 0x12, None, 48),
        (rng.random() < 0.10, 0x31, None, 72),
        (rng.random() < 0.08, 0x37, 100_000, None),
        (fuel is Fuel.DIESEL and rng.random() < 0.05, 0x16, 100_000, None),
    ]
    plans = [ServicePlan(code, km, months, neglected=rng.random() < 0.1,
                         has_history=code not in (0x08, 0x0D) and rng.random() < 0.5)
             for present, code, km, months in candidates if present]
    limit = MAX_ITEMS - 2  # room for the running-in check and the pre-delivery inspection
    if rng.random() < 0.08:  # an older or simpler car: only a few items on the key
        limit = rng.randint(1, 4)
    return tuple(plans[:limit])


def _add_months(day: date, months: int) -> date:
    """The first day of the month ``months`` after (or before) ``day``'s month."""
    total = day.year * 12 + (day.month - 1) + months
    return date(total // 12, total % 12 + 1, 1)


def _months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + (end.month - start.month)


def _year_month(build: date, months_after: float) -> tuple[int, int]:
    d = _add_months(build, math.floor(months_after))
    return d.year, d.month


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


class _ReadBuilder:
    """Builds one read of one vehicle; holds the read's random stream."""

    def __init__(self, fleet: Fleet, vehicle: Vehicle, rng: random.Random) -> None:
        self.fleet = fleet
        self.vehicle = vehicle
        self.rng = rng

    def edge(self, value: float, *edges: float) -> float:
        """``value``, or with probability ``edge_rate`` one of the range edges."""
        return self.rng.choice(edges) if self.rng.random() < self.fleet.edge_rate else value

    def build(self, *, seq: int) -> KeySession:
        rng, v = self.rng, self.vehicle
        key = rng.choice(v.keys)
        data_date = self._data_date()
        days = (data_date - v.build_date).days
        mileage = v.delivery_km + round(days * v.annual_km / 365)
        mileage = int(self.edge(_clamp(mileage, 0, MAX_MILEAGE_KM), 0, MAX_MILEAGE_KM))
        fuel_level = None if rng.random() < 0.04 else int(self.edge(rng.randint(5, 100), 0, 100))
        if v.fuel is Fuel.BEV and fuel_level is not None and rng.random() < 0.7:
            fuel_level = None  # no tank: most electric cars send "not available"
        vehicle = VehicleData(mileage_km=mileage, data_date=data_date, fuel_level_pct=fuel_level,
                              build_year=v.build_date.year, build_month=v.key_build_month)
        return KeySession(
            session_seq=seq, key_id=key.key_id, key_slot=key.slot, vin=v.vin, vehicle=vehicle,
            usage=None if rng.random() < 0.15 else self._usage(),
            services=self._services(data_date, mileage),
            check_controls=self._check_controls(mileage), dtcs=self._dtcs())

    def _data_date(self) -> date:
        rng, base = self.rng, self.fleet.base_date
        r = rng.random()
        if r < 0.02:
            offset = -1  # the car's clock is a day ahead of the dealership's
        elif r < 0.70:
            offset = rng.randint(0, 14)
        elif r < 0.95:
            offset = rng.randint(15, 365)
        else:
            offset = rng.randint(366, 1500)
        day = base - timedelta(days=offset)
        if day < self.vehicle.build_date:
            day = self.vehicle.build_date + timedelta(days=rng.randint(0, 20))
        return max(date(2000, 1, 1), min(day, date(2127, 12, 31)))

    def _ambient(self, value_c: float) -> float | None:
        if self.rng.random() < 0.04:
            return None
        raw = _clamp(round((value_c + 40) * 2), 0, 254)  # 255 is "not available"
        raw = int(self.edge(raw, 0, 254))
        return raw * 0.5 - 40

    def _usage(self) -> UsageData:
        rng = self.rng
        avg = rng.uniform(-5, 28)
        low = avg - rng.uniform(5, 25)
        high = avg + rng.uniform(5, 20)
        hot = rng.randint(0, 25) if high > 30 else 0
        cold = rng.randint(0, 40) if low < 0 else 0
        severe = 0 if rng.random() < 0.8 else rng.randint(1, 60)
        trip_raw = _clamp(round(rng.lognormvariate(math.log(15), 0.6) * 10), 1, 4095)
        return UsageData(
            ambient_avg_c=self._ambient(avg), ambient_min_c=self._ambient(low),
            ambient_max_c=self._ambient(high),
            hot_share_pct=int(self.edge(hot, 0, 100)), cold_share_pct=int(self.edge(cold, 0, 100)),
            short_trip_pct=int(self.edge(rng.randint(5, 70), 0, 100)),
            severe_duty_pct=int(self.edge(severe, 0, 100)),
            avg_trip_km=int(self.edge(trip_raw, 0, 4095)) / 10)

    def _services(self, data_date: date, mileage: int) -> tuple[ServiceItem, ...]:
        rng, v = self.rng, self.vehicle
        months = max(0, _months_between(v.build_date, data_date))
        driven = max(0, mileage - v.delivery_km)
        specs: list[ServiceItem] = []
        for plan in v.services:
            specs.append(self._planned_item(plan, months, mileage))
        if driven < 2500 and (v.vin.startswith("WBS") or rng.random() < 0.3):
            remaining = 2000 - driven
            specs.append(self._item(0x15, availability=_clamp(round(remaining / 20), 0, 100),
                                    remaining_km=remaining, due=None, count=0, history=None))
        if driven < 100 and months < 3:
            specs.append(self._item(0x14, availability=0, remaining_km=None,
                                    due=(data_date.year, data_date.month), count=0, history=None))
        if len(specs) < MAX_ITEMS and rng.random() < self.fleet.unknown_code_rate:
            specs.append(self._unknown_item(data_date))
        specs = specs[:MAX_ITEMS]
        count = len(specs)
        indices = (sorted(rng.sample(range(16), count)) if v.sparse_indices
                   else list(range(count)))
        return tuple(ServiceItem(index=i, code=s.code, availability_pct=s.availability_pct,
                                 remaining_km=s.remaining_km, due_year=s.due_year,
                                 due_month=s.due_month, service_count=s.service_count,
                                 history=s.history)
                     for i, s in zip(indices, specs, strict=True))

    def _item(self, code: int, *, availability: int | None, remaining_km: int | None,
              due: tuple[int, int] | None, count: int,
              history: ServiceHistory | None) -> ServiceItem:
        """An item (index filled in later) with edge values sprinkled over its fields."""
        if availability is not None:
            availability = int(self.edge(availability, 0, 250))
        if remaining_km is not None:
            remaining_km = int(self.edge(_clamp(remaining_km, -MAX_REMAINING_KM, MAX_REMAINING_KM),
                                         -MAX_REMAINING_KM, MAX_REMAINING_KM, 0))
        if due is None:
            due_year, due_month = 2000, None  # DueMonth 0 = no due date; DueYear then 0
        else:
            due_year, due_month = due
            if self.rng.random() < self.fleet.edge_rate:
                due_year, due_month = self.rng.choice(((2000, 1), (2127, 12)))
        return ServiceItem(index=0, code=code, availability_pct=availability,
                           remaining_km=remaining_km, due_year=_clamp(due_year, 2000, 2127),
                           due_month=due_month, service_count=int(self.edge(min(count, 31), 0, 31)),
                           history=history)

    def _planned_item(self, plan: ServicePlan, months: int, mileage: int) -> ServiceItem:
        rng, v = self.rng, self.vehicle
        km_per_month = max(1.0, v.annual_km / 12)
        if plan.code == 0x08:  # battery: availability is its state of health
            soh = max(40, 100 - round(months / 12 * rng.uniform(2, 5)))
            return self._item(0x08, availability=soh, remaining_km=None, due=None,
                              count=int(months > 60), history=None)
        if plan.code == 0x0D:  # AdBlue: remaining km is the range of the tank
            remaining = rng.randint(0, 15_000)
            return self._item(0x0D, availability=round(remaining / 150), remaining_km=remaining,
                              due=None, count=months // 6, history=None)
        cycles = [c for c in (plan.interval_months,
                              None if plan.interval_km is None else plan.interval_km / km_per_month)
                  if c is not None]
        cycle = max(1.0, min(cycles))
        done = math.floor(months / cycle)
        if plan.neglected and done >= 1:
            done -= 1  # the last service was skipped: the item is overdue now
        last_month = done * cycle
        last_km = v.delivery_km + last_month * km_per_month if done else float(v.delivery_km)
        fractions = []
        remaining_km = None
        if plan.interval_km is not None:
            remaining_km = round(plan.interval_km - (mileage - last_km))
            fractions.append(remaining_km / plan.interval_km)
        due = None
        if plan.interval_months is not None:
            due_month_offset = last_month + plan.interval_months
            due = _year_month(v.build_date, due_month_offset)
            fractions.append((due_month_offset - months) / plan.interval_months)
        availability = _clamp(round(min(fractions) * 100), 0, 100) if fractions else None
        if plan.code == 0x03 and done == 0 and availability is not None and availability > 0:
            availability = rng.randint(100, 160)  # brake fluid after the factory fill
        if rng.random() < 0.03:
            availability = None
        history = None
        if plan.has_history:
            history = self._history(plan, done, last_month, last_km)
        return self._item(plan.code, availability=availability, remaining_km=remaining_km,
                          due=due, count=done, history=history)

    def _history(self, plan: ServicePlan, done: int, last_month: float,
                 last_km: float) -> ServiceHistory:
        interval_km = plan.interval_km
        if interval_km is not None:
            interval_km = min(MAX_INTERVAL_KM, interval_km)
            interval_km = int(self.edge(interval_km, 100, MAX_INTERVAL_KM))
        interval_months = plan.interval_months
        if interval_months is not None:
            interval_months = int(self.edge(interval_months, 1, 127))
        if done == 0:  # never serviced: no odometer, no month
            return ServiceHistory(last_service_km=None, last_service_year=2000,
                                  last_service_month=None, interval_km=interval_km,
                                  interval_months=interval_months)
        year, month = _year_month(self.vehicle.build_date, last_month)
        km = int(self.edge(_clamp(round(last_km), 0, MAX_LAST_SERVICE_KM), 0, MAX_LAST_SERVICE_KM))
        if self.rng.random() < self.fleet.edge_rate:
            year = self.rng.choice((2000, 2127))
        return ServiceHistory(last_service_km=km, last_service_year=year,
                              last_service_month=None if self.rng.random() < 0.03 else month,
                              interval_km=interval_km, interval_months=interval_months)

    def _unknown_item(self, data_date: date) -> ServiceItem:
        rng = self.rng
        due = None
        if rng.random() < 0.6:
            d = _add_months(data_date.replace(day=1), rng.randint(-3, 36))
            due = (d.year, d.month)
        return self._item(rng.choice(UNKNOWN_CODES),
                          availability=None if rng.random() < 0.3 else rng.randint(0, 100),
                          remaining_km=None if rng.random() < 0.4 else rng.randint(-5_000, 60_000),
                          due=due, count=rng.randint(0, 10), history=None)

    def _indices(self, count: int, dense_probability: float = 0.9) -> list[int]:
        if self.rng.random() < dense_probability:
            return list(range(count))
        return sorted(self.rng.sample(range(256), count))

    def _check_controls(self, mileage: int) -> tuple[CheckControlMessage, ...]:
        rng = self.rng
        r = rng.random()
        count = 0 if r < 0.6 else (20 if r < 0.61 else rng.choices((1, 2, 3, 4), (50, 25, 15, 10))[0])
        out = []
        for index in self._indices(count):
            out.append(CheckControlMessage(
                index=int(self.edge(index, 255)) if count == 1 else index,
                cc_id=int(self.edge(rng.choice(_CC_IDS), 0, 0xFFFF)),
                status=CheckControlStatus.ACTIVE if rng.random() < 0.4 else CheckControlStatus.STORED,
                mileage_km=int(self.edge(rng.randint(max(0, mileage - 20_000), mileage),
                                         0, MAX_MILEAGE_KM))))
        return tuple(out)

    def _dtcs(self) -> tuple[StoredDtc, ...]:
        rng = self.rng
        r = rng.random()
        count = 0 if r < 0.5 else (30 if r < 0.51 else rng.randint(1, 6))
        out = []
        for index in self._indices(count):
            sae, ecu = rng.choice(_DTC_CODES)
            code = (sae << 8) | rng.choice(_FAILURE_TYPES)
            out.append(StoredDtc(
                index=int(self.edge(index, 255)) if count == 1 else index,
                code=int(self.edge(code, 0, 0xFFFFFF)),
                status=int(self.edge(rng.choice(_DTC_STATUSES), 0, 0xFF)),
                ecu_address=int(self.edge(ecu, 0, 0xFF)),
                occurrences=int(self.edge(rng.randint(1, 50), 0, 0xFFFF))))
        return tuple(out)
