"""How far the service forecast is from the day items truly fall due, next to a naive forecast.

A seeded fleet (simulators/fleet_over_time.py) visits one workshop for four years. Every
readout is forecast the way the agent does it (the vehicle's earlier readouts from a
VehicleHistory in a temporary directory, then ``forecast_session``), and every item's forecast
due day is compared with the day the simulator says it truly falls due. The naive forecast is
what a workshop does without this project: remaining km at 40 km/day, or the due month,
whichever comes first.

Usage::

    python bench/forecast_accuracy.py                 # 1,000 vehicles, seed 1
    python bench/forecast_accuracy.py --vehicles 200 --seed 7 --json out.json

Prints tables of mean, median and p90 absolute error (days) by basis, by visit (first or
later), by daily-distance basis and by how far ahead the item truly falls due; then, per item
(engine oil, front and rear brake pads, the others) and visit kind, how often the true due day
falls inside the forecast's interval (``due_date_early`` to ``due_date_late``), the interval's
median width, the due date's median error and their ratio.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.domain.forecast import ForecastSettings, forecast_session, last_day_of_month
from agent.domain.proposal import ProposalSettings, offered_as_optional
from agent.store.history import VehicleHistory
from simulators.fleet_over_time import (
    FleetConfig,
    FleetReadout,
    VehicleProfile,
    simulate_vehicle,
)

NAIVE_KM_PER_DAY = 40.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One item of one readout: the forecast, the naive forecast and the truth."""

    item_type: str
    basis: str              # the forecast's basis
    km_basis: str           # the estimate's km_per_day_basis
    first_visit: bool
    spare_key: bool
    has_distance: bool      # the key gives remaining km for the item
    lead_days: int          # true due day - read date
    error_days: int         # forecast - truth
    naive_error_days: int | None
    early_days: int = 0     # due_date_early - truth
    late_days: int = 0      # due_date_late - truth
    not_due: bool = False   # neither due soon nor overdue at the desk: a candidate optional line
    offered: bool = False   # the proposal offers it as optional (early date before the next visit)
    offered_by_due: bool = False  # the rule before the interval: due date within the look-ahead
    next_visit_days: int | None = None  # the vehicle's true next visit - read date

    @property
    def covered(self) -> bool:
        """The true due day lies in the forecast's interval."""
        return self.early_days <= 0 <= self.late_days

    @property
    def width_days(self) -> int:
        return self.late_days - self.early_days


def naive_due(item_remaining_km: int | None, due_year: int, due_month: int | None,
              data_date: date) -> date | None:
    limits = []
    if item_remaining_km is not None:
        limits.append(data_date + timedelta(days=math.ceil(item_remaining_km / NAIVE_KM_PER_DAY)))
    if due_month is not None:
        limits.append(last_day_of_month(due_year, due_month))
    return min(limits) if limits else None


def _simulate_chunk(args: tuple[Sequence[int], FleetConfig]) -> list[tuple[VehicleProfile, list[FleetReadout]]]:
    indices, config = args
    return [simulate_vehicle(i, config) for i in indices]


def simulate(config: FleetConfig, jobs: int) -> list[tuple[VehicleProfile, list[FleetReadout]]]:
    chunks = [list(range(i, config.vehicles, jobs * 4)) for i in range(min(jobs * 4, config.vehicles))]
    if jobs <= 1:
        results = [_simulate_chunk((c, config)) for c in chunks]
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(_simulate_chunk, [(c, config) for c in chunks])
    fleet = [v for chunk in results for v in chunk]
    fleet.sort(key=lambda v: v[0].index)
    return fleet


def evaluate(fleet: Iterable[tuple[VehicleProfile, list[FleetReadout]]], settings: ForecastSettings,
             history_dir: Path) -> tuple[list[Sample], dict[str, int]]:
    """Forecast every readout in read order, each vehicle with its own growing history."""
    samples: list[Sample] = []
    proposal = ProposalSettings()
    with VehicleHistory(history_dir / "history.sqlite3", synchronous="NORMAL") as history:
        for _, readouts in fleet:
            first_day: date | None = None
            for r in readouts:
                read_date = r.read_at.astimezone(settings.zone).date()
                first_day = first_day or read_date
                session = r.session
                result = forecast_session(session, r.read_at, history.readings(session.vin), settings)
                history.record(session, r.read_at, r.readout_id)
                for item in session.services:
                    forecast = result.services[item.index]
                    truth = r.true_due.get(item.index)
                    if forecast is None or truth is None:
                        continue
                    naive = naive_due(item.remaining_km, item.due_year, item.due_month,
                                      session.vehicle.data_date)
                    samples.append(Sample(
                        item_type=str(item.type), basis=forecast.basis,
                        km_basis=result.estimate.km_per_day_basis,
                        first_visit=read_date == first_day, spare_key=r.spare_key,
                        has_distance=item.remaining_km is not None,
                        lead_days=(truth - read_date).days,
                        error_days=(forecast.due_date - truth).days,
                        naive_error_days=None if naive is None else (naive - truth).days,
                        early_days=(forecast.due_date_early - truth).days,
                        late_days=(forecast.due_date_late - truth).days,
                        not_due=forecast.status == "ok",
                        offered=offered_as_optional(forecast, proposal),
                        offered_by_due=(forecast.status == "ok"
                                        and forecast.days_left <= proposal.look_ahead_days),
                        next_visit_days=(None if r.next_visit is None
                                         else (r.next_visit - read_date).days)))
        counters = dict(history.counters)
    return samples, counters


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def stats(errors: Iterable[int]) -> dict[str, float]:
    values = sorted(abs(e) for e in errors)
    if not values:
        return {"n": 0, "mean": math.nan, "median": math.nan, "p90": math.nan}
    return {"n": len(values), "mean": sum(values) / len(values), "median": _percentile(values, 0.5),
            "p90": _percentile(values, 0.9)}


