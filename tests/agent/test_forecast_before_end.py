"""A readout's forecast made before its END frame (agent/pipeline.py ``prepare``, the service's
``_prepare_open_session``): once a session's data frames are all in, the agent forecasts it
from the vehicle's history while END is still on the wire, and the readout uses that forecast
only when it is exactly the one END would have made: the session END accepted is the one
previewed, the read date is the same, the history has not changed and its summary stands for
the moment of END. Otherwise the forecast is made again at END, as before.

Real parts throughout: the assembler, a vehicle history on SQLite with earlier visits, the
outbox; a scripted reader hands the service its reads (END in a later read than the data
frames, as on the wire)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from forecast_fixtures import at, visit
from test_service_batches import ScriptedReader

from agent.contract.topics import Topics
from agent.domain.forecast import ForecastSettings
from agent.domain.models import READOUT_SCHEMA, to_json
from agent.mqtt.publisher import MqttPublisher
from agent.mqtt.settings import MqttSettings
from agent.pipeline import ReadoutPipeline
from agent.service import AgentService
from agent.store.history import VehicleHistory
from agent.store.outbox import Outbox
from protocols.encoder import encode_session
from protocols.key_session import KeySession
from protocols.session import SessionAccepted, SessionAssembler

SETTINGS = ForecastSettings()


def _history_with_visits(path: Path, visits: int = 12) -> VehicleHistory:
    history = VehicleHistory(path)
    for n in range(visits):
        s = visit(n * 40, 10_000 + n * 1_600)
        history.record(s, at(s.vehicle.data_date), f"r{n}")
    return history


def _accepted(s: KeySession, t: float) -> tuple[SessionAccepted, KeySession]:
    """Assemble ``s``: the preview taken before END, and END's event."""
    frames = encode_session(s, start_time=t, frame_gap_s=0.001)
    assembler = SessionAssembler()
    for frame in frames[:-1]:
        assert assembler.feed(frame) == []
    preview = assembler.preview()
    (event,) = assembler.feed(frames[-1])
    assert isinstance(event, SessionAccepted) and preview is not None
    return event, preview


def _pipeline(history: VehicleHistory) -> ReadoutPipeline:
    return ReadoutPipeline(site="S1", reader="desk1", transport="can", forecast=SETTINGS,
                           history=history)


NOW = visit(12 * 40 + 35, 10_000 + 12 * 1_600 + 1_300)
END_AT = datetime.combine(NOW.vehicle.data_date, datetime.min.time(), UTC) + timedelta(hours=9)


def test_a_forecast_made_before_END_is_the_one_END_makes(tmp_path: Path) -> None:
    history = _history_with_visits(tmp_path / "h.sqlite3")
    try:
        event, preview = _accepted(NOW, END_AT.timestamp())
        assert event.session is preview
        early, late = _pipeline(history), _pipeline(history)
        early.prepare(preview, END_AT - timedelta(milliseconds=2))
        assert early.prepared_session is preview
        made_early = early.readout(event, END_AT)
        made_at_end = late.readout(event, END_AT)
        assert early.counters == {"prepared": 1, "prepared_used": 1}
        assert late.counters == {"prepared": 0, "prepared_used": 0}
        assert to_json(made_early) == to_json(made_at_end)
        assert made_early.estimate.km_per_day_basis == "history"  # the history was read
        assert early.prepared_session is None  # used once
    finally:
        history.close()


def test_a_forecast_made_before_END_is_dropped_when_it_might_differ(tmp_path: Path) -> None:
    history = _history_with_visits(tmp_path / "h.sqlite3")
    try:
        event, preview = _accepted(NOW, END_AT.timestamp())
        pipeline = _pipeline(history)

        # An equal session that is not the one previewed (a different read of the same key).
        pipeline.prepare(dataclasses.replace(preview), END_AT)
        pipeline.readout(event, END_AT)
        # END on the next day: the forecast counts from the read date.
        pipeline.prepare(preview, END_AT)
        pipeline.readout(event, END_AT + timedelta(days=1))
        # The history written in between (here: another readout of the vehicle).
        pipeline.prepare(preview, END_AT)
        history.record(visit(12 * 40 + 10, 10_000 + 12 * 1_600), END_AT - timedelta(hours=1),
                       "between")
        fresh = pipeline.readout(event, END_AT)
        assert pipeline.counters == {"prepared": 3, "prepared_used": 0}
        assert to_json(fresh) == to_json(_pipeline(history).readout(event, END_AT))

        # Another connection's commit (another process sharing the file) counts as a change.
        pipeline.prepare(preview, END_AT)
        with sqlite3.connect(history.path) as other:
            other.execute("DELETE FROM readings WHERE readout_id = 'between'")
        pipeline.readout(event, END_AT)
        assert pipeline.counters == {"prepared": 4, "prepared_used": 0}
    finally:
        history.close()


def test_no_forecast_is_prepared_that_would_depend_on_the_moment(tmp_path: Path) -> None:
    """The vehicle's newest readout was read after the moment given: the summary does not
    stand for it, so the forecast would read the readings as of that moment. None is made;
    END forecasts as always."""
    history = _history_with_visits(tmp_path / "h.sqlite3")
    try:
        event, preview = _accepted(NOW, END_AT.timestamp())
        pipeline = _pipeline(history)
        newest = at(visit(11 * 40, 0).vehicle.data_date)
        pipeline.prepare(preview, newest - timedelta(seconds=1))
        assert pipeline.prepared_session is None and pipeline.counters["prepared"] == 0
        assert to_json(pipeline.readout(event, END_AT)) == to_json(
            _pipeline(history).readout(event, END_AT))
    finally:
        history.close()


