"""Service reminders fire exactly once per vehicle, item and due event: over simulated months,
across restarts, through a real outbox. The clock is injected; nothing sleeps."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from spec_example import END_EPOCH_S, spec_frames

import agent.store.reminders as reminders_module
from agent.contract.topics import reminders_topic
from agent.domain.forecast import ForecastSettings
from agent.domain.models import REMINDER_SCHEMA, Readout, Reminder
from agent.domain.proposal import ProposalContext
from agent.domain.reminders import ReminderSettings, next_pass_after, plan_reminders, reminder_id
from agent.errors import OutboxError
from agent.pipeline import ReadoutPipeline
from agent.store.outbox import Outbox
from agent.store.reminders import ReminderService
from protocols.key_session import KeySession, ServiceItem
from protocols.session import SessionAccepted, SessionAssembler

UTC = timezone.utc
TOPIC = "cbs/v1/S1/reminders"
VIN = "WBA8E5107FK123456"
READ_AT = datetime(2026, 11, 27, 9, 15, 2, 123000, tzinfo=UTC)


def spec_session() -> KeySession:
    assembler = SessionAssembler()
    (event,) = [e for frame in spec_frames() for e in assembler.feed(frame)]
    assert isinstance(event, SessionAccepted)
    return event.session


def readout_of(session: KeySession, read_at: datetime) -> Readout:
    pipeline = ReadoutPipeline(site="S1", reader="desk1", transport="serial",
                               forecast=ForecastSettings())
    return pipeline.readout(SessionAccepted(session, read_at.timestamp(), 10, 0x1234ABCD), read_at)


def spec_readout() -> Readout:
    readout = readout_of(spec_session(), READ_AT)
    assert readout.read_at.timestamp() == pytest.approx(END_EPOCH_S)
    return readout


def serviced(session: KeySession, *, data_date: date, mileage_km: int, oil_count: int,
             oil_remaining_km: int) -> KeySession:
    """The same car later: driven, and perhaps with its oil changed (count up)."""
    oil, fluid = session.services
    return dataclasses.replace(
        session, vehicle=dataclasses.replace(session.vehicle, data_date=data_date,
                                             mileage_km=mileage_km),
        services=(dataclasses.replace(oil, service_count=oil_count, remaining_km=oil_remaining_km,
                                      availability_pct=60, due_year=data_date.year + 2),
                  fluid))


def due(readout: Readout, index: int) -> tuple[date, int]:
    forecast = readout.services[index].forecast
    assert forecast is not None
    return forecast.due_date, forecast.days_left


def early(readout: Readout, index: int) -> date:
    """The early end of the item's interval, which reminders are planned from."""
    forecast = readout.services[index].forecast
    assert forecast is not None
    return forecast.due_date_early


class Recorder:
    """The outbox commit the service loop would pass: remembers what was put, and when."""

    def __init__(self) -> None:
        self.now: datetime | None = None
        self.sent: list[tuple[datetime, str, Reminder]] = []

    def __call__(self, topic: str, payload: bytes, retain: bool, schema: str, message_id: str) -> None:
        assert retain is False and schema == REMINDER_SCHEMA and topic == TOPIC
        reminder = Reminder.model_validate_json(payload)
        assert reminder.reminder_id == message_id
        assert self.now is not None
        self.sent.append((self.now, message_id, reminder))


def open_service(state: Path, **settings: object) -> ReminderService:
    return ReminderService(state / "reminders.sqlite3", site="S1", reader="desk1", topic=TOPIC,
                           settings=ReminderSettings(**settings), forecast=ForecastSettings())


def hours(start: datetime, end: datetime) -> list[datetime]:
    out = []
    moment = start
    while moment < end:
        out.append(moment)
        moment += timedelta(hours=1)
    return out


