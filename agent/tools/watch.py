"""``cbs-agent watch``: the reception view. Subscribes to the agent's topics and shows each
vehicle as its key is read, as a full terminal screen an advisor can read across the desk.

What the screen shows, largest first: the VIN and mileage; one line per service item with its
status as a coloured badge (green ok, yellow due soon, red overdue), forecast due date, days
and km left; active check-control messages and stored faults; and a banner saying whether the
visit fits the express lane. Above it, each reader's state (online, reader plugged in); below
it, the last few vehicles read. A key that could not be read shows a red "lay the key again"
line until the next good read.

Shape (sans-IO core, thin I/O edge):

* :class:`WatchState` takes ``(topic, payload)`` and keeps what the screen needs. Payloads are
  read as plain JSON with ``.get``: a later compatible payload version only adds keys, and
  the view must keep working with them. Redeliveries (same ``readout_id``) are ignored.
* :func:`render` turns a state into screen lines for a width, a language and colour or not;
  pure, so tests can check it without a terminal. Widths count East Asian wide characters
  as two columns, so the Chinese view lines up too.
* :func:`run_watch` is the edge: one paho client (its callbacks only enqueue into a bounded
  queue), a redraw loop on the alternate screen, and a restored terminal on exit. When the
  output is not a terminal it prints one plain block per vehicle instead (for logs, pipes).

Labels come from :mod:`agent.domain.i18n` (English, German, Simplified Chinese); the few words only
this view needs are in :data:`VIEW_LABELS` below.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import socket
import sys
import threading
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agent.domain import i18n
from agent.domain.express import express_verdict, reason_text

if TYPE_CHECKING:
    import argparse

    from agent.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

__all__ = ["VIEW_LABELS", "WatchState", "render", "run_watch", "text", "watch_command"]

QUEUE_BOUND = 1000
RECENT_VEHICLES = 6
SEEN_IDS = 512
REDRAW_EVERY_S = 1.0
PIPE_WIDTH = 132  # a file or pipe has no width; lay the block out wide (nothing is cut anyway)

# Words of this view that agent.domain.i18n does not have (yet); same shape as its LABELS.
VIEW_LABELS: dict[str, dict[str, str]] = {
    "title": {"en": "CBS reception", "de": "CBS-Serviceannahme", "zh": "CBS 服务接待"},
    "reader_online": {"en": "online", "de": "online", "zh": "在线"},
    "reader_offline": {"en": "OFFLINE", "de": "OFFLINE", "zh": "离线"},
    "reader_unplugged": {"en": "reader unplugged", "de": "Leser getrennt", "zh": "读卡器未连接"},
    "broker_connecting": {"en": "connecting to the broker ...", "de": "verbinde mit dem Broker ...",
                          "zh": "正在连接服务器 ..."},
    "broker_unreachable": {"en": "{reason}; retrying ...", "de": "{reason}; neuer Versuch ...",
                           "zh": "{reason}；正在重试 ..."},
    "broker_lost": {"en": "broker connection lost, reconnecting ...",
                    "de": "Broker-Verbindung verloren, verbinde neu ...",
                    "zh": "服务器连接中断，正在重连 ..."},
    "earlier": {"en": "Earlier", "de": "Zuvor", "zh": "之前"},
    "key_not_read": {"en": "Key not read ({reason}): lay the key on the reader again",
                     "de": "Schlüssel nicht gelesen ({reason}): bitte erneut auflegen",
                     "zh": "钥匙读取失败（{reason}）：请重新放置钥匙"},
    "express_yes": {"en": "EXPRESS LANE: YES", "de": "EXPRESS-SERVICE: JA",
                    "zh": "快速保养通道：是"},
    "express_no": {"en": "EXPRESS LANE: NO", "de": "EXPRESS-SERVICE: NEIN",
                   "zh": "快速保养通道：否"},
    "occurrences": {"en": "{count}x", "de": "{count}x", "zh": "{count} 次"},
    "stored_dtc": {"en": "stored", "de": "gespeichert", "zh": "已存储"},
    "key_slot": {"en": "Key slot {slot}", "de": "Schlüsselplatz {slot}", "zh": "钥匙位置 {slot}"},
    # Why an item is overdue although kilometres are left (status "overdue", km_left > 0).
    "overdue_by_date": {"en": "overdue by date", "de": "Termin überschritten",
                        "zh": "已超过到期日期"},
    "overdue_by_wear": {"en": "overdue by wear (0 %)", "de": "verschlissen (0 %)",
                        "zh": "已磨损（0 %）"},
    "slot": {"en": "slot", "de": "Platz", "zh": "位置"},
    "vehicle_test": {"en": "Vehicle test", "de": "Fahrzeugtest", "zh": "车辆检测"},
    "test_summary": {"en": "{outcome}: {ecus} control units, {dtcs} faults ({confirmed} confirmed)",
                     "de": "{outcome}: {ecus} Steuergeräte, {dtcs} Fehler ({confirmed} bestätigt)",
                     "zh": "{outcome}：{ecus} 个控制单元，{dtcs} 个故障（{confirmed} 个已确认）"},
    "warning_lamp": {"en": "WARNING LAMP ON", "de": "WARNLEUCHTE AN", "zh": "警告灯亮"},
    "vin_mismatch": {"en": "VIN MISMATCH: {units}", "de": "FIN ABWEICHEND: {units}",
                     "zh": "车架号不一致：{units}"},
    "more_lines": {"en": "+{count} more lines (enlarge the window)",
                   "de": "+{count} weitere Zeilen (Fenster vergrößern)",
                   "zh": "还有 {count} 行（请放大窗口）"},
    "reminders_planned": {"en": "Reminders planned", "de": "Erinnerungen geplant",
                          "zh": "计划提醒"},
}


def status_word(key: str, lang: str) -> str:
    """A status word as the view shows every one of them: in capitals (OK, DUE SOON,
    OVERDUE, ONLINE, OFFLINE, ACTIVE, STORED, CONFIRMED), so no two casings meet on a
    screen."""
    return text(key, lang).upper()


def join_words(lang: str, *words: str) -> str:
    """Words of one phrase: with spaces, except in Chinese, which writes none ("钥匙位置")."""
    return ("" if lang == "zh" else " ").join(word for word in words if word)


def local_date(value: object, lang: str) -> str:
    """A payload date (``2027-01-28``) as the language writes it: ``28.01.2027`` in German,
    ISO elsewhere; anything else as it is."""
    text_value = str(value)
    if lang == "de" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text_value):
        year, month, day = text_value.split("-")
        return f"{day}.{month}.{year}"
    return text_value


def text(key: str, lang: str, **fields: object) -> str:
    """One label in ``lang``: from :mod:`agent.domain.i18n` when it has the key, else from
    :data:`VIEW_LABELS`; an unknown key shows as itself rather than breaking the screen."""
    if key in i18n.LABELS:
        return i18n.label(key, lang, **fields)
    entry = VIEW_LABELS.get(key)
    if entry is None:
        return key
    template = entry.get(lang) or entry["en"]
    return template.format(**fields) if fields else template


# -- terminal text helpers ---------------------------------------------------------------------

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

RESET = "\x1b[0m"
STYLES = {
    "bold": "1", "dim": "2", "reverse": "7",
    "ok": "1;97;42", "due_soon": "1;30;43", "overdue": "1;97;41",
    "green": "1;32", "yellow": "1;33", "red": "1;31", "cyan": "1;36",
}


def display_width(value: str) -> int:
    """Terminal columns of ``value``: ANSI codes take none, wide (CJK) characters two."""
    plain = _ANSI_RE.sub("", value)
    return sum(0 if unicodedata.combining(ch) else
               2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in plain)


def fit(value: str, width: int) -> str:
    """``value`` padded or cut to exactly ``width`` columns (plain text only)."""
    out, used = [], 0
    for ch in value:
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * (width - used)


def rfit(value: str, width: int) -> str:
    """``value`` right-aligned in ``width`` columns (cut when longer)."""
    used = display_width(value)
    return fit(value, width) if used >= width else " " * (width - used) + value


def clip(line: str, width: int) -> str:
    """Cut a line that may hold ANSI codes to ``width`` columns, keeping the codes."""
    if display_width(line) <= width:
        return line
    out, used, i = [], 0, 0
    while i < len(line):
        match = _ANSI_RE.match(line, i)
        if match:
            out.append(match.group())
            i = match.end()
            continue
        ch = line[i]
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > width:
            break
        out.append(ch)
        used += w
        i += 1
    return "".join(out) + (RESET if _ANSI_RE.search(line) else "")


def wrap(line: str, width: int, indent: str = "   ") -> list[str]:
    """``line`` (ANSI codes allowed) in pieces of at most ``width`` columns; continuation
    pieces start with ``indent``."""
    if display_width(line) <= width or width <= len(indent) + 1:
        return [clip(line, width)]
    pieces: list[str] = []
    rest = line
    while display_width(rest) > width:
        head = clip(rest, width)
        plain = _ANSI_RE.sub("", head)
        following = _ANSI_RE.sub("", rest)[len(plain):len(plain) + 1]
        space = plain.rfind(" ")
        if following not in ("", " ") and space > width // 2:  # break between words
            head = clip(rest, display_width(plain[:space]))
            plain = plain[:space]
        pieces.append(head)
        consumed = len(plain)
        # Skip the same number of visible characters in ``rest`` (codes travel with them).
        i = seen = 0
        while i < len(rest) and seen < consumed:
            match = _ANSI_RE.match(rest, i)
            if match:
                i = match.end()
                continue
            i += 1
            seen += 1
        rest = indent + rest[i:].lstrip(" ")
    pieces.append(rest)
    return pieces


def _style(value: str, style: str, color: bool) -> str:
    return f"\x1b[{STYLES[style]}m{value}{RESET}" if color and value else value


def _number(value: int | float, lang: str) -> str:
    grouped = f"{value:,.0f}"
    return grouped.replace(",", ".") if lang == "de" else grouped


# -- the state ----------------------------------------------------------------------------------


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


def _local_time(stamp: str) -> str:
    """HH:MM:SS of a payload timestamp in this machine's time zone (the advisor's clock)."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone().strftime("%H:%M:%S")


