"""What the reception view knows: :class:`WatchState` takes ``(topic, payload)`` from the
site's topics and keeps what the screen needs. Payloads are read as plain JSON with ``.get``
(a later compatible version only adds keys); redeliveries (same ``readout_id``) are ignored."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.domain.express import express_verdict

RECENT_VEHICLES = 6
SEEN_IDS = 512


@dataclass
class ReaderView:
    state: str = "unknown"  # online / offline / unknown (no status seen yet)
    connected: bool | None = None
    readouts: int | None = None


@dataclass
class RecentVehicle:
    read_at: str
    site: str
    reader: str
    vin: str
    mileage_km: int | None
    status: str
    express: bool


@dataclass
class WatchState:
    """What the screen shows; fed by :meth:`apply` (topic, payload) in arrival order."""

    prefix: str = "cbs/v1"
    broker_connected: bool = False
    broker_was_connected: bool = False
    broker_error: str | None = None  # why the last connect failed, until one succeeds
    current: dict[str, Any] | None = None
    diagnosis: dict[str, Any] | None = None  # the latest vehicle test (cbs.diagnosis/1)
    rejection: dict[str, Any] | None = None  # shown while it is newer than ``current``
    readers: dict[tuple[str, str], ReaderView] = field(default_factory=dict)
    recent: deque[RecentVehicle] = field(default_factory=lambda: deque(maxlen=RECENT_VEHICLES))
    readouts_seen: int = 0
    generation: int = 0  # counts readouts and rejections shown: "something new to print"
    ignored: int = 0
    _seen: deque[str] = field(default_factory=lambda: deque(maxlen=SEEN_IDS))

    def apply(self, topic: str, payload: bytes) -> bool:
        """Take one message; True when the screen changed. Anything unreadable (not JSON, not
        an object, not our topic) is counted in :attr:`ignored` and otherwise skipped."""
        parts = topic.split("/")
        base = self.prefix.split("/")
        if len(parts) != len(base) + 3 or parts[:len(base)] != base:
            self.ignored += 1
            return False
        site, reader, kind = parts[len(base):]
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            self.ignored += 1
            return False
        if not isinstance(data, dict):
            self.ignored += 1
            return False
        if kind == "status":
            return self._status(site, reader, data)
        if kind == "readout":
            return self._readout(site, reader, data)
        if kind == "rejected":
            return self._rejected(data)
        if kind == "diagnosis":
            self.diagnosis = data
            self.generation += 1
            return True
        self.ignored += 1
        return False

    def _status(self, site: str, reader: str, data: dict[str, Any]) -> bool:
        view = self.readers.setdefault((site, reader), ReaderView())
        view.state = str(data.get("state", "unknown"))
        reader_info = _dict(data.get("reader"))
        view.connected = reader_info.get("connected") if view.state == "online" else None
        view.readouts = _dict(data.get("counters")).get("readouts")
        return True

    def _readout(self, site: str, reader: str, data: dict[str, Any]) -> bool:
        readout_id = data.get("readout_id")
        if isinstance(readout_id, str):
            if readout_id in self._seen:
                return False  # at-least-once delivery: a redelivery is the same read
            self._seen.append(readout_id)
        if self.current is not None:
            self.recent.appendleft(_recent(self.current))
        self.current = data
        self.rejection = None
        self.readouts_seen += 1
        self.generation += 1
        self.readers.setdefault((site, reader), ReaderView())
        return True

    def _rejected(self, data: dict[str, Any]) -> bool:
        self.rejection = data
        self.generation += 1
        return True


def _recent(data: dict[str, Any]) -> RecentVehicle:
    vehicle = _dict(data.get("vehicle"))
    summary = _dict(data.get("summary"))
    return RecentVehicle(read_at=str(data.get("read_at", "")), site=str(data.get("site", "")),
                         reader=str(data.get("reader", "")), vin=str(vehicle.get("vin", "?")),
                         mileage_km=vehicle.get("mileage_km"),
                         status=str(summary.get("status", "")),
                         express=express_verdict(data).eligible)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# -- rendering ----------------------------------------------------------------------------------