def test_exactly_once_per_due_event_over_months_and_restarts(tmp_path: Path) -> None:
    first = spec_readout()
    oil_due, oil_days = due(first, 0)
    oil_early = early(first, 0)
    fluid_due, fluid_days = due(first, 1)
    # Both items are outside the 30-day window at the desk: each gets one reminder later.
    assert oil_days > 30 and fluid_days > 30, "precondition on the forecast"

    # Four months later the car is back: oil changed (count 4 -> 5), 3,000 km to the next one.
    second_at = datetime(2027, 1, 25, 10, 0, tzinfo=UTC)
    second = readout_of(serviced(spec_session(), data_date=date(2027, 1, 24), mileage_km=50_500,
                                 oil_count=5, oil_remaining_km=3000), second_at)
    new_oil_due, new_oil_days = due(second, 0)
    new_oil_early = early(second, 0)
    assert new_oil_days > 30 and new_oil_due < date(2027, 6, 1), "precondition on the forecast"
    assert due(second, 1)[0] == fluid_due  # the same brake-fluid due event

    restarts = {datetime.combine(oil_early - timedelta(days=30), datetime.min.time(),
                                 UTC).replace(hour=7),      # the day the oil reminder went out
                datetime(2027, 1, 25, 10, 0, tzinfo=UTC),   # right after the second readout
                datetime(2027, 3, 1, 7, 0, tzinfo=UTC)}     # just after the brake-fluid one
    put = Recorder()
    service = open_service(tmp_path)
    service.observe(first)
    restarted = 0
    try:
        for now in hours(datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
                         datetime(2027, 6, 1, tzinfo=UTC)):
            if now in restarts:
                service.close()
                service = open_service(tmp_path)
                restarted += 1
            if now == second_at:
                service.observe(second)
                service.observe(first)  # a late, older readout must not replace the newer one
            put.now = now
            service.poll(now, put)
    finally:
        service.close()

    assert restarted == len(restarts)
    assert [(at, rid) for at, rid, _ in put.sent] == [
        # At the first daily pass (06:00 UTC) on the day the early date is 30 days away.
        (datetime.combine(oil_early - timedelta(days=30), datetime.min.time(), UTC).replace(hour=6),
         f"{VIN}-0-1-4"),
        (datetime.combine(fluid_due - timedelta(days=30), datetime.min.time(), UTC).replace(hour=6),
         f"{VIN}-1-3-1"),
        (datetime.combine(new_oil_early - timedelta(days=30), datetime.min.time(), UTC).replace(hour=6),
         f"{VIN}-0-1-5"),
    ]
    oil = put.sent[0][2]
    lead = 30 + (oil_due - oil_early).days  # days to the due date when the early one is 30 away
    assert (oil.vin, oil.due_date, oil.days_left, oil.window_days) == (VIN, oil_due, lead, 30)
    assert oil.readout_id == first.readout_id and oil.forecast == first.services[0].forecast
    assert oil.service.name == "Engine oil and filter" and oil.service.service_count == 4
    # The proposal for that item alone, at catalogue prices (see test_proposal_pricing.py).
    (item,) = oil.proposal.required
    assert oil.proposal.optional == []
    assert (item.type, item.status, item.days_left, item.note) == (
        "engine_oil", "due_soon", lead, f"due in {lead} days")
    assert oil.proposal.totals.gross == Decimal("229.65")
    fluid = put.sent[1][2]
    assert fluid.readout_id == second.readout_id  # planned from the newest readout
    assert fluid.proposal.totals.net == Decimal("102.50")


def test_reminders_go_through_a_real_outbox_once(tmp_path: Path) -> None:
    readout = spec_readout()
    oil_due, _ = due(readout, 0)
    when = datetime.combine(oil_due - timedelta(days=20), datetime.min.time(), UTC).replace(hour=8)
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        def put(topic: str, payload: bytes, retain: bool, schema: str, message_id: str) -> None:
            outbox.put(topic, payload, retain=retain, schema=schema, message_id=message_id)

        for _ in range(2):  # two agent lifetimes, each with its start-up pass
            with open_service(tmp_path) as service:
                service.observe(readout)
                service.poll(when, put)
                service.poll(when + timedelta(days=1), put)
        entries = outbox.pending()
    (entry,) = entries
    assert (entry.topic, entry.retain, entry.schema, entry.message_id) == (
        "cbs/v1/S1/reminders", False, "cbs.reminder/1", f"{VIN}-0-1-4")
    payload = json.loads(entry.payload)
    assert payload["schema"] == "cbs.reminder/1" and payload["days_left"] == 20
    assert payload["proposal"]["totals"]["gross"] == "229.65"  # decimal strings on the wire
    assert payload["created_at"].endswith("Z")


