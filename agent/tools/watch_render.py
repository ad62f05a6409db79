"""The reception view's screen: :func:`render` turns a :class:`WatchState` into lines for a
width, a language and colour or not. Pure, so tests check it without a terminal."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from agent.domain import i18n
from agent.domain.express import express_verdict, reason_text
from agent.tools.watch_state import (
    WatchState,
    _dict,
    _list,
)
from agent.tools.watch_text import (
    STYLES,
    _number,
    _style,
    clip,
    display_width,
    fit,
    join_words,
    local_date,
    rfit,
    status_word,
    text,
    wrap,
)


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