def _badge(status: str, lang: str, color: bool) -> str:
    name = status_word(status, lang) if status in ("ok", "due_soon", "overdue") else status or "?"
    label = fit(f" {name.upper()}", 14)
    if not color:
        return f"[{fit(name.upper(), 12)}]"
    return _style(label, status if status in STYLES else "reverse", True)


def _header(state: WatchState, *, lang: str, color: bool, site: str | None, reader: str | None,
            now: datetime) -> list[str]:
    scope = "/".join(part for part in (site or "*", reader or "*"))
    left = f" {text('title', lang)}  ·  {scope}"
    readers = []
    for (s, r), view in sorted(state.readers.items()):
        if view.state == "online" and view.connected is not False:
            mark, style, word = "●", "green", status_word("reader_online", lang)
        elif view.state == "online":
            mark, style, word = "●", "yellow", status_word("reader_unplugged", lang)
        elif view.state == "offline":
            mark, style, word = "○", "red", status_word("reader_offline", lang)
        else:
            continue
        name = r if site is not None else f"{s}/{r}"
        readers.append(_style(f"{mark} {name} {word}", style, color))
    clock = now.astimezone().strftime("%H:%M:%S")
    lines = [_style(left, "bold", color) + "   " + "  ".join(readers) + f"   {clock}"]
    if not state.broker_connected and state.broker_error:
        lines.append(_style(f" {text('broker_unreachable', lang, reason=state.broker_error)}",
                            "red", color))
    elif not state.broker_connected:
        key = "broker_lost" if state.broker_was_connected else "broker_connecting"
        lines.append(_style(f" {text(key, lang)}", "yellow", color))
    return lines


