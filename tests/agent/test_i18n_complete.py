"""Every label and every service name exists in every language, with the same template fields;
the service names follow the protocol's CBS table one to one."""

from __future__ import annotations

import string

import pytest

from agent.domain.i18n import (
    LABEL_KEYS,
    LABELS,
    LANGUAGES,
    SERVICE_NAMES,
    UnknownLabelError,
    UnsupportedLanguageError,
    check_language,
    due_range_words,
    forecast_range_words,
    label,
    service_name,
)
from agent.domain.models import ForecastBasis, ForecastStatus, KmPerDayBasis
from protocols.cbs_types import CODE_TO_TYPE, CbsType
from protocols.errors import CbsError


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_languages() -> None:
    assert LANGUAGES == ("en", "de", "zh")
    for lang in LANGUAGES:
        assert check_language(lang) == lang


@pytest.mark.parametrize("key", LABEL_KEYS)
def test_every_label_in_every_language(key: str) -> None:
    texts = LABELS[key]
    assert set(texts) == set(LANGUAGES), key
    for lang in LANGUAGES:
        assert texts[lang].strip() == texts[lang] and texts[lang], (key, lang)
    # The same template fields everywhere, so label(key, lang, **fields) works in any language.
    assert fields(texts["de"]) == fields(texts["en"]) == fields(texts["zh"]), key


def test_chinese_labels_are_chinese() -> None:
    # Everything but units and acronyms that read the same in Chinese.
    latin = {"ok", "unit_km"}
    for key in LABEL_KEYS:
        if key not in latin:
            assert has_cjk(LABELS[key]["zh"]), key


def test_service_names_follow_the_cbs_table() -> None:
    assert set(SERVICE_NAMES) == {t.value for t in CbsType}
    assert len(CODE_TO_TYPE) == 22 and set(CODE_TO_TYPE.values()) | {CbsType.UNKNOWN} == set(CbsType)
    for type_name, names in SERVICE_NAMES.items():
        assert set(names) == set(LANGUAGES), type_name
        for lang in LANGUAGES:
            assert service_name(type_name, lang) == names[lang] and names[lang].strip()
        assert has_cjk(names["zh"]), type_name
    # Names are distinct within a language: the advisor can tell every item apart.
    for lang in LANGUAGES:
        assert len({service_name(t.value, lang) for t in CbsType}) == len(CbsType)


def test_unknown_service_names_never_fail() -> None:
    for lang in LANGUAGES:
        assert service_name("hover_conversion", lang) == service_name("unknown", lang)
    assert service_name(CbsType.BRAKE_FLUID, "de") == "Bremsflüssigkeit"  # a CbsType works too


def test_wire_values_are_label_keys() -> None:
    # A payload value is looked up directly: label(forecast.status, lang), and so on.
    for literal in (ForecastStatus, ForecastBasis, KmPerDayBasis):
        for value in literal.__args__:  # type: ignore[attr-defined]
            assert value in LABELS, value
    for key in ("active", "stored", "vin", "mileage", "due", "km_left", "check_control", "faults",
                "express_lane", "yes", "no", "labour", "parts", "net", "tax", "gross", "total",
                "optional_hint", "not_in_catalogue"):
        assert key in LABELS, key


def test_templates() -> None:
    assert label("due_in_days", "en", days=3) == "due in 3 days"
    assert label("due_in_days", "de", days=12) == "fällig in 12 Tagen"
    assert label("overdue_by_days", "zh", days=2) == "已逾期 2 天"
    hint = label("optional_hint", "zh", service=service_name("brake_fluid", "zh"), days=60)
    assert hint.startswith("制动液") and "60" in hint
    assert label("express_fits", "de", minutes=60) == "Passt in den Express-Service (60 Min.)"


def test_errors() -> None:
    with pytest.raises(UnsupportedLanguageError, match="language 'fr' is not supported"):
        label("ok", "fr")
    with pytest.raises(UnsupportedLanguageError):
        service_name("engine_oil", "EN")
    with pytest.raises(UnknownLabelError) as caught:
        label("no_such_key", "en")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, CbsError)


@pytest.mark.parametrize(("early", "late", "en", "de", "zh"), [
    (40, 70, "in 40-70 days", "in 40-70 Tagen", "40-70 天后"),
    (12, 12, "in 12 days", "in 12 Tagen", "12 天后"),
    (0, 0, "today", "heute", "今天"),
    (-10, -3, "3-10 days ago", "vor 3-10 Tagen", "3-10 天前"),
    (-5, -5, "5 days ago", "vor 5 Tagen", "5 天前"),
    (-4, 20, "between 4 days ago and 20 days from now", "zwischen vor 4 Tagen und in 20 Tagen",
     "4 天前至 20 天后之间"),
])
def test_due_range_in_words(early: int, late: int, en: str, de: str, zh: str) -> None:
    assert [due_range_words(early, late, lang) for lang in ("en", "de", "zh")] == [en, de, zh]


def test_forecast_range_in_words_from_a_payload() -> None:
    forecast = {"due_date": "2027-01-19", "days_left": 53, "due_date_early": "2027-01-04",
                "due_date_late": "2027-02-09"}
    assert forecast_range_words(forecast, "en") == "in 38-74 days"
    # A forecast of an earlier version has no interval: nothing to say.
    assert forecast_range_words({"due_date": "2027-01-19", "days_left": 53}, "de") is None