def test_planner_rules() -> None:
    readout = spec_readout()
    oil_due, _ = due(readout, 0)
    oil_early = early(readout, 0)
    context = ProposalContext()

    def plan(today: date, sent: set[str] = frozenset(), **settings: object) -> list[str]:  # type: ignore[assignment]
        now = datetime.combine(today, datetime.min.time(), UTC).replace(hour=12)
        return [r.reminder_id for r in plan_reminders(
            [readout], now=now, sent=sent, settings=ReminderSettings(**settings),
            forecast=ForecastSettings(), context=context, site="S1", reader="desk1")]

    oil = reminder_id(VIN, 0, 1, 4)
    # Planned from the early date (38 days after the read date here, the due date 53).
    assert plan(oil_early - timedelta(days=31)) == []
    assert plan(oil_early - timedelta(days=30)) == [oil]
    assert plan(oil_early - timedelta(days=30), sent={oil}) == []
    assert plan(oil_early - timedelta(days=35), window_days=35) == [oil]
    # Agent off for a while: a due date in the recent past is still reminded, an old one not.
    assert plan(oil_due + timedelta(days=30)) == [oil]
    assert plan(oil_due + timedelta(days=31)) == []
    # With a window wider than the distance to the due date at the desk, the desk's proposal
    # covered the item: no reminder for this cycle.
    assert plan(oil_early - timedelta(days=30), window_days=200) == []


def test_poll_schedule_and_failure_retry(tmp_path: Path) -> None:
    readout = spec_readout()
    oil_due, _ = due(readout, 0)
    start = datetime.combine(oil_due - timedelta(days=10), datetime.min.time(), UTC).replace(hour=9)
    attempts = []

    def failing_put(topic: str, payload: bytes, retain: bool, schema: str, message_id: str) -> None:
        attempts.append(message_id)
        raise OutboxError("outbox: disk full")

    put = Recorder()
    with open_service(tmp_path, hour=6) as service:
        service.observe(readout)
        assert service.next_pass is None
        assert service.poll(start, failing_put) == 0  # logged, not raised
        assert attempts == [f"{VIN}-0-1-4"]
        assert service.next_pass == start + timedelta(minutes=5)
        put.now = start + timedelta(minutes=4)
        assert service.poll(put.now, put) == 0  # not yet
        put.now = start + timedelta(minutes=5)
        assert service.poll(put.now, put) == 1
        assert service.next_pass == start.replace(hour=6) + timedelta(days=1)
    assert len(put.sent) == 1

    with open_service(tmp_path, enabled=False) as off:
        assert off.poll(start, failing_put) == 0 and len(attempts) == 1


def test_vehicles_not_seen_for_the_retention_period_are_forgotten(tmp_path: Path) -> None:
    with ReminderService(tmp_path / "r.sqlite3", site="S1", reader="desk1", topic=TOPIC,
                         retention_days=30) as service:
        service.observe(spec_readout())
        service.mark_sent(Reminder.model_construct(reminder_id="x", vin=VIN,
                                                   due_date=date(2027, 1, 1)), READ_AT)
        assert service.prune(READ_AT + timedelta(days=29)) == 0
        assert service.prune(READ_AT + timedelta(days=31)) == 2
        assert service.vehicles() == [] and service.sent_ids() == set()


@pytest.mark.parametrize(("moment", "expected"), [
    (datetime(2027, 1, 10, 5, 59, tzinfo=UTC), datetime(2027, 1, 10, 6, 0, tzinfo=UTC)),
    (datetime(2027, 1, 10, 6, 0, tzinfo=UTC), datetime(2027, 1, 11, 6, 0, tzinfo=UTC)),
])
def test_next_pass_utc(moment: datetime, expected: datetime) -> None:
    assert next_pass_after(moment, 6, ZoneInfo("UTC")) == expected