def _summary_bar(summary: dict[str, Any], *, lang: str, color: bool, width: int) -> str:
    """One full-width bar in the colour of the worst status: readable from across the desk."""
    status = str(summary.get("status", ""))
    words = [status_word(status, lang) if status in ("ok", "due_soon", "overdue") else "?"]
    next_due = _dict(summary.get("next_due"))
    if next_due:
        words.append(f"{text('next_due', lang)}: "
                     f"{i18n.service_name(str(next_due.get('type', 'unknown')), lang)} "
                     f"{local_date(next_due.get('due_date', ''), lang)}")
    bar = "   " + "   ·   ".join(words)
    if not color:
        return f" >> {bar.strip()} <<"
    style = status if status in ("ok", "due_soon", "overdue") else "reverse"
    return " " + _style(fit(bar, max(10, width - 2)), style, True)


def _vehicle_lines(data: dict[str, Any], *, lang: str, color: bool, width: int) -> list[str]:
    vehicle = _dict(data.get("vehicle"))
    key = _dict(data.get("key"))
    summary = _dict(data.get("summary"))
    na = text("not_available", lang)
    mileage = vehicle.get("mileage_km")
    mileage_text = (f"{_number(mileage, lang)} {text('unit_km', lang)}"
                    if isinstance(mileage, int | float) else na)
    vin_part = f" {text('vin', lang)}  " + _style(str(vehicle.get("vin", "?")), "bold", color)
    mileage_part = f"{text('mileage', lang)}  " + _style(mileage_text, "bold", color)
    gap = max(3, width - display_width(vin_part) - display_width(mileage_part) - 1)
    lines = [vin_part + " " * gap + mileage_part]
    details = [f"{text('read_at', lang)} {_local_time(str(data.get('read_at', '')))}"
               f" ({data.get('site', '?')}/{data.get('reader', '?')})",
               text("key_slot", lang, slot=key.get("slot", "?")),
               f"{text('data_date', lang)} "
               f"{local_date(vehicle.get('data_date'), lang) if vehicle.get('data_date') else na}"]
    if vehicle.get("fuel_level_pct") is not None:
        details.append(f"{text('fuel_level', lang)} {vehicle['fuel_level_pct']} %")
    lines.append(" " + "  ·  ".join(details))
    lines.append("")
    lines.append(_summary_bar(summary, lang=lang, color=color, width=width))
    lines.append("")

    name_w = max(24, min(40, width - 60))
    heading = (f" {fit(text('service', lang), name_w)} {fit(text('status', lang), 14)} "
               f"{fit(text('due', lang), 12)} {rfit(text('days_left', lang), 10)} "
               f"{rfit(text('km_left', lang), 18)}")
    lines.append(_style(heading, "bold", color))
    services = _list(data.get("services"))
    if not services:
        lines.append(f" {text('nothing_due', lang)}")
    due_items = []
    for item in services:
        item = _dict(item)
        forecast = _dict(item.get("forecast"))
        status = str(forecast.get("status", ""))
        km_left = forecast.get("km_left", item.get("remaining_km"))
        days = forecast.get("days_left")
        name = i18n.service_name(str(item.get("type", "unknown")), lang)
        if item.get("type") == "unknown":
            name += f" (0x{int(item.get('code', 0)):02X})"
        if status in ("due_soon", "overdue"):
            due_items.append(name)
        if display_width(name) > name_w:  # never cut a name: it takes a line of its own
            lines.append(f" {name}")
            name = ""
        km_text = na if km_left is None else f"{_number(km_left, lang)} {text('unit_km', lang)}"
        due = forecast.get("due_date")
        row = (f" {fit(name, name_w)} {_badge(status, lang, color)} "
               f"{fit(local_date(due, lang) if due else na, 12)} "
               f"{rfit(na if days is None else str(days), 10)} {rfit(km_text, 18)}")
        spread = i18n.forecast_range_words(forecast, lang)
        if spread:
            row += f"  {spread}"
        if status == "overdue" and isinstance(km_left, int | float) and km_left > 0:
            # Kilometres are left, so the calendar or the wear made it overdue: say which.
            worn = item.get("availability_pct") == 0
            row += f"  ({text('overdue_by_wear' if worn else 'overdue_by_date', lang)})"
        lines.append(row)
    lines.append("")

    planned = _planned_reminders(data, lang)
    if planned:
        lines.append(f" {text('reminders_planned', lang)}: {' · '.join(planned)}")
    checks = [_dict(c) for c in _list(data.get("check_control"))]
    active = [c for c in checks if c.get("status") == "active"]
    stored = [c for c in checks if c.get("status") != "active"]
    dtcs = [_dict(d) for d in _list(data.get("dtcs"))]
    labels = [text("check_control", lang), text("faults", lang)]
    label_w = max(display_width(label) for label in labels) + 3
    cc_parts = [_style(f"{c.get('id')} {status_word('active', lang)}", "red", color)
                + f" ({_number(c.get('mileage_km', 0), lang)} {text('unit_km', lang)})"
                for c in active]
    cc_parts += [f"{c.get('id')} {status_word('stored', lang)}" for c in stored]
    lines.append(f" {fit(labels[0], label_w)}"
                 + (", ".join(cc_parts) if cc_parts else text("none", lang)))
    dtc_parts = []
    for dtc in dtcs:
        part = (f"{dtc.get('sae', '?')} ({dtc.get('code', '?')}) "
                f"ECU 0x{int(dtc.get('ecu', 0)):02X} "
                f"{text('occurrences', lang, count=dtc.get('occurrences', '?'))}")
        if dtc.get("confirmed"):
            dtc_parts.append(_style(join_words(lang, part, status_word("confirmed", lang)),
                                    "red", color))
        else:
            dtc_parts.append(join_words(lang, part, status_word("stored_dtc", lang)))
    lines.append(f" {fit(labels[1], label_w)}"
                 + (", ".join(dtc_parts) if dtc_parts else text("none", lang)))
    lines.append("")

    verdict = express_verdict(data)  # the one rule, with its reasons (docs/express-lane.md)
    express = verdict.eligible
    banner = f"   {text('express_yes' if express else 'express_no', lang)}   "
    why = [reason_text(reason, lang) for reason in verdict.reasons]
    gross = _dict(_dict(data.get("proposal")).get("totals")).get("gross")
    if gross is not None:
        currency = _dict(data.get("proposal")).get("currency", "")
        why.insert(0, f"{text('gross', lang)} {gross} {currency}")
    reasons = f"  {' · '.join(why)}" if why else ""
    if color:
        lines.append(" " + _style(banner, "ok" if express else "reverse", True) + reasons)
    else:
        lines.append((f" *** {banner.strip()} ***" if express else f"     {banner.strip()}")
                     + reasons)
    return lines


