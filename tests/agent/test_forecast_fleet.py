"""The fleet-over-time simulator and a small run of the accuracy bench.

The simulator must give valid sessions (they survive the encoder and the session assembler),
be reproducible, keep its truth consistent with the key, and stay out of agent/. The small
bench run checks the forecast beats the naive one on a few dozen vehicles; the full figures
come from ``python bench/forecast_accuracy.py`` (docs/forecast.md).
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import logging
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agent.domain.forecast import ForecastSettings, last_day_of_month
from protocols.encoder import encode_session
from protocols.key_session_json import session_from_dict
from protocols.session import SessionAccepted, SessionAssembler
from simulators.fleet_over_time import FleetConfig, add_fleet_subcommand, simulate_vehicle

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import forecast_accuracy

CONFIG = FleetConfig(vehicles=30, seed=3)


@pytest.fixture(scope="module")
def fleet():
    return [simulate_vehicle(i, CONFIG) for i in range(CONFIG.vehicles)]


def test_simulator_does_not_import_agent() -> None:
    tree = ast.parse((ROOT / "simulators" / "fleet_over_time.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.split(".")[0] == "agent" for m in modules), modules


def test_reproducible() -> None:
    assert simulate_vehicle(4, CONFIG) == simulate_vehicle(4, CONFIG)
    assert simulate_vehicle(4, CONFIG)[1] != simulate_vehicle(4, FleetConfig(seed=4))[1]


def test_sessions_are_valid_on_the_wire(fleet) -> None:
    readouts = [r for _, rs in fleet for r in rs]
    assert len(readouts) > 100
    for r in readouts[::7]:
        assembler = SessionAssembler()
        events = [e for f in encode_session(r.session) for e in assembler.feed(f)]
        assert len(events) == 1 and isinstance(events[0], SessionAccepted), events
        assert events[0].session == r.session


def test_readouts_are_realistic(fleet) -> None:
    readouts = [r for _, rs in fleet for r in rs]
    assert {r.visit for r in readouts} == {"service", "tyres", "repair"}
    assert any(r.moment == "delivery" for r in readouts)
    assert any(r.spare_key for r in readouts)
    for (_, rs) in fleet:
        times = [r.read_at for r in rs]
        assert times == sorted(times)
        assert all(CONFIG.start <= r.read_at.date() <= CONFIG.end + timedelta(days=1) for r in rs)


def test_truth_agrees_with_the_key(fleet) -> None:
    for _, readouts in fleet:
        for r in readouts:
            data_date = r.session.vehicle.data_date
            for it in r.session.services:
                truth = r.true_due[it.index]
                if it.due_month is not None and truth is not None:
                    assert truth <= last_day_of_month(it.due_year, it.due_month)
                if it.remaining_km is None:
                    if it.due_month is not None:
                        assert truth == last_day_of_month(it.due_year, it.due_month)
                    continue
                if truth is None:
                    continue
                if it.remaining_km <= -50:
                    assert truth <= data_date
                elif it.remaining_km >= 50 and it.type.value.startswith("engine"):
                    assert truth > data_date


def test_delivery_readout_shows_the_service(fleet) -> None:
    pairs = [(a, b) for _, rs in fleet for a, b in itertools.pairwise(rs) if b.moment == "delivery"]
    assert pairs
    for reception, delivery in pairs:
        counts = [(x.service_count, y.service_count) for x, y in
                  zip(reception.session.services, delivery.session.services)]
        assert any(after == before + 1 or after == 31 for before, after in counts)


def test_cli_hook_writes_sessions_and_truth(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_fleet_subcommand(parser.add_subparsers(dest="command"))
    out, dump = tmp_path / "fleet.jsonl", tmp_path / "fleet.log"
    args = parser.parse_args(["fleet-over-time", "--vehicles", "3", "--seed", "2", "--out", str(out),
                              "--candump", str(dump)])
    assert args.func(args) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = sorted((r for i in range(3) for r in simulate_vehicle(i, FleetConfig(vehicles=3, seed=2))[1]),
                      key=lambda r: (r.read_at, r.readout_id))
    assert [session_from_dict(line["session"]) for line in lines] == [r.session for r in expected]
    assert lines[0]["true_due"] == {str(i): None if d is None else d.isoformat()
                                    for i, d in expected[0].true_due.items()}
    frames = dump.read_text().splitlines()
    assert frames[0].split()[2].startswith("6F0#")
    assert sum(line.split()[2].startswith("6FF#") for line in frames) == len(lines)


def test_small_bench_beats_the_naive_forecast(fleet, tmp_path: Path) -> None:
    logging.getLogger("agent.store.history").setLevel(logging.ERROR)
    try:
        samples, counters = forecast_accuracy.evaluate(fleet, ForecastSettings(timezone="Europe/Berlin"),
                                                       tmp_path)
    finally:
        logging.getLogger("agent.store.history").setLevel(logging.NOTSET)
    assert counters["recorded"] == sum(len(rs) for _, rs in fleet)
    table = forecast_accuracy.tables(samples)["by visit (items with remaining km)"]
    for visit in ("first visit", "later visits"):
        ours, naive = table[visit]["forecast"], table[visit]["naive"]
        assert ours["median"] < naive["median"] * 0.6, (visit, ours, naive)
        assert ours["mean"] < naive["mean"], (visit, ours, naive)


def test_next_visit_is_the_following_reception_day(fleet) -> None:
    for _, readouts in fleet:
        receptions = [r.read_at.date() for r in readouts if r.moment == "reception"]
        for r in readouts:
            later = [d for d in receptions if d > r.read_at.date()]
            assert r.next_visit == (later[0] if later else None)


def test_small_bench_prints_the_interval_and_the_advice(fleet, tmp_path: Path) -> None:
    logging.getLogger("agent.store.history").setLevel(logging.ERROR)
    try:
        samples, _ = forecast_accuracy.evaluate(fleet, ForecastSettings(timezone="Europe/Berlin"),
                                                tmp_path)
    finally:
        logging.getLogger("agent.store.history").setLevel(logging.NOTSET)
    intervals = forecast_accuracy.interval_table(samples)
    # Thirty vehicles are too few to calibrate on; the interval still holds most true days.
    for name in ("engine_oil / later", "all / later"):
        assert 0.6 <= intervals[name]["coverage"] <= 0.97, (name, intervals[name])
    assert "coverage" in forecast_accuracy.render_intervals(intervals)
    advice = forecast_accuracy.advice_table(samples)
    assert advice["all / early date"]["offered"] >= advice["all / due date"]["offered"]
    assert "next visit" in forecast_accuracy.render_advice(advice)
