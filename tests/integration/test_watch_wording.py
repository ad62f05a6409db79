"""The reception view's words: one casing for status words, no spaces inside Chinese
phrases, German dates in German form, and an OVERDUE item with kilometres left says which
limit made it overdue."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from agent.tools.watch import WatchState, render

NOW = datetime(2026, 11, 27, 9, 16, tzinfo=timezone.utc)
TOPIC = "cbs/v1/S1/desk1"


def _item(index: int, type_: str, status: str, km_left: int | None, due: str,
          availability: int = 50) -> dict:
    return {"index": index, "type": type_, "code": index + 1, "availability_pct": availability,
            "remaining_km": km_left, "due_month": due[:7], "service_count": 1,
            "last_service": None, "interval_km": None, "interval_months": None,
            "forecast": {"status": status, "due_date": due, "basis": "time",
                         "days_left": -5 if status == "overdue" else 20, "km_left": km_left}}


READOUT = {
    "schema": "cbs.readout/1", "readout_id": "r1", "site": "S1", "reader": "desk1",
    "transport": "serial", "read_at": "2026-11-27T09:15:02.123Z",
    "key": {"key_id": 1, "slot": 2},
    "vehicle": {"vin": "WBA8E5107FK123456", "mileage_km": 48371, "data_date": "2026-11-25",
                "build_month": "2022-03", "fuel_level_pct": 63},
    "services": [_item(0, "engine_oil", "overdue", 1800, "2026-11-22"),
                 _item(1, "brake_pads_front", "overdue", 900, "2027-03-01", availability=0),
                 _item(2, "microfilter", "overdue", -200, "2026-11-20"),
                 _item(3, "brake_fluid", "due_soon", None, "2026-12-17")],
    "check_control": [{"id": 258, "status": "active", "mileage_km": 48010},
                      {"id": 77, "status": "stored", "mileage_km": 40000}],
    "dtcs": [{"code": "03011F", "sae": "P0301", "failure_type": 31, "status": 47,
              "confirmed": True, "ecu": 18, "occurrences": 3},
             {"code": "030200", "sae": "P0302", "failure_type": 0, "status": 0,
              "confirmed": False, "ecu": 18, "occurrences": 1}],
    "estimate": {"km_per_day": 28.0, "km_per_day_basis": "vehicle_age", "climate_factor": 1.0},
    "summary": {"status": "overdue", "next_due": {"type": "microfilter",
                                                  "due_date": "2026-11-20"},
                "express_eligible": False},
}


def _screen(lang: str) -> list[str]:
    state = WatchState()
    state.apply(f"{TOPIC}/status", b'{"schema":"cbs.status/1","state":"online",'
                                   b'"reader":{"connected":true}}')
    state.apply("cbs/v1/S1/desk2/status", b'{"schema":"cbs.status/1","state":"offline"}')
    state.apply(f"{TOPIC}/readout", json.dumps(READOUT).encode())
    return render(state, width=140, height=60, lang=lang, color=False, now=NOW)


@pytest.mark.parametrize("lang", ["en", "de"])
def test_status_words_have_one_casing(lang: str) -> None:
    from agent.domain.i18n import label
    from agent.tools.watch import text
    screen = "\n".join(_screen(lang))
    words = [label(k, lang) for k in ("ok", "due_soon", "overdue", "active", "stored",
                                     "confirmed")]
    words += [text(k, lang) for k in ("reader_online", "reader_offline", "stored_dtc")]
    for word in words:
        if word.upper() != word:
            assert word not in screen.replace(word.upper(), ""), (lang, word)
    for word in ("ONLINE", "OFFLINE", "ACTIVE", "STORED", "OVERDUE"):
        assert word in screen or lang == "de", word
    if lang == "en":
        assert "258 ACTIVE" in screen and "77 STORED" in screen
        assert "desk1 ONLINE" in screen and "desk2 OFFLINE" in screen


def test_chinese_phrases_have_no_spaces_inside() -> None:
    screen = _screen("zh")
    text = "\n".join(screen)
    assert "钥匙位置 2" in text
    cjk = "\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"
    inside = re.compile(rf"(?<![ ])[{cjk}] [{cjk}](?! )")  # one space between two CJK characters
    assert not [line for line in screen if inside.search(line)], [
        line for line in screen if inside.search(line)]


def test_german_dates_are_written_the_german_way() -> None:
    text = "\n".join(_screen("de"))
    assert "22.11.2026" in text and "25.11.2026" in text
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), text
    assert "2026-11-22" in "\n".join(_screen("en"))  # ISO elsewhere


def test_an_overdue_item_with_kilometres_left_says_which_limit() -> None:
    screen = _screen("en")
    oil = next(line for line in screen if "Engine oil" in line)
    pads = next(line for line in screen if "Front brake pads" in line)
    filter_ = next(line for line in screen if "microfilter" in line)
    assert "OVERDUE" in oil and "1,800 km" in oil and "(overdue by date)" in oil
    assert "(overdue by wear (0 %))" in pads
    assert "overdue by" not in filter_  # no kilometres left: the distance said it
    de = next(line for line in _screen("de") if "1.800 km" in line)
    assert "(Termin überschritten)" in de