def _diagnosis_lines(data: dict[str, Any], *, lang: str, color: bool) -> list[str]:
    """The latest vehicle test: outcome and counts; the warning lamp and a VIN mismatch
    (naming the units that differ) stand out."""
    summary = _dict(data.get("summary"))
    vehicle = _dict(data.get("vehicle"))
    line = text("test_summary", lang, outcome=str(data.get("outcome", "?")),
                ecus=summary.get("ecus_present", "?"), dtcs=summary.get("dtcs", "?"),
                confirmed=summary.get("confirmed", "?"))
    lines = ["", f" {_style(text('vehicle_test', lang), 'bold', color)}  "
                 f"{vehicle.get('vin') or ''}  {line}"]
    if summary.get("warning_lamp"):
        lines.append(" " + _style(f" {text('warning_lamp', lang)} ", "overdue", color))
    if vehicle.get("vin_consistent") is False:
        units = [f"{e.get('name') or e.get('address')} {e.get('vin')}"
                 for e in _list(data.get("ecus")) if isinstance(e, dict)
                 and e.get("vin") and e.get("vin") != vehicle.get("vin")]
        lines.append(" " + _style(f" {text('vin_mismatch', lang, units=', '.join(units))} ",
                                  "overdue", color))
    return lines
def _planned_reminders(data: dict[str, Any], lang: str, window_days: int = 30) -> list[str]:
    """The reminders the agent will send for this vehicle (docs/reminders.md): on the day an
    item's due date comes within the window, for items not already due at this read."""
    from datetime import date, timedelta

    read = str(data.get("read_at", ""))[:10]
    planned = []
    for item in (_dict(x) for x in _list(data.get("services"))):
        forecast = _dict(item.get("forecast"))
        due = forecast.get("due_date_early") or forecast.get("due_date")  # docs/reminders.md
        try:
            day = date.fromisoformat(str(due)) - timedelta(days=window_days)
            if day > date.fromisoformat(read):
                planned.append(f"{i18n.service_name(str(item.get('type')), lang)} {local_date(day.isoformat(), lang)}")
        except ValueError:
            continue
    return planned


