"""The reception view's words and layout: its own labels in three languages, status words,
dates in the locale's form, and fitting text to terminal columns (East Asian wide characters
count two). Pure; used by :mod:`agent.tools.watch_render`."""

from __future__ import annotations

import re
import unicodedata

from agent.domain import i18n

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


