"""What the desk knows, fed by ``(topic, payload)`` in arrival order: sans-IO, no threads.

The desk subscribes like any integrator (docs/integrators.md) to one site's topics:

=============================================  ===================================================
topic (below ``{prefix}/{site}/``)             kept as
=============================================  ===================================================
``{reader}/readout``, ``vehicles/{vin}``       the vehicle's latest readout; older ones are its
                                               earlier visits (deduplicated on ``readout_id``)
``{reader}/diagnosis``,                        the vehicle's latest ``cbs.diagnosis/1`` report
``vehicles/{vin}/diagnosis``                   (deduplicated on ``diagnosis_id``)
``reminders``                                  the vehicle's reminders (``reminder_id``)
``{reader}/approval``                          approvals recorded at any desk (``approval_id``)
``{reader}/status``                            each agent's state, and when it was last heard
=============================================  ===================================================

Payloads are read as plain JSON (``.get``), the same reading as ``cbs-agent watch``: a later
compatible payload only adds keys, and the desk keeps working with them. Anything that is
not a JSON object on one of these topics is counted in :attr:`DeskState.ignored`.
Memory is bounded: at most :data:`MAX_VEHICLES` vehicles (the least recently read go first),
:data:`MAX_VISITS` earlier visits and :data:`MAX_REMINDERS` reminders per vehicle.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["AgentView", "DeskState", "VehicleRecord", "model_year", "parse_time"]

MAX_VEHICLES = 2000
MAX_VISITS = 20
MAX_REMINDERS = 20
SEEN_IDS = 4096
STATUS_STALE_S = 95.0  # three missed status intervals (30 s) and a little: the agent is away


def parse_time(stamp: object) -> datetime | None:
    """A payload timestamp (``2026-11-27T09:15:02.123Z``) as an aware UTC datetime."""
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"


def model_year(vin: str, build_month: str | None, today: date) -> int | None:
    """The model year from the VIN's 10th character (ISO 3779; the code repeats every 30
    years): the year nearest the build month, else the latest not after next year."""
    if len(vin) != 17 or vin[9] not in _YEAR_CODES:
        return None
    base = 1980 + _YEAR_CODES.index(vin[9])
    candidates = [base + 30 * k for k in range(4)]
    if build_month and build_month[:4].isdigit():
        built = int(build_month[:4])
        return min(candidates, key=lambda year: abs(year - built - 0.5))
    fitting = [year for year in candidates if year <= today.year + 1]
    return max(fitting) if fitting else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class VehicleRecord:
    vin: str
    latest: dict[str, Any]
    visits: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_VISITS))
    diagnosis: dict[str, Any] | None = None
    reminders: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    approvals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def read_at(self) -> datetime | None:
        return parse_time(self.latest.get("read_at"))


@dataclass
class AgentView:
    """One agent (reader) of the site, from its retained status."""

    reader: str
    state: str = "unknown"
    connected: bool | None = None
    heard_at: datetime | None = None

    def away(self, now: datetime) -> bool:
        """Offline, or silent for longer than three status intervals."""
        if self.state != "online":
            return True
        return self.heard_at is None or (now - self.heard_at).total_seconds() > STATUS_STALE_S


@dataclass
class DeskState:
    """The desk's picture of one site. :meth:`apply` takes one message; ``generation``
    changes whenever something the pages show changed."""

    prefix: str
    site: str
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    broker_connected: bool = False
    broker_was_connected: bool = False
    vehicles: OrderedDict[str, VehicleRecord] = field(default_factory=OrderedDict)
    agents: dict[str, AgentView] = field(default_factory=dict)
    orphan_diagnoses: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    generation: int = 0
    ignored: int = 0
    #: The readout the last :meth:`apply` took in (new to the desk), for whoever keeps them.
    taken_readout: dict[str, Any] | None = None
    _seen: set[str] = field(default_factory=set)
    _seen_order: deque[str] = field(default_factory=deque)

    def subscriptions(self) -> list[str]:
        base = f"{self.prefix}/{self.site}"
        return [f"{base}/+/readout", f"{base}/+/status", f"{base}/+/diagnosis",
                f"{base}/+/approval", f"{base}/vehicles/+", f"{base}/vehicles/+/diagnosis",
                f"{base}/reminders"]

    def set_broker(self, connected: bool) -> None:
        if connected != self.broker_connected:
            self.generation += 1
        self.broker_connected = connected
        self.broker_was_connected |= connected

    def apply(self, topic: str, payload: bytes, now: datetime | None = None) -> bool:
        """Take one message; True when what the pages show changed."""
        now = now or datetime.now(timezone.utc)
        self.taken_readout = None
        base = f"{self.prefix}/{self.site}/"
        if not topic.startswith(base):
            self.ignored += 1
            return False
        levels = topic[len(base):].split("/")
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            if levels[-1] != "status" or payload:  # an empty retained status clears it
                self.ignored += 1
            return False
        changed = self._dispatch(levels, data, now)
        if changed:
            self.generation += 1
        return changed

    def _dispatch(self, levels: list[str], data: dict[str, Any], now: datetime) -> bool:
        if levels == ["reminders"]:
            return self._reminder(data)
        if len(levels) == 2 and levels[0] == "vehicles":
            return self._readout(data)
        if len(levels) == 3 and levels[0] == "vehicles" and levels[2] == "diagnosis":
            return self._diagnosis(data)
        if len(levels) == 2:
            reader, kind = levels
            if kind == "readout":
                return self._readout(data)
            if kind == "diagnosis":
                return self._diagnosis(data)
            if kind == "approval":
                return self._approval(data)
            if kind == "status":
                return self._status(reader, data, now)
        self.ignored += 1
        return False

    def _first_time(self, message_id: object) -> bool:
        """False for a redelivery (at-least-once): the same id was seen before."""
        if not isinstance(message_id, str):
            return True
        if message_id in self._seen:
            return False
        self._seen.add(message_id)
        self._seen_order.append(message_id)
        if len(self._seen_order) > SEEN_IDS:
            self._seen.discard(self._seen_order.popleft())
        return True

    def _readout(self, data: dict[str, Any]) -> bool:
        vin = _dict(data.get("vehicle")).get("vin")
        if not isinstance(vin, str) or not self._first_time(data.get("readout_id")):
            return False
        self.taken_readout = data
        record = self.vehicles.get(vin)
        if record is None:
            record = self.vehicles[vin] = VehicleRecord(vin=vin, latest=data)
            while len(self.vehicles) > MAX_VEHICLES:
                self.vehicles.popitem(last=False)
            self._adopt_diagnoses(record)
            return True
        new_at, old_at = parse_time(data.get("read_at")), record.read_at
        if new_at is not None and old_at is not None and new_at < old_at:
            visits = sorted([*record.visits, data], key=_read_key, reverse=True)
            record.visits = deque(visits[:MAX_VISITS], maxlen=MAX_VISITS)
        else:
            record.visits.appendleft(record.latest)
            record.latest = data
            self.vehicles.move_to_end(vin)
        return True

    def _diagnosis(self, data: dict[str, Any]) -> bool:
        if not self._first_time(data.get("diagnosis_id")):
            return False
        vin = _dict(data.get("vehicle")).get("vin")
        record = self.vehicles.get(vin) if isinstance(vin, str) else None
        if record is None:
            linked = data.get("key_readout_id")
            record = next((r for r in self.vehicles.values()
                           if linked is not None and r.latest.get("readout_id") == linked), None)
        if record is None:
            self.orphan_diagnoses.appendleft(data)
            return True
        old = record.diagnosis
        if old is None or str(data.get("finished_at", "")) >= str(old.get("finished_at", "")):
            record.diagnosis = data
        return True

    def _adopt_diagnoses(self, record: VehicleRecord) -> None:
        """A vehicle test that arrived before the vehicle's first readout (retained messages
        come in any order) joins it now."""
        readout_id = record.latest.get("readout_id")
        for report in list(self.orphan_diagnoses):
            if (_dict(report.get("vehicle")).get("vin") == record.vin
                    or (readout_id is not None and report.get("key_readout_id") == readout_id)):
                self.orphan_diagnoses.remove(report)
                old = record.diagnosis
                if old is None or str(report.get("finished_at", "")) >= str(
                        old.get("finished_at", "")):
                    record.diagnosis = report

    def _reminder(self, data: dict[str, Any]) -> bool:
        vin = data.get("vin")
        record = self.vehicles.get(vin) if isinstance(vin, str) else None
        reminder_id = data.get("reminder_id")
        if record is None or not isinstance(reminder_id, str):
            return False
        record.reminders[reminder_id] = data
        while len(record.reminders) > MAX_REMINDERS:
            record.reminders.popitem(last=False)
        return True

    def _approval(self, data: dict[str, Any]) -> bool:
        vin = data.get("vin")
        record = self.vehicles.get(vin) if isinstance(vin, str) else None
        if record is None or not self._first_time(data.get("approval_id")):
            return False
        record.approvals.append(data)
        return True

    def _status(self, reader: str, data: dict[str, Any], now: datetime) -> bool:
        view = self.agents.setdefault(reader, AgentView(reader=reader))
        before = (view.state, view.connected)
        view.state = str(data.get("state", "unknown"))
        view.connected = (_dict(data.get("reader")).get("connected")
                          if view.state == "online" else None)
        view.heard_at = now
        return before != (view.state, view.connected)

    # -- queries -------------------------------------------------------------------------

    def today(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()

    def queue(self, now: datetime) -> list[VehicleRecord]:
        """Today's vehicles (read today in the site's time zone), newest first."""
        today = self.today(now)
        rows = [r for r in self.vehicles.values()
                if (at := r.read_at) is not None and at.astimezone(self.zone).date() == today]
        return sorted(rows, key=lambda r: r.read_at or now, reverse=True)

    def agents_away(self, now: datetime) -> list[AgentView]:
        return [view for _, view in sorted(self.agents.items()) if view.away(now)]


def _read_key(readout: dict[str, Any]) -> str:
    return str(readout.get("read_at", ""))