def render(state: WatchState, *, width: int = 100, height: int = 40, lang: str = "en",
           color: bool = True, site: str | None = None, reader: str | None = None,
           now: datetime | None = None) -> list[str]:
    """The screen for ``state``: at most ``height`` lines, each at most ``width`` columns."""
    lang = i18n.check_language(lang)
    now = now or datetime.now(timezone.utc)
    rule = "─" * max(1, width - 1)
    lines = _header(state, lang=lang, color=color, site=site, reader=reader, now=now)
    lines.append(rule)
    if state.rejection is not None:
        reason = str(state.rejection.get("reason", "?"))
        lines.append(_style(f" {text('key_not_read', lang, reason=reason)} ", "overdue", color))
        lines.append("")
    if state.current is None:
        lines.append("")
        lines.append(_style(f"   {text('waiting_for_key', lang)} ...", "bold", color))
    else:
        lines += _vehicle_lines(state.current, lang=lang, color=color, width=width)
    if state.diagnosis is not None:
        lines += _diagnosis_lines(state.diagnosis, lang=lang, color=color)
    if state.recent:
        lines.append(rule)
        lines.append(_style(f" {text('earlier', lang)}", "bold", color))
        for vehicle in state.recent:
            status = vehicle.status if vehicle.status in ("ok", "due_soon", "overdue") else ""
            status_text = text(status, lang) if status else "?"
            style = {"ok": "green", "due_soon": "yellow", "overdue": "red"}.get(status, "bold")
            mileage = ("" if vehicle.mileage_km is None else
                       f"{_number(vehicle.mileage_km, lang):>9} {text('unit_km', lang)}")
            express = f"  {text('express_lane', lang)}" if vehicle.express else ""
            lines.append(f" {_local_time(vehicle.read_at)}  {vehicle.vin}  {rfit(mileage, 14)}  "
                         f"{_style(fit(status_text, 14), style, color)} "
                         f"{vehicle.site}/{vehicle.reader}{express}")
    # Nothing is cut silently: long lines wrap, and what does not fit the height is counted.
    out = [part for line in lines for part in wrap(line, width)]
    if len(out) > max(1, height):
        keep = max(1, height - 1)
        hidden = len(out) - keep
        out = out[:keep] + [clip(f" … {text('more_lines', lang, count=hidden)}", width)]
    return out