def _service(tmp_path: Path, reads: list, history: VehicleHistory, wall: float) -> AgentService:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    topics = Topics("cbs/v1", "S1", "desk1")
    return AgentService(
        reader=ScriptedReader(reads), assembler=SessionAssembler(), pipeline=_pipeline(history),
        outbox=outbox, publisher=MqttPublisher(MqttSettings(), outbox, topics), topics=topics,
        wall_clock=lambda: wall)


def _readouts(service: AgentService) -> list[dict]:
    rows = service.outbox.pending(limit=100)
    return [json.loads(r.payload) for r in rows
            if r.schema == READOUT_SCHEMA and r.topic == service.topics.readout]


def test_the_service_forecasts_before_END_and_publishes_the_same_readouts(tmp_path: Path) -> None:
    """Two reads of one vehicle, each with its END in the read after its data frames, the
    second right after the first (its earlier readout still waiting to be written to the
    history when its data frames are in): both are forecast before END, the second one sees
    the first in the history, and the payloads are those of an agent that forecast at END."""
    again = dataclasses.replace(NOW, session_seq=(NOW.session_seq + 1) % 256, vehicle=dataclasses.replace(
        NOW.vehicle, mileage_km=NOW.vehicle.mileage_km + 40))
    t = END_AT.timestamp()
    first = encode_session(NOW, start_time=t, frame_gap_s=0.001)
    second = encode_session(again, start_time=t + 0.2, frame_gap_s=0.001)
    # After a read that completes a session the loop reads on while the reader holds more;
    # the empty reads are the reader having nothing yet (the next frames are on the wire).
    split = [first[:-1], first[-1:], [], second[:-1], second[-1:], []]

    runs = []
    for name, reads in (("split", split), ("whole", [first, [], second])):
        (tmp_path / name).mkdir()
        history = _history_with_visits(tmp_path / name / "h.sqlite3")
        seen: list[int] = []  # earlier visits each forecast found
        readings = history.readings

        def spy(vin: str, readings=readings, seen=seen):  # type: ignore[no-untyped-def]
            got = readings(vin)
            seen.append(len(got))
            return got

        history.readings = spy  # type: ignore[method-assign]
        service = _service(tmp_path / name, [list(r) for r in reads], history, t + 0.3)
        try:
            for _ in range(len(reads) + 1):
                service.step(0.0)
            assert service.readouts == 2
            runs.append((service.pipeline.counters, _readouts(service), seen,
                         len(readings(NOW.vin))))
        finally:
            service.outbox.close()
            history.close()
    (split_counters, split_payloads, split_seen, split_kept), \
        (whole_counters, whole_payloads, whole_seen, whole_kept) = runs
    assert split_counters == {"prepared": 2, "prepared_used": 2}
    assert whole_counters == {"prepared": 0, "prepared_used": 0}  # END came with the frames
    assert split_payloads == whole_payloads
    # The second forecast saw the first readout in the history, both ways.
    assert split_seen == whole_seen == [12, 13]
    assert split_kept == whole_kept == 12 + 2


def test_no_slice_of_the_reminder_pass_while_a_key_is_read_or_its_readout_is_on_its_way(
        tmp_path: Path) -> None:
    """The loop runs the daily pass's slices only between key reads: none on a turn with a
    session open, none for ``PASS_AFTER_READOUT_S`` after a turn that stored a readout (the
    publisher, the broker and the subscriber move it then), and again after that."""
    from agent.service import PASS_AFTER_READOUT_S
    from agent.store.reminders import ReminderService

    history = _history_with_visits(tmp_path / "h.sqlite3")
    reminders = ReminderService(tmp_path / "r.sqlite3", site="S1", reader="desk1",
                                topic="cbs/v1/S1/desk1/reminder")
    polls: list[tuple[float, bool]] = []  # (monotonic time, a session open)
    poll = reminders.poll
    frames = encode_session(NOW, start_time=END_AT.timestamp(), frame_gap_s=0.001)
    service = _service(tmp_path, [frames[:-1], frames[-1:]], history, END_AT.timestamp() + 0.1)
    service.reminders = reminders

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        polls.append((time.monotonic(), service.assembler.in_session))
        return poll(*args, **kwargs)

    reminders.poll = spy  # type: ignore[method-assign]
    try:
        service.step(0.0)  # the data frames: a session open
        assert polls == [] and service.assembler.in_session
        before_end = time.monotonic()
        service.step(0.0)  # END: the readout stored (after before_end)
        assert service.readouts == 1 and polls == []
        deadline = before_end + 10 * PASS_AFTER_READOUT_S
        while time.monotonic() < deadline and not polls:
            service.step(0.0)  # the reader has nothing more
        assert polls, "the pass never got a turn after the readout"
        assert polls[0][0] >= before_end + PASS_AFTER_READOUT_S
        assert not any(open_ for _, open_ in polls)
    finally:
        service.outbox.close()
        reminders.close()
        history.close()
