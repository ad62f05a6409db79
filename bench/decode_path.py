"""Decode path: frames in, validated readout model out, no I/O — against bare cantools.

    python bench/decode_path.py [--sessions 500] [--rounds 7] [--history 5]

Stages, each timed over the frames (or sessions) of the same ``--sessions`` fleet sessions:

* ``bare cantools``: ``db.decode_message(id, data)`` for every frame of every session (the
  reference: cantools' own decode with its defaults, nothing else);
* ``decode path``: a ``SessionAssembler`` fed every frame (id filter, session rules,
  duplicates, CRC-32, DBC decode, value validation, ``KeySession``) and, for every accepted
  session, ``build_readout`` -> a validated ``Readout`` model (pydantic, every field checked).
  The forecast the readout carries is computed before the clock starts: it is not decoding.
* ``forecast + proposal`` (not decoding, reported per session): ``forecast_session`` with
  ``--history`` earlier readings of the vehicle, and the priced proposal;
* ``to_json`` (not decoding): the readout's wire JSON.

Rounds alternate the stages and the best round of each counts, so that a machine busy with
other work shifts all stages alike; the ratio is taken within the same run.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fleet_sessions, machine, result, table  # noqa: E402

TARGET_RATIO = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--history", type=int, default=5,
                        help="earlier readings per vehicle for the forecast stage")
    args = parser.parse_args(argv)

    from agent.cli import RUN_GC_THRESHOLDS
    from agent.contract.payloads import build_readout, event_time, readout_id
    from agent.domain.forecast import ForecastSettings, PastReading, forecast_session
    from agent.domain.models import to_json
    from agent.domain.proposal import default_proposal_context
    from dbc import key_reader_database
    from protocols.encoder import encode_session
    from protocols.session import SessionAccepted, SessionAssembler

    db = key_reader_database()
    settings = ForecastSettings()
    proposal = default_proposal_context()
    sessions = fleet_sessions(args.sessions, seed=5, vehicles=max(10, args.sessions // 4))
    frames = []
    for n, session in enumerate(sessions):
        frames.extend(encode_session(session, start_time=1.8e9 + n))
    n_frames = len(frames)

    # What the decode path needs that is not decoding: the forecast per session (by END time).
    assembler = SessionAssembler(db=db)
    accepted = [e for f in frames for e in assembler.feed(f) if isinstance(e, SessionAccepted)]
    assert len(accepted) == len(sessions), "every session must be accepted"
    forecasts = {}
    for event in accepted:
        moment = event_time(event.completed_at)
        forecasts[event.completed_at] = (moment,
                                         forecast_session(event.session, moment, [], settings))

    def bare() -> None:
        decode = db.decode_message
        for f in frames:
            decode(f.arbitration_id, f.data)

    built = [0]

    def decode_path() -> None:
        feed = SessionAssembler(db=db).feed
        count = 0
        for f in frames:
            for event in feed(f):
                if isinstance(event, SessionAccepted):
                    moment, forecast = forecasts[event.completed_at]
                    build_readout(event.session, site="bench", reader="desk1", transport="can",
                                  read_at=moment, forecast=forecast,
                                  readout_id=readout_id(event, site="bench", reader="desk1",
                                                        read_at=moment))
                    count += 1
        built[0] = count

    sessions_at = [(e, *forecasts[e.completed_at]) for e in accepted]

    def readout_only() -> None:
        for event, moment, forecast in sessions_at:
            build_readout(event.session, site="bench", reader="desk1", transport="can",
                          read_at=moment, forecast=forecast,
                          readout_id=readout_id(event, site="bench", reader="desk1",
                                                read_at=moment))

    def assembler_only() -> None:
        feed = SessionAssembler(db=db).feed
        for f in frames:
            feed(f)

    # Earlier readings of each vehicle: the same session read 60, 120, ... days before.
    histories = []
    for event in accepted:
        moment = event_time(event.completed_at)
        past = [PastReading.from_session(event.session, moment - timedelta(days=60 * k), f"h{k}")
                for k in range(args.history, 0, -1)]
        histories.append((event.session, moment, past))

    def forecast_proposal() -> None:
        for session, moment, past in histories:
            result_ = forecast_session(session, moment, past, settings)
            built = build_readout(session, site="bench", reader="desk1", transport="can",
                                  read_at=moment, forecast=result_, readout_id="x")
            proposal.propose(built.services, express_eligible=built.summary.express_eligible)

    def forecast_only() -> None:
        for session, moment, past in histories:
            forecast_session(session, moment, past, settings)

    def serialise() -> None:
        for readout in readouts:
            to_json(readout)

    readouts = [build_readout(e.session, site="bench", reader="desk1", transport="can",
                              read_at=forecasts[e.completed_at][0],
                              forecast=forecasts[e.completed_at][1], readout_id="x")
                for e in accepted]
    # Everything set up so far lives as long as the run, as the agent's modules do: keep it
    # out of the collector's way and collect as `cbs-agent run` does (agent/cli.py), for
    # every stage alike.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*RUN_GC_THRESHOLDS)

    stages = {"bare": bare, "path": decode_path, "assembler": assembler_only,
              "readout": readout_only,
              "forecast": forecast_only, "forecast+proposal": forecast_proposal,
              "json": serialise}
    decode_path()  # warm up
    assert built[0] == len(sessions)
    best = {name: float("inf") for name in stages}
    for _ in range(args.rounds):
        for name, stage in stages.items():
            started = time.perf_counter()
            stage()
            best[name] = min(best[name], time.perf_counter() - started)

    n = len(sessions)
    per_frame = n_frames / n
    ratio = best["bare"] / best["path"]
    print(f"decode path: {n} sessions, {n_frames} frames ({per_frame:.1f} per session), best of "
          f"{args.rounds} rounds; {machine()}")
    rows = [
        ("bare cantools db.decode_message (reference)", f"{n_frames / best['bare']:,.0f}",
         f"{best['bare'] / n_frames * 1e6:.2f}", f"{best['bare'] / n * 1e6:.0f}", "100%"),
        ("decode path: assembler -> KeySession -> Readout", f"{n_frames / best['path']:,.0f}",
         f"{best['path'] / n_frames * 1e6:.2f}", f"{best['path'] / n * 1e6:.0f}",
         f"{ratio:.0%}"),
        ("  of which assembler -> KeySession", f"{n_frames / best['assembler']:,.0f}",
         f"{best['assembler'] / n_frames * 1e6:.2f}", f"{best['assembler'] / n * 1e6:.0f}",
         f"{best['bare'] / best['assembler']:.0%}"),
        ("  of which KeySession -> Readout model (alone)", "", "",
         f"{best['readout'] / n * 1e6:.0f}", f"{best['bare'] / best['readout']:.0%}"),
        (f"not decoding: forecast ({args.history} past readings)", "", "",
         f"{best['forecast'] / n * 1e6:.0f}", ""),
        ("not decoding: forecast + readout + proposal", "", "",
         f"{best['forecast+proposal'] / n * 1e6:.0f}", ""),
        ("not decoding: readout to_json", "", "", f"{best['json'] / n * 1e6:.0f}", ""),
    ]
    table(rows, ["stage", "frames/s", "us/frame", "us/session", "vs bare"])
    result("decode path throughput vs bare cantools decode_message", ratio * 100, "%",
           f">= {TARGET_RATIO:.0%}", ratio >= TARGET_RATIO)
    result("forecast + proposal per session", best["forecast+proposal"] / n * 1e6, "us", "", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