# -- the terminal edge --------------------------------------------------------------------------

ENTER_SCREEN = "\x1b[?1049h\x1b[?25l"  # alternate screen, hide the cursor
LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l"


class _Screen:
    """Full-screen redraws on a terminal; one plain block per new vehicle otherwise."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self._last: list[str] | None = None

    def __enter__(self) -> _Screen:
        if self.interactive:
            self.out.write(ENTER_SCREEN)
            self.out.flush()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.interactive:
            self.out.write(RESET + LEAVE_SCREEN)
            self.out.flush()

    def draw(self, lines: list[str]) -> None:
        if lines == self._last:
            return
        self._last = lines
        # Home, then every line cleared to its end, then everything below: no flicker.
        self.out.write("\x1b[H" + "".join(f"{line}\x1b[K\r\n" for line in lines[:-1])
                       + (lines[-1] + "\x1b[K" if lines else "") + "\x1b[J")
        self.out.flush()

    def block(self, lines: list[str]) -> None:
        self.out.write("\n".join(line.rstrip() for line in lines) + "\n\n")
        self.out.flush()


def _subscriptions(prefix: str, site: str | None, reader: str | None) -> list[str]:
    base = f"{prefix}/{site or '+'}/{reader or '+'}"
    return [f"{base}/readout", f"{base}/rejected", f"{base}/status", f"{base}/diagnosis"]


def _make_client(mqtt: MqttSettings, client_id: str) -> Any:
    from agent.mqtt.paho_link import new_client

    client = new_client(mqtt, client_id)
    client.reconnect_delay_set(max(1, round(mqtt.reconnect_min_s)),
                               max(1, round(min(mqtt.reconnect_max_s, 10.0))))
    return client


def _client_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "", socket.gethostname())[:24] or "host"
    return f"cbs-watch-{host}-{os.getpid()}"


def run_watch(mqtt: MqttSettings, *, site: str | None = None, reader: str | None = None,
              lang: str = i18n.DEFAULT_LANGUAGE, out: TextIO, stop: threading.Event,
              color: bool | None = None, interactive: bool | None = None,
              terminal_size: Callable[[], os.terminal_size] = shutil.get_terminal_size) -> int:
    """Subscribe and show readouts until ``stop`` is set (the CLI sets it on SIGTERM/SIGINT).
    Returns 0. Raises :class:`~agent.errors.ConfigError` if the TLS files cannot be used."""

    lang = i18n.check_language(lang)
    interactive = out.isatty() if interactive is None else interactive
    color = interactive and "NO_COLOR" not in os.environ if color is None else color
    # (topic, payload), True/False for connected/disconnected, or why a connect failed
    events: queue.Queue[tuple[str, bytes] | bool | str] = queue.Queue(maxsize=QUEUE_BOUND)
    state = WatchState(prefix=mqtt.prefix)
    dropped = 0

    def on_connect(client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            _put(f"the broker at {mqtt.host}:{mqtt.port} refused the connection: {reason_code}")
            return
        client.subscribe([(topic, 1) for topic in _subscriptions(mqtt.prefix, site, reader)])
        _put(True)

    def on_disconnect(*_args: Any) -> None:
        _put(False)

    def on_connect_fail(*_args: Any) -> None:  # paho says only that it failed
        from agent.tools.mqtt_client import connect_failure
        _put(connect_failure(mqtt))

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        _put((message.topic, bytes(message.payload)))

    def _put(item: tuple[str, bytes] | bool | str) -> None:
        nonlocal dropped
        try:
            events.put_nowait(item)
        except queue.Full:  # the screen is behind; a newer message will follow
            dropped += 1

    client = _make_client(mqtt, _client_id())  # ConfigError when the TLS files are unusable
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_connect_fail = on_connect_fail
    client.on_message = on_message
    client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s)
    client.loop_start()
    screen = _Screen(out, interactive)
    try:
        with screen:
            size = terminal_size()
            if interactive:
                screen.draw(render(state, width=size.columns, height=size.lines, lang=lang,
                                   color=color, site=site, reader=reader))
            while not stop.is_set():
                new_vehicle = False
                try:
                    item = events.get(timeout=REDRAW_EVERY_S)
                    while True:
                        if isinstance(item, bool):
                            state.broker_connected = item
                            state.broker_was_connected |= item
                            if item:
                                state.broker_error = None
                        elif isinstance(item, str):
                            if item != state.broker_error and not interactive:
                                print(f"cbs-agent watch: {item}; retrying", file=sys.stderr,
                                      flush=True)
                            state.broker_error = item
                        else:
                            before = state.generation
                            state.apply(*item)
                            new_vehicle |= state.generation != before
                        item = events.get_nowait()
                except queue.Empty:
                    pass
                size = terminal_size()
                # A file or pipe has no height: print the whole block.
                height = size.lines if interactive else 10_000
                width = size.columns if interactive else max(size.columns, PIPE_WIDTH)
                lines = render(state, width=width, height=height, lang=lang,
                               color=color, site=site, reader=reader)
                if interactive:
                    screen.draw(lines)
                elif new_vehicle:
                    screen.block(lines)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    if dropped:
        log.warning("the view fell behind and skipped %d messages", dropped)
    return 0


# -- the command --------------------------------------------------------------------------------


def watch_command(args: argparse.Namespace) -> int:
    """``cbs-agent watch``: settings from ``--config``/``CBS_*``/options, then :func:`run_watch`.

    Only the broker connection (``broker``, ``[mqtt]``), ``site`` and ``language`` of the
    configuration matter here; ``reader`` is not needed (``--reader`` narrows the view to one
    reader, else every reader of the site, or of every site, is shown)."""
    import signal

    from agent.config import load_settings, parse_config_text
    from agent.contract.topics import validate_name
    from agent.errors import ConfigError

    config: Path | None = args.config
    file_data: dict[str, Any] = {}
    if config is not None:
        try:
            file_data = parse_config_text(config.read_text(encoding="utf-8"), source=str(config))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config}: cannot read config file: {exc}") from exc
    site = args.site or file_data.get("site") or os.environ.get("CBS_SITE") or None
    if site is not None:
        validate_name("site", site)
    if args.reader is not None:
        validate_name("reader", args.reader)
    # The agent's settings want a site and a reader; the view needs neither, so placeholders
    # stand in where none is configured (they are not used for topics).
    settings = load_settings(config, site=site or "watch", reader="watch", broker=args.broker)
    language = args.language or getattr(settings, "language", None) or i18n.DEFAULT_LANGUAGE
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return run_watch(settings.effective_mqtt(), site=site, reader=args.reader, lang=language,
                     out=sys.stdout, stop=stop,
                     color=False if args.no_color else None)