_LEAD_BUCKETS = ((30, "0-30 d"), (90, "31-90 d"), (180, "91-180 d"), (365, "181-365 d"))
_ORDER = ["already due", *(name for _, name in _LEAD_BUCKETS), "> 365 d", "first visit", "later visits"]


def _lead_bucket(days: int) -> str:
    if days < 0:
        return "already due"
    for limit, name in _LEAD_BUCKETS:
        if days <= limit:
            return name
    return "> 365 d"


def _order(name: str) -> tuple[int, str]:
    return (_ORDER.index(name), "") if name in _ORDER else (len(_ORDER), name)


def tables(samples: Sequence[Sample]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    groupings: dict[str, Callable[[Sample], str | None]] = {
        "all items": lambda s: "all",
        "items with remaining km": lambda s: "all" if s.has_distance else None,
        "by forecast basis": lambda s: s.basis,
        "by visit (items with remaining km)": lambda s: (
            ("first visit" if s.first_visit else "later visits") if s.has_distance else None),
        "by visit (all items)": lambda s: "first visit" if s.first_visit else "later visits",
        "by km_per_day basis (items with remaining km)": lambda s: s.km_basis if s.has_distance else None,
        "by true lead time (items with remaining km)": lambda s: _lead_bucket(s.lead_days) if s.has_distance else None,
        "by item type": lambda s: s.item_type,
    }
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for title, key in groupings.items():
        groups: dict[str, list[Sample]] = defaultdict(list)
        for s in samples:
            k = key(s)
            if k is not None:
                groups[k].append(s)
        out[title] = {
            k: {"forecast": stats(s.error_days for s in g),
                "naive": stats(s.naive_error_days for s in g if s.naive_error_days is not None)}
            for k, g in sorted(groups.items(), key=lambda kv: _order(kv[0]))}
    return out


#: The items the interval is judged on (issue: engine oil and brake pads), then the rest.
_INTERVAL_ITEMS = ("engine_oil", "brake_pads_front", "brake_pads_rear")
_TIME_ONLY = ("brake_fluid", "statutory_inspection")


def _interval_item(sample: Sample) -> str:
    if sample.item_type in _INTERVAL_ITEMS:
        return sample.item_type
    return "time-only items" if sample.item_type in _TIME_ONLY else "other items"


def interval_table(samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    """Per item group and visit kind: how often the true day lies in [early, late], the
    median width, the median absolute error of the due date and width / error."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        visit = "first" if s.first_visit else "later"
        groups[f"{_interval_item(s)} / {visit}"].append(s)
        groups[f"all / {visit}"].append(s)
    order = [*_INTERVAL_ITEMS, "other items", "time-only items", "all"]
    out: dict[str, dict[str, float]] = {}
    for name in sorted(groups, key=lambda k: (order.index(k.split(" / ")[0]), k)):
        group = groups[name]
        widths = sorted(s.width_days for s in group)
        errors = sorted(abs(s.error_days) for s in group)
        width, error = _percentile(widths, 0.5), _percentile(errors, 0.5)
        out[name] = {"n": len(group), "coverage": sum(s.covered for s in group) / len(group),
                     "below": sum(s.early_days > 0 for s in group) / len(group),
                     "above": sum(s.late_days < 0 for s in group) / len(group),
                     "median_width": width, "median_error": error,
                     "width_per_error": width / error if error else math.nan}
    return out


def render_intervals(table: dict[str, dict[str, float]]) -> str:
    head = (f"{'item / visit':<30}{'n':>7} | {'coverage':>8}{'early>t':>8}{'late<t':>8} | "
            f"{'width':>7}{'error':>7}{'w/e':>6}")
    lines = ["", "## interval (due_date_early..due_date_late; goal 80 % of true days inside, "
             "70-90 % acceptable)", head, "-" * len(head)]
    for name, row in table.items():
        lines.append(f"{name:<30}{row['n']:>7} | {100 * row['coverage']:>7.1f}%"
                     f"{100 * row['below']:>7.1f}%{100 * row['above']:>7.1f}% | "
                     f"{row['median_width']:>7.1f}{row['median_error']:>7.1f}"
                     f"{row['width_per_error']:>6.1f}")
    return "\n".join(lines)


def advice_table(samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    """"Do it now and save a visit", judged on the truth: of the items not yet due at the desk
    (reception reads with a known next visit), per item group and rule, how many were offered,
    how many of those truly fell due before the vehicle's next visit (a visit saved), and how
    many of the items that truly did were offered."""
    out: dict[str, dict[str, float]] = {}
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.not_due and s.next_visit_days is not None and not s.spare_key:
            groups[_interval_item(s)].append(s)
            groups["all"].append(s)
    order = [*_INTERVAL_ITEMS, "other items", "time-only items", "all"]
    for name in sorted(groups, key=order.index):
        group = groups[name]
        before = [s for s in group if s.lead_days <= (s.next_visit_days or 0)]
        for rule, pick in (("early date", lambda s: s.offered), ("due date", lambda s: s.offered_by_due)):
            offered = [s for s in group if pick(s)]
            hits = [s for s in offered if s.lead_days <= (s.next_visit_days or 0)]
            out[f"{name} / {rule}"] = {
                "n": len(group), "offered": len(offered),
                "saves_a_visit": len(hits) / len(offered) if offered else math.nan,
                "caught": len(hits) / len(before) if before else math.nan}
    return out


def render_advice(table: dict[str, dict[str, float]]) -> str:
    head = f"{'item / rule':<32}{'n':>7}{'offered':>9} | {'due before next visit':>22}{'caught':>8}"
    lines = ["", "## optional lines (items not yet due; look-ahead "
             f"{ProposalSettings().look_ahead_days} d): offered, truly due before the next visit, "
             "share of those caught", head, "-" * len(head)]
    for name, row in table.items():
        lines.append(f"{name:<32}{row['n']:>7}{row['offered']:>9} | "
                     f"{100 * row['saves_a_visit']:>21.1f}%{100 * row['caught']:>7.1f}%")
    return "\n".join(lines)


def render(result: dict[str, dict[str, dict[str, dict[str, float]]]]) -> str:
    lines = []
    head = f"{'group':<24}{'n':>8} | {'mean':>7}{'median':>8}{'p90':>7} | {'naive mean':>11}{'median':>8}{'p90':>7} | {'median ratio':>12}"
    for title, groups in result.items():
        lines.append("")
        lines.append(f"## {title}  (absolute error, days)")
        lines.append(head)
        lines.append("-" * len(head))
        for name, pair in groups.items():
            f, n = pair["forecast"], pair["naive"]
            ratio = f["median"] / n["median"] if n["median"] else math.nan
            lines.append(f"{name:<24}{f['n']:>8} | {f['mean']:>7.1f}{f['median']:>8.1f}{f['p90']:>7.1f} | "
                         f"{n['mean']:>11.1f}{n['median']:>8.1f}{n['p90']:>7.1f} | {ratio:>12.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=max(1, min(4, multiprocessing.cpu_count())))
    parser.add_argument("--timezone", default="Europe/Berlin")
    parser.add_argument("--json", type=Path, default=None, help="also write the tables as JSON here")
    args = parser.parse_args(argv)
    # Stale spare keys and rollbacks are part of the fleet; their warnings would drown the table.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    started = time.perf_counter()
    config = FleetConfig(vehicles=args.vehicles, seed=args.seed, site_timezone=args.timezone)
    fleet = simulate(config, args.jobs)
    simulated = time.perf_counter()
    settings = ForecastSettings(timezone=args.timezone)
    with tempfile.TemporaryDirectory(prefix="cbs-bench-") as tmp:
        samples, counters = evaluate(fleet, settings, Path(tmp))
    finished = time.perf_counter()
    readouts = sum(len(rs) for _, rs in fleet)
    result = tables(samples)
    print(f"fleet: {args.vehicles} vehicles, seed {args.seed}, {readouts} readouts, "
          f"{len(samples)} item forecasts with a known true due day")
    print(f"history: {counters}")
    print(f"time: simulate {simulated - started:.1f} s, forecast {finished - simulated:.1f} s")
    print(render(result))
    intervals = interval_table(samples)
    print(render_intervals(intervals))
    advice = advice_table(samples)
    print(render_advice(advice))
    later = result["by visit (items with remaining km)"].get("later visits")
    first = result["by visit (items with remaining km)"].get("first visit")
    if later and first:
        print()
        for name, pair in (("later visits", later), ("first visit", first)):
            ratio = pair["forecast"]["median"] / pair["naive"]["median"]
            print(f"target check, {name}: median {pair['forecast']['median']:.1f} d vs naive "
                  f"{pair['naive']['median']:.1f} d = {ratio:.2f} of naive")
    if args.json is not None:
        args.json.write_text(json.dumps({"vehicles": args.vehicles, "seed": args.seed,
                                         "readouts": readouts, "samples": len(samples),
                                         "history": counters, "tables": result,
                                         "intervals": intervals, "advice": advice}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
