"""Service reminders: ``{prefix}/{site}/reminders`` when a known vehicle's item is about to
fall due (docs/reminders.md).

Two halves, as everywhere in the agent:

* :func:`plan_reminders` is pure: the vehicles' latest readouts, today, the ledger of
  reminders already sent and the settings in; the reminders to send out. Tests drive it over
  simulated days.
* :class:`ReminderService` is the thin I/O shell: it keeps, in ``reminders.sqlite3`` under the
  state directory, each vehicle's latest readout (the forecast as published, which the vehicle
  history cannot give back: it keeps no due months) and the ledger of reminders sent; once at
  start-up and then daily at a configured hour it plans and hands each reminder to the outbox
  through an injected ``put`` callable, then records it in the ledger.

What is one reminder: one per vehicle, item and *due event*. The due event is the item's
service cycle, identified by the key's service count: the forecast due date of the same cycle
moves a few days with every new readout, the count only changes when the service is done, and
then the next due event begins. ``reminder_id`` is ``{vin}-{index}-{code}-{service_count}``: the
same from every agent of the site and on every redelivery, so integrators deduplicate on it.

When: the early end of the item's interval (``due_date_early``, the day it may already fall
due) is at most ``window_days`` ahead of today (the site's time zone), and the due date is not
more than ``max_overdue_days`` behind it. Items whose early date was already inside the window
(or overdue) when the vehicle was read get no reminder for that cycle: the customer was at the
desk and the readout's proposal offered them. A readout kept from before the interval existed
has both ends at its due date, so it is planned as it was then.

Delivery: the ledger row is written after ``put`` returned, in its own transaction. A crash in
between can send one reminder twice (same ``reminder_id``), never lose one: at least once, as
the rest of the contract.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from agent.domain.forecast import ForecastSettings, read_date_of
from agent.domain.i18n import service_name
from agent.domain.models import (
    Readout,
    Reminder,
    ReminderItem,
    ServiceEntry,
    ServiceForecast,
    event_time,
)
from agent.domain.proposal import ProposalContext
from protocols.errors import CbsError

__all__ = [
    "ReminderError",
    "ReminderSettings",
    "next_pass_after",
    "plan_reminders",
    "reminder_id",
]



class ReminderError(CbsError):
    """The reminder store cannot be read or written (disk full, read-only, damaged)."""


class ReminderSettings(BaseModel):
    """The ``[reminders]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Publish {prefix}/{site}/reminders.")
    window_days: int = Field(30, ge=0, le=366,
                             description="Remind when the early end of an item's interval "
                                         "(due_date_early) is this many days away.")
    hour: int = Field(6, ge=0, le=23, description="Hour of the daily pass, site time zone "
                                                  "([forecast] timezone).")
    max_overdue_days: int = Field(
        30, ge=0, description="Never remind of a due date further in the past (the agent was off, "
                              "or the vehicle has not been back for long).")
    startup_delay_s: float = Field(
        0.0, ge=0, le=86_400, description="Start the start-up pass this long after the agent "
                                          "starts (0: at once), so it does not run while the "
                                          "agent and the disk warm up.")



def reminder_id(vin: str, index: int, code: int, service_count: int) -> str:
    """The due event's id: ``{vin}-{index}-{code}-{service_count}``."""
    return f"{vin}-{index}-{code}-{service_count}"


def next_pass_after(moment: datetime, hour: int, zone: ZoneInfo) -> datetime:
    """The first ``hour:00`` in ``zone`` strictly after ``moment`` (tz-aware), in UTC."""
    local = moment.astimezone(zone)
    day = local.date()
    candidate = datetime.combine(day, time(hour), tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(day + timedelta(days=1), time(hour), tzinfo=zone)
    return candidate.astimezone(timezone.utc)


def _express_allowed(readout: Readout, entry: ServiceEntry, forecast: ForecastSettings) -> bool:
    return (entry.type in forecast.express_types
            and not any(cc.status == "active" for cc in readout.check_control)
            and not any(dtc.confirmed for dtc in readout.dtcs))


def plan_reminders(vehicles: Iterable[Readout], *, now: datetime, sent: Container[str],
                   settings: ReminderSettings, forecast: ForecastSettings,
                   context: ProposalContext, site: str, reader: str) -> list[Reminder]:
    """The reminders due at ``now`` (tz-aware) for the vehicles' latest readouts, leaving out
    those whose id is in ``sent``. Pure and deterministic; ordered by due date, VIN, index."""
    today = read_date_of(now, forecast)
    created_at = event_time(now.timestamp())
    out: list[Reminder] = []
    for readout in vehicles:
        for entry in readout.services:
            published = entry.forecast
            if published is None:
                continue
            # Planned from the early end of the interval: a reminder ``window_days`` ahead of
            # the day the item may already fall due, not of the middle guess.
            early_shift = (published.due_date_early - published.due_date).days
            if published.days_left + early_shift <= settings.window_days:
                continue  # the desk's proposal offered it
            days_left = (published.due_date - today).days
            lead_days = days_left + early_shift
            if lead_days > settings.window_days or days_left < -settings.max_overdue_days:
                continue
            rid = reminder_id(readout.vehicle.vin, entry.index, entry.code, entry.service_count)
            if rid in sent:  # asked last: the ledger may be a store lookup
                continue
            # For the proposal the item is due now, whatever the horizon said at the desk.
            now_due = entry.model_copy(update={"forecast": ServiceForecast(
                status="overdue" if days_left < 0 else "due_soon", due_date=published.due_date,
                basis=published.basis, days_left=days_left, km_left=published.km_left,
                due_date_early=published.due_date_early,
                due_date_late=published.due_date_late)})
            proposal = context.propose(
                [now_due], express_eligible=_express_allowed(readout, entry, forecast))
            out.append(Reminder(
                reminder_id=rid, site=site, reader=reader, created_at=created_at,
                vin=readout.vehicle.vin, due_date=published.due_date, days_left=days_left,
                window_days=settings.window_days,
                service=ReminderItem(index=entry.index, type=entry.type, code=entry.code,
                                     name=service_name(entry.type, context.language),
                                     service_count=entry.service_count),
                forecast=published, readout_id=readout.readout_id, read_at=readout.read_at,
                mileage_km=readout.vehicle.mileage_km, proposal=proposal))
    out.sort(key=lambda r: (r.due_date, r.vin, r.service.index))
    return out
