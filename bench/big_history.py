"""A big, realistic state directory: years of a large dealer's visits, in the stores' own shape.

    python bench/big_history.py STATE_DIR [--vehicles 100000] [--years 10] [--seed 21]
                                          [--real 5000] [--outbox 0]

Writes ``history.sqlite3`` (agent/store/history.py: one row per visit), ``reminders.sqlite3``
(agent/store/reminders.py: each vehicle's latest readout, a ledger of reminders already sent)
and, with ``--outbox N``, ``outbox.sqlite3`` holding N queued messages (a broker outage).

How it stays fast (207–218 s for 100,000 vehicles and 2 million visits on the shared
2-core VM) and still realistic:

* the vehicles are a seeded simulator fleet (simulators/fleet.py), so the VINs are the ones
  ``cbs-sim serial --seed SEED --base-date DAY --vehicles N`` reads (N up to the history's;
  ``big_history.json`` in the state directory says SEED and DAY): a benchmark reading that
  fleet meets vehicles with years of history;
* each vehicle's latest visit is a real session of the fleet; the first ``--real`` vehicles
  get a real readout built by the agent's own pipeline (forecast, proposal), the others a
  copy of one of those with their own VIN, id and dates (every date shifted to their visit);
* earlier visits go back up to ``--years`` years, one to three a year (a few vehicles every
  month: fleet cars), with the mileage of the vehicle's yearly distance and each item's
  remaining distance and availability walked back with it; rows are written with
  ``executemany`` in one transaction per store, in the order the agent writes them (the
  visits by time), into the stores' indexes as they stand. Not indexes built once at the
  end: a built index has its pages full to the brim, where the agent's inserts, in the order
  visits come, leave them 89 % full, and a readout on full ones split a leaf of each
  (docs/performance.md, "Years at a busy site": 2c measured an index no appliance has);
* each vehicle's summary row (what the forecast reads, ``summaries`` in agent/store/history.py)
  is the domain's own ``summarize_history`` of its visits, as the agent writes it when it
  records a readout;
* the stores are created and then opened by their real classes (``VehicleHistory``,
  ``ReminderService``, ``Outbox``): the schema is theirs, and a few rows are read back
  through them as a check.

The stores keep what the agent would have kept with ``retention_days`` and
``max_per_vehicle`` (``--retention-days``, default ten years; ``--max-per-vehicle``, default
the agent's 50): a vehicle's older visits beyond the bound are not written.

Importable: :func:`build_state` is what tests and the other benchmarks call.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SENTINEL_KM = 524287  # "not available" on the wire: never walked back
_DATE_KEYS = frozenset({"due_date", "due_date_early", "due_date_late", "data_date"})


@dataclass(frozen=True)
class BuiltState:
    """What :func:`build_state` wrote."""

    state_dir: Path
    vehicles: int
    visits: int
    ledger: int
    outbox: int
    seconds: float

    def describe(self) -> str:
        return (f"{self.vehicles:,} vehicles, {self.visits:,} visits in the history, "
                f"{self.ledger:,} reminders in the ledger, {self.outbox:,} queued messages, "
                f"built in {self.seconds:.1f} s")


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _readout_id(moment: datetime, rng: random.Random) -> str:
    return moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z-{rng.getrandbits(48):012x}"


def _shift_dates(node: Any, days: int) -> Any:
    """A readout dict with every date field moved by ``days`` (the visit's own day)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _DATE_KEYS and isinstance(value, str):
                out[key] = (date.fromisoformat(value) + timedelta(days=days)).isoformat()
            else:
                out[key] = _shift_dates(value, days)
        return out
    if isinstance(node, list):
        return [_shift_dates(value, days) for value in node]
    return node


def _visit_days(rng: random.Random, years: int) -> list[int]:
    """Days before today of a vehicle's visits, newest first (the newest within a year)."""
    if rng.random() < 0.03:  # fleet cars: about monthly
        per_year = rng.uniform(8, 14)
    else:
        per_year = rng.uniform(1.5, 5.0)
    span = rng.randint(1, years) * 365
    day = rng.randint(0, 200)
    days = []
    while day <= span:
        days.append(day)
        day += max(7, int(rng.expovariate(per_year / 365)))
    return days


def fleet_of(state_dir: Path) -> dict[str, Any]:
    """What :func:`build_state` wrote to ``big_history.json``: seed, base_date, vehicles."""
    return dict(json.loads((state_dir / "big_history.json").read_text()))


def build_state(state_dir: Path, *, vehicles: int = 100_000, years: int = 10, seed: int = 21,
                real: int = 5000, outbox: int = 0, retention_days: int = 3650,
                max_per_vehicle: int = 50, site: str = "bench", reader: str = "lat",
                now: datetime | None = None, quiet: bool = False) -> BuiltState:
    """Fill ``state_dir`` (see the module docstring); returns what was written."""
    from agent.contract.topics import Topics
    from agent.domain.forecast import ForecastSettings, PastItem, PastReading, summarize_history
    from agent.domain.models import READOUT_SCHEMA, to_json, without_proposal
    from agent.pipeline import ReadoutPipeline
    from agent.store.history import VehicleHistory, pack_summary
    from agent.store.outbox import Outbox, OutboxMessage
    from agent.store.reminders import ReminderService, due_summary
    from protocols.session import SessionAccepted
    from simulators.fleet import Fleet, _ReadBuilder

    started = time.perf_counter()

    def say(text: str) -> None:
        if not quiet:
            print(f"  [{time.perf_counter() - started:6.1f} s] {text}", flush=True)

    now = now or datetime.now(UTC)
    today = now.date()
    state_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(seed, today, vehicle_count=vehicles)
    say(f"fleet of {vehicles:,} vehicles")
    pipeline = ReadoutPipeline(site=site, reader=reader, transport="serial",
                               forecast=ForecastSettings())
    real = max(1, min(real, vehicles))
    rng = random.Random(f"big-history/{seed}")
    templates: list[dict[str, Any]] = []
    history_rows: list[tuple[object, ...]] = []
    vehicle_rows: list[tuple[str, int, str, str]] = []
    ledger_rows: list[tuple[str, str, str, int]] = []
    summary_rows: list[tuple[str, int, int, bytes]] = []
    past: list[PastReading] = []
    settings = ForecastSettings()
    for number, vehicle in enumerate(fleet.vehicles):
        visits = _visit_days(rng, years)
        visits = [d for d in visits if d <= retention_days][:max_per_vehicle]
        latest_day = visits[0]
        latest_at = now - timedelta(days=latest_day, seconds=rng.randint(0, 36_000))
        if number < real:
            session = _ReadBuilder(fleet, vehicle, random.Random(f"{seed}/{vehicle.vin}")).build(
                seq=number & 0xFF)
            event = SessionAccepted(session, latest_at.timestamp(), 22, rng.getrandbits(32))
            readout = pipeline.readout(event, latest_at)
            wire = without_proposal(to_json(readout))
            templates.append({"json": json.loads(wire), "session": session})
            rid = readout.readout_id
            template = templates[-1]
        else:
            template = templates[number % real]
            rid = _readout_id(latest_at, rng)
            body = _shift_dates(template["json"], -latest_day)
            body["readout_id"] = rid
            body["read_at"] = latest_at.strftime("%Y-%m-%dT%H:%M:%S.") + \
                f"{latest_at.microsecond // 1000:03d}Z"
            body["vehicle"]["vin"] = vehicle.vin
            wire = json.dumps(body, separators=(",", ":"))
        services = (json.loads(wire) if number < real else body)["services"]
        vehicle_rows.append((vehicle.vin, _us(latest_at), wire, _due_column(services, vehicle.vin)))
        session = template["session"]
        # Earlier visits: the same items walked back by the distance driven since.
        base = PastReading.from_session(session, latest_at, rid)
        km_per_day = vehicle.annual_km / 365
        first_row = len(history_rows)
        for n, day in enumerate(visits):
            at = latest_at - timedelta(days=day - latest_day, seconds=rng.randint(0, 3600) if n else 0)
            # The template's key data is of about today; a visit ``day`` days ago carried the
            # data of then (before its read_at), so a key read today is newer than every visit
            # here unless the key itself is stale (the fleet's old key data, as at a desk).
            back_days = day
            back_km = int(back_days * km_per_day)
            items = []
            for item in base.items:
                remaining = item.remaining_km
                if remaining is not None and remaining != _SENTINEL_KM:
                    remaining = min(_SENTINEL_KM - 1, remaining + back_km)
                availability = item.availability_pct
                if availability is not None and availability <= 100:
                    availability = min(100, availability + back_days // 10)
                items.append([item.index, item.code, remaining, availability, item.service_count,
                              item.last_service_km])
            visit_rid = rid if n == 0 else _readout_id(at, rng)
            history_rows.append((visit_rid, vehicle.vin, _us(at), session.key_id,
                                 (session.vehicle.data_date - timedelta(days=back_days)).isoformat(),
                                 max(0, session.vehicle.mileage_km - back_km),
                                 json.dumps(items, separators=(",", ":"))))
            past.append(PastReading(visit_rid, vehicle.vin, at, session.key_id,
                                    session.vehicle.data_date - timedelta(days=back_days),
                                    max(0, session.vehicle.mileage_km - back_km),
                                    tuple(PastItem(*fields) for fields in items)))
        # The summary row the agent writes when it records a readout (the forecast's walk).
        vehicle_rows_us = [row[2] for row in history_rows[first_row:]]
        summary_rows.append((vehicle.vin, len(past), min(vehicle_rows_us),
                             pack_summary(summarize_history(past, vehicle.vin, settings))))
        past.clear()
        # What the daily passes before today sent: every item that came inside the window
        # before today (the agent's defaults: 30 days ahead, at most 30 days overdue), so
        # today's pass sends only what comes inside it today, as on any day of a running site.
        window, limit, floor = 30, (today + timedelta(days=30)).isoformat(), \
            (today - timedelta(days=30)).isoformat()
        for entry in services:
            published = entry.get("forecast")
            if not published:
                continue
            early, due = published["due_date_early"], published["due_date"]
            margin = published["days_left"] + (date.fromisoformat(early)
                                               - date.fromisoformat(due)).days
            if margin > window and early < limit and due >= floor:
                entered = datetime.combine(max(date.fromisoformat(early) - timedelta(days=window),
                                               latest_at.date()), datetime.min.time(), UTC)
                ledger_rows.append((f"{vehicle.vin}-{entry['index']}-{entry['code']}-"
                                    f"{entry['service_count']}", vehicle.vin, due,
                                    _us(entered.replace(hour=6))))
        # Reminders sent for earlier cycles of this vehicle's items.
        for index in range(rng.randint(0, 3)):
            sent_at = latest_at - timedelta(days=rng.randint(30, 900))
            ledger_rows.append((f"{vehicle.vin}-{index}-{rng.randint(1, 32)}-{rng.randint(0, 9)}",
                                vehicle.vin, (sent_at.date() + timedelta(days=30)).isoformat(),
                                _us(sent_at)))
        if number and number % 20_000 == 0:
            say(f"{number:,} vehicles, {len(history_rows):,} visits")
    say(f"{vehicles:,} vehicles, {len(history_rows):,} visits generated")

    # Create the files with the stores' own classes (schema, WAL, private modes), then write
    # the rows directly: one transaction, no fsync, the visits in time order as they came.
    history_path = state_dir / "history.sqlite3"
    reminders_path = state_dir / "reminders.sqlite3"
    VehicleHistory(history_path, retention_days=retention_days,
                   max_per_vehicle=max_per_vehicle).close()
    ReminderService(reminders_path, site=site, reader=reader, topic="t",
                    retention_days=retention_days).close()
    history_rows.sort(key=lambda row: (row[2], row[0]))  # read_at_us, readout_id
    _bulk(history_path, history_rows,
          "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)")
    _bulk(history_path, summary_rows,  # after the readings: their triggers
          "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?)")  # stale summaries
    say(f"history written ({history_path.stat().st_size / 1e6:,.0f} MB)")
    _bulk(reminders_path, [row[:3] for row in vehicle_rows],
          "INSERT OR REPLACE INTO vehicles (vin, read_at_us, readout) VALUES (?, ?, ?)")
    _bulk(reminders_path, [(vin, due) for vin, _, _, due in vehicle_rows],
          "INSERT OR REPLACE INTO vehicle_due (vin, due) VALUES (?, ?)")
    _bulk(reminders_path, ledger_rows,
          "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?)")
    say(f"reminder store written ({reminders_path.stat().st_size / 1e6:,.0f} MB)")

    queued = 0
    if outbox:
        topics = Topics("cbs/v1", site, reader)
        box = Outbox(state_dir / "outbox.sqlite3", max_messages=max(100_000, outbox))
        try:
            batch: list[OutboxMessage] = []
            for n in range(outbox):
                _, _, wire, _ = vehicle_rows[n % len(vehicle_rows)]
                original = json.loads(wire)["readout_id"]
                rid = f"{original}-{n}"  # each queued message its own id: order is checkable
                payload = wire.replace(original, rid, 1).encode()
                batch.append(OutboxMessage(topics.readout, payload, False, READOUT_SCHEMA, rid))
                if len(batch) == 500:
                    box.put_many(batch)
                    batch = []
            if batch:
                box.put_many(batch)
            queued = box.depth()
        finally:
            box.close()
        say(f"outbox: {queued:,} queued messages")

    # Read back through the real classes: the files are what the agent writes.
    with VehicleHistory(history_path, retention_days=retention_days,
                        max_per_vehicle=max_per_vehicle) as history:
        for vin, *_ in (vehicle_rows[0], vehicle_rows[-1]):
            if not history.readings(vin):
                raise RuntimeError(f"history of {vin} unreadable")
    with ReminderService(reminders_path, site=site, reader=reader, topic="t",
                         retention_days=retention_days) as store:
        for vin, _, _, due in (vehicle_rows[0], vehicle_rows[-1]):
            kept = store.latest(vin)
            if kept is None or due_summary(kept) != due:
                raise RuntimeError(f"kept readout of {vin} unreadable or its due dates wrong")
            row = store._conn.execute("SELECT due FROM vehicle_due WHERE vin = ?",  # noqa: SLF001
                                      (vin,)).fetchone()
            if row is None or row[0] != due:
                raise RuntimeError(f"due dates of {vin} not kept")
    # What a benchmark needs to read the same fleet: cbs-sim --seed S --base-date D.
    (state_dir / "big_history.json").write_text(json.dumps(
        {"seed": seed, "base_date": today.isoformat(), "vehicles": vehicles,
         "retention_days": retention_days, "max_per_vehicle": max_per_vehicle}) + "\n")
    seconds = time.perf_counter() - started
    say("checked with VehicleHistory, ReminderService" + (", Outbox" if outbox else ""))
    return BuiltState(state_dir, vehicles, len(history_rows), len(ledger_rows), queued, seconds)


def _due_column(services: list[dict[str, Any]], vin: str) -> str:
    """agent/store/reminders.py's ``due_summary`` on the readout's JSON (checked against it
    for two vehicles after writing)."""
    items = []
    for entry in services:
        published = entry.get("forecast")
        if published:
            early, due = date.fromisoformat(published["due_date_early"]), \
                date.fromisoformat(published["due_date"])
            items.append([early.isoformat(), due.isoformat(),
                          published["days_left"] + (early - due).days,
                          f"{vin}-{entry['index']}-{entry['code']}-{entry['service_count']}"])
    return json.dumps(items, separators=(",", ":"))


def _bulk(path: Path, rows: list[tuple[Any, ...]], sql: str) -> None:
    """``rows`` by ``sql`` in one transaction without fsync, through its indexes (the
    store's schema is the one its class created)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--seed", type=int, default=21,
                        help="the fleet's seed (cbs-sim --seed) so its VINs have history")
    parser.add_argument("--real", type=int, default=5000,
                        help="vehicles whose latest readout the pipeline builds (the rest copy one)")
    parser.add_argument("--outbox", type=int, default=0, help="queued messages to leave")
    parser.add_argument("--retention-days", type=int, default=3650)
    parser.add_argument("--max-per-vehicle", type=int, default=50)
    args = parser.parse_args(argv)
    from _common import machine

    print(f"big history: {args.vehicles:,} vehicles, up to {args.years} years; {machine()}")
    built = build_state(args.state_dir, vehicles=args.vehicles, years=args.years, seed=args.seed,
                        real=args.real, outbox=args.outbox, retention_days=args.retention_days,
                        max_per_vehicle=args.max_per_vehicle)
    print(built.describe())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