def test_next_pass_follows_the_site_clock_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 06:00 CET is 05:00 UTC; on 28 March 2027 clocks go forward, 06:00 CEST is 04:00 UTC.
    assert next_pass_after(datetime(2027, 3, 27, 4, 59, tzinfo=UTC), 6, berlin) == \
        datetime(2027, 3, 27, 5, 0, tzinfo=UTC)
    assert next_pass_after(datetime(2027, 3, 27, 5, 0, tzinfo=UTC), 6, berlin) == \
        datetime(2027, 3, 28, 4, 0, tzinfo=UTC)


def test_topic() -> None:
    assert reminders_topic("cbs/v1", "S1") == TOPIC
    with pytest.raises(ValueError):
        reminders_topic("cbs/v1", "S 1")


def test_service_item_shape_is_unchanged() -> None:
    # serviced() relies on the session's service items carrying these fields.
    assert {"service_count", "remaining_km", "availability_pct"} <= {
        f.name for f in dataclasses.fields(ServiceItem)}


def test_a_large_site_is_planned_in_batches_with_the_same_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pass reads the vehicles a batch at a time and asks the ledger per candidate (a
    site keeps tens of thousands of vehicles): the reminders are those of the all-at-once
    plan, sent ones left out."""
    session = spec_session()
    readouts = []
    for n in range(45):  # the same car under 45 VINs, read on different days
        vin = f"WBA8E5107FK{n:06d}"
        moment = READ_AT - timedelta(days=n * 3)
        readouts.append(readout_of(dataclasses.replace(session, vin=vin), moment))
    now = datetime(2027, 2, 15, 7, 0, tzinfo=UTC)
    monkeypatch.setattr(reminders_module, "VEHICLE_BATCH", 7)
    with open_service(tmp_path) as service:
        service.observe_many(readouts)
        assert [r.vehicle.vin for r in service.iter_vehicles()] == sorted(
            r.vehicle.vin for r in readouts)
        everything = plan_reminders(service.vehicles(), now=now, sent=set(),
                                    settings=service.settings, forecast=service.forecast,
                                    context=service.context, site="S1", reader="desk1")
        assert len(everything) > 10, "precondition: many reminders are due"
        for reminder in everything[::3]:
            service.mark_sent(reminder, now)
        expected = [r for r in everything if r.reminder_id not in service.sent_ids()]
        assert [r.reminder_id for r in service.due(now)] == [r.reminder_id for r in expected]


def test_the_ledger_commits_with_an_fsync_and_kept_readouts_without(tmp_path: Path) -> None:
    """Kept readouts are an aid, rewritten at every read (NORMAL, as the history); the ledger
    decides whether a reminder goes out twice (FULL): each transaction sets its own mode."""
    def synchronous(service: ReminderService) -> int:
        return int(service._conn.execute("PRAGMA synchronous").fetchone()[0])

    with open_service(tmp_path) as service:
        service.observe(spec_readout())
        assert synchronous(service) == 1  # NORMAL
        service.mark_sent(Reminder.model_construct(reminder_id="x", vin=VIN,
                                                   due_date=date(2027, 1, 1)), READ_AT)
        assert synchronous(service) == 2  # FULL
        assert service.sent_ids() == {"x"} and len(service.vehicles()) == 1


def test_a_readout_kept_before_the_interval_is_planned_from_its_due_date() -> None:
    """Readouts the reminder store kept from an earlier version have no interval: both ends are
    read as the due date, so they are planned as before."""
    readout = spec_readout()
    text = readout.model_dump_json(by_alias=True)
    old = json.loads(text)
    for entry in old["services"]:
        del entry["forecast"]["due_date_early"], entry["forecast"]["due_date_late"]
    kept = Readout.model_validate(old)
    oil_due, _ = due(kept, 0)
    assert early(kept, 0) == oil_due

    def plan(today: date) -> list[str]:
        now = datetime.combine(today, datetime.min.time(), UTC).replace(hour=12)
        return [r.reminder_id for r in plan_reminders(
            [kept], now=now, sent=set(), settings=ReminderSettings(), forecast=ForecastSettings(),
            context=ProposalContext(), site="S1", reader="desk1")]

    assert plan(oil_due - timedelta(days=31)) == []
    assert plan(oil_due - timedelta(days=30)) == [reminder_id(VIN, 0, 1, 4)]
