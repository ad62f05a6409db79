"""The advisor's language: service names and labels in English, German and Simplified Chinese.

Why a table in code and not gettext: the appliance shows a few dozen fixed words (service
names, statuses, headings, proposal lines), every one of them must exist in every language
(a test checks the table is complete), and the service names must follow the protocol's CBS
table (section 3) one to one. A dict does that with no build step and no files to lose.

Stable API (other modules and helpers rely on it)::

    LANGUAGES                          ("en", "de", "zh")
    Language                           Literal["en", "de", "zh"]
    DEFAULT_LANGUAGE                   "en"
    service_name(type_name, lang)      the CBS type's name; unknown names -> the "unknown" name
    label(key, lang, **fields)         a label; with fields, ``str.format`` is applied
    due_range_words(early, late, lang) when an item falls due, in words ("in 40-70 days")
    forecast_range_words(forecast, lang)  the same for a payload's ``forecast`` object
    LABEL_KEYS                         every label key, in table order
    check_language(lang)               lang, or UnsupportedLanguageError

Keys are flat and equal the wire values where there is one, so a payload value can be looked
up directly: ``label(forecast.status, lang)`` (``ok``, ``due_soon``, ``overdue``),
``label(forecast.basis, lang)`` (``distance``, ``time``, ``wear``),
``label(estimate.km_per_day_basis, lang)`` (``history``, ``vehicle_age``, ``default``),
``label(cc.status, lang)`` (``active``, ``stored``). Templates with fields are documented in
the table (e.g. ``label("due_in_days", "de", days=12)`` -> ``"fällig in 12 Tagen"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Literal

from protocols.cbs_types import CbsType
from protocols.errors import CbsError

__all__ = [
    "DEFAULT_LANGUAGE",
    "LABELS",
    "LABEL_KEYS",
    "LANGUAGES",
    "SERVICE_NAMES",
    "Language",
    "UnknownLabelError",
    "UnsupportedLanguageError",
    "check_language",
    "due_range_words",
    "forecast_range_words",
    "label",
    "service_name",
]

Language = Literal["en", "de", "zh"]
LANGUAGES: tuple[Language, ...] = ("en", "de", "zh")
DEFAULT_LANGUAGE: Language = "en"


class UnsupportedLanguageError(CbsError, ValueError):
    """A language code outside :data:`LANGUAGES` (a configuration or caller error)."""


class UnknownLabelError(CbsError, KeyError):
    """A label key that is not in the table (a programming error: the keys are fixed)."""


# Service names per the protocol's CBS table (section 3), one entry per CbsType value.
SERVICE_NAMES: dict[str, dict[Language, str]] = {
    "engine_oil": {"en": "Engine oil and filter", "de": "Motoröl und Filter",
                   "zh": "机油及机油滤清器"},
    "brake_pads_front": {"en": "Front brake pads", "de": "Bremsbeläge vorn", "zh": "前制动片"},
    "brake_fluid": {"en": "Brake fluid", "de": "Bremsflüssigkeit", "zh": "制动液"},
    "microfilter": {"en": "Cabin microfilter", "de": "Mikrofilter", "zh": "空调微尘滤清器"},
    "brake_pads_rear": {"en": "Rear brake pads", "de": "Bremsbeläge hinten", "zh": "后制动片"},
    "particulate_filter": {"en": "Particulate filter", "de": "Partikelfilter", "zh": "颗粒过滤器"},
    "battery": {"en": "Battery", "de": "Batterie", "zh": "蓄电池"},
    "transfer_case_oil": {"en": "Transfer case / differential oil",
                          "de": "Verteilergetriebe-/Differenzialöl", "zh": "分动箱/差速器油"},
    "spark_plugs_adaptive": {"en": "Spark or glow plugs (adaptive)",
                             "de": "Zünd- oder Glühkerzen (adaptiv)",
                             "zh": "火花塞或预热塞（自适应）"},
    "nox_additive": {"en": "NOx additive (AdBlue)", "de": "NOx-Additiv (AdBlue)",
                     "zh": "尾气处理液（AdBlue）"},
    "spark_plugs": {"en": "Spark plugs", "de": "Zündkerzen", "zh": "火花塞"},
    "vehicle_check": {"en": "Vehicle check", "de": "Fahrzeug-Check", "zh": "车辆检查"},
    "coolant": {"en": "Coolant", "de": "Kühlmittel", "zh": "冷却液"},
    "pre_delivery_inspection": {"en": "Pre-delivery inspection", "de": "Übergabedurchsicht",
                                "zh": "交车前检查"},
    "running_in_check": {"en": "Running-in check", "de": "Einfahrkontrolle", "zh": "磨合期检查"},
    "particulate_filter_additive": {"en": "Particulate filter additive",
                                    "de": "Partikelfilter-Additiv", "zh": "颗粒过滤器添加剂"},
    "statutory_inspection": {"en": "Statutory vehicle inspection", "de": "Hauptuntersuchung (HU)",
                             "zh": "车辆法定年检"},
    "emission_inspection": {"en": "Exhaust emission inspection", "de": "Abgasuntersuchung (AU)",
                            "zh": "尾气排放检测"},
    "transmission_oil": {"en": "Transmission oil", "de": "Getriebeöl", "zh": "变速箱油"},
    "tyre_age": {"en": "Tyre age", "de": "Reifenalter", "zh": "轮胎使用年限"},
    "clutch": {"en": "Clutch", "de": "Kupplung", "zh": "离合器"},
    "shock_absorbers": {"en": "Shock absorbers", "de": "Stoßdämpfer", "zh": "减震器"},
    "unknown": {"en": "Unknown service", "de": "Unbekannte Serviceposition", "zh": "未知保养项目"},
}

LABELS: dict[str, dict[Language, str]] = {
    # --- forecast status (ServiceForecast.status, Summary.status) -------------------------
    "ok": {"en": "OK", "de": "OK", "zh": "正常"},
    "due_soon": {"en": "Due soon", "de": "Bald fällig", "zh": "即将到期"},
    "overdue": {"en": "Overdue", "de": "Überfällig", "zh": "已逾期"},
    # --- forecast basis (ServiceForecast.basis) -------------------------------------------
    "distance": {"en": "Distance", "de": "Strecke", "zh": "里程"},
    "time": {"en": "Time", "de": "Zeit", "zh": "时间"},
    "wear": {"en": "Wear", "de": "Verschleiß", "zh": "磨损"},
    # --- daily-distance basis (Estimate.km_per_day_basis) ---------------------------------
    "history": {"en": "Vehicle history", "de": "Fahrzeughistorie", "zh": "车辆历史记录"},
    "vehicle_age": {"en": "Vehicle age", "de": "Fahrzeugalter", "zh": "车龄"},
    "default": {"en": "Default", "de": "Standardwert", "zh": "默认值"},
    # --- check-control status (CheckControlEntry.status) ----------------------------------
    "active": {"en": "Active", "de": "Aktiv", "zh": "当前有效"},
    "stored": {"en": "Stored", "de": "Gespeichert", "zh": "已存储"},
    # --- headings of the reception view ---------------------------------------------------
    "vin": {"en": "VIN", "de": "FIN", "zh": "车辆识别号"},
    "mileage": {"en": "Mileage", "de": "Kilometerstand", "zh": "行驶里程"},
    "data_date": {"en": "Data date", "de": "Datenstand", "zh": "数据日期"},
    "read_at": {"en": "Read at", "de": "Gelesen um", "zh": "读取时间"},
    "key": {"en": "Key", "de": "Schlüssel", "zh": "钥匙"},
    "fuel_level": {"en": "Fuel level", "de": "Tankfüllung", "zh": "燃油量"},
    "service": {"en": "Service", "de": "Serviceposition", "zh": "保养项目"},
    "status": {"en": "Status", "de": "Status", "zh": "状态"},
    "basis": {"en": "Basis", "de": "Grundlage", "zh": "依据"},
    "due": {"en": "Due", "de": "Fällig", "zh": "到期"},
    "km_left": {"en": "km left", "de": "Rest-km", "zh": "剩余里程（公里）"},
    "days_left": {"en": "Days left", "de": "Resttage", "zh": "剩余天数"},
    "next_due": {"en": "Next due", "de": "Nächste Fälligkeit", "zh": "下次到期"},
    "km_per_day": {"en": "km per day", "de": "km pro Tag", "zh": "日均里程（公里）"},
    "check_control": {"en": "Check control", "de": "Check-Control", "zh": "检查控制信息"},
    "faults": {"en": "Faults", "de": "Fehlerspeicher", "zh": "故障码"},
    "confirmed": {"en": "Confirmed", "de": "Bestätigt", "zh": "已确认"},
    "none": {"en": "None", "de": "Keine", "zh": "无"},
    "not_available": {"en": "n/a", "de": "k. A.", "zh": "无数据"},
    "express_lane": {"en": "Express lane", "de": "Express-Service", "zh": "快速保养通道"},
    "yes": {"en": "Yes", "de": "Ja", "zh": "是"},
    "no": {"en": "No", "de": "Nein", "zh": "否"},
    "waiting_for_key": {"en": "Waiting for a key", "de": "Warte auf Schlüssel", "zh": "等待钥匙"},
    # --- units ----------------------------------------------------------------------------
    "unit_km": {"en": "km", "de": "km", "zh": "公里"},
    "unit_days": {"en": "days", "de": "Tage", "zh": "天"},
    "unit_minutes": {"en": "min", "de": "Min.", "zh": "分钟"},
    # --- templates (fields in braces) -----------------------------------------------------
    "due_in_days": {"en": "due in {days} days", "de": "fällig in {days} Tagen",
                    "zh": "{days} 天后到期"},
    "overdue_by_days": {"en": "overdue by {days} days", "de": "seit {days} Tagen überfällig",
                        "zh": "已逾期 {days} 天"},
    # --- when, in words: the forecast's interval (due_range_words) ------------------------
    "today": {"en": "today", "de": "heute", "zh": "今天"},
    "in_days": {"en": "in {days} days", "de": "in {days} Tagen", "zh": "{days} 天后"},
    "days_ago": {"en": "{days} days ago", "de": "vor {days} Tagen", "zh": "{days} 天前"},
    "in_days_range": {"en": "in {early}-{late} days", "de": "in {early}-{late} Tagen",
                      "zh": "{early}-{late} 天后"},
    "days_ago_range": {"en": "{near}-{far} days ago", "de": "vor {near}-{far} Tagen",
                       "zh": "{near}-{far} 天前"},
    "days_ago_to_ahead": {"en": "between {ago} days ago and {ahead} days from now",
                          "de": "zwischen vor {ago} Tagen und in {ahead} Tagen",
                          "zh": "{ago} 天前至 {ahead} 天后之间"},
    # --- the priced proposal (Readout.proposal) -------------------------------------------
    "proposal": {"en": "Service proposal", "de": "Serviceangebot", "zh": "保养报价"},
    "required": {"en": "Due now", "de": "Jetzt fällig", "zh": "本次需保养"},
    "optional": {"en": "Optional: do it now and save a visit",
                 "de": "Optional: gleich mit erledigen und einen Termin sparen",
                 "zh": "可选：本次一并完成，省去一次进店"},
    "optional_hint": {"en": "{service} due in {days} days: do it now and save a visit",
                      "de": "{service} in {days} Tagen fällig: gleich mit erledigen und einen "
                            "Termin sparen",
                      "zh": "{service}将在 {days} 天后到期：本次一并完成，省去一次进店"},
    "optional_hint_range": {"en": "{service} due {when}: do it now and save a visit",
                            "de": "{service} fällig {when}: gleich mit erledigen und einen "
                                  "Termin sparen",
                            "zh": "{service}预计{when}到期：本次一并完成，省去一次进店"},
    "labour": {"en": "Labour", "de": "Arbeitslohn", "zh": "工时费"},
    "labour_minutes": {"en": "Labour time", "de": "Arbeitszeit", "zh": "工时（分钟）"},
    "labour_rate": {"en": "Labour rate per hour", "de": "Stundenverrechnungssatz",
                    "zh": "每小时工时费"},
    "parts": {"en": "Parts", "de": "Teile", "zh": "配件"},
    "part_number": {"en": "Part number", "de": "Teilenummer", "zh": "零件号"},
    "description": {"en": "Description", "de": "Bezeichnung", "zh": "说明"},
    "quantity": {"en": "Quantity", "de": "Menge", "zh": "数量"},
    "unit_price": {"en": "Unit price", "de": "Einzelpreis", "zh": "单价"},
    "amount": {"en": "Amount", "de": "Betrag", "zh": "金额"},
    "net": {"en": "Net", "de": "Netto", "zh": "不含税金额"},
    "tax": {"en": "Tax", "de": "MwSt.", "zh": "税额"},
    "gross": {"en": "Total incl. tax", "de": "Gesamt inkl. MwSt.", "zh": "含税总计"},
    "subtotal": {"en": "Subtotal", "de": "Zwischensumme", "zh": "小计"},
    "total": {"en": "Total", "de": "Gesamt", "zh": "总计"},
    "total_with_optional": {"en": "Total with optional items", "de": "Gesamt mit optionalen "
                            "Positionen", "zh": "含可选项目总计"},
    "express_fits": {"en": "Fits the express lane ({minutes} min)",
                     "de": "Passt in den Express-Service ({minutes} Min.)",
                     "zh": "可走快速保养通道（{minutes} 分钟）"},
    "express_does_not_fit": {"en": "Does not fit the express lane ({minutes} min)",
                             "de": "Passt nicht in den Express-Service ({minutes} Min.)",
                             "zh": "不适用快速保养通道（{minutes} 分钟）"},
    "not_in_catalogue": {"en": "Not in the price catalogue: price on request",
                         "de": "Nicht im Preiskatalog: Preis auf Anfrage",
                         "zh": "不在价目表中：价格另询"},
    "nothing_due": {"en": "Nothing due", "de": "Nichts fällig", "zh": "暂无到期项目"},
    # --- why a visit does not go to the express lane (agent.domain.express) ----------------
    "express_nothing_due": {"en": "nothing is due", "de": "nichts ist fällig",
                            "zh": "暂无到期项目"},
    "express_not_express_item": {"en": "a due item is not an express-lane job",
                                 "de": "eine fällige Position ist keine Express-Arbeit",
                                 "zh": "有到期项目不属于快速保养范围"},
    "express_check_control_active": {"en": "an active check-control message",
                                     "de": "eine aktive Check-Control-Meldung",
                                     "zh": "存在当前有效的检查控制信息"},
    "express_fault_confirmed": {"en": "a confirmed fault on the key",
                                "de": "ein bestätigter Fehler im Schlüssel",
                                "zh": "钥匙中有已确认的故障"},
    "express_diagnosis_fault": {"en": "the vehicle test found a confirmed fault",
                                "de": "der Fahrzeugtest fand einen bestätigten Fehler",
                                "zh": "车辆检测发现已确认的故障"},
    "express_unpriced_item": {"en": "an item is not in the price catalogue",
                              "de": "eine Position ist nicht im Preiskatalog",
                              "zh": "有项目不在价目表中"},
    "express_over_budget": {"en": "the work takes longer than the lane's time",
                            "de": "die Arbeit dauert länger als der Express-Service erlaubt",
                            "zh": "工时超出快速保养通道的时限"},
    "express_no_proposal": {"en": "no priced proposal", "de": "kein Preisangebot",
                            "zh": "无报价"},
    # --- reminders --------------------------------------------------------------------------
    "reminder": {"en": "Service reminder", "de": "Serviceerinnerung", "zh": "保养提醒"},
}

LABEL_KEYS: tuple[str, ...] = tuple(LABELS)


def check_language(lang: str) -> Language:
    """``lang`` if it is one of :data:`LANGUAGES`, else :class:`UnsupportedLanguageError`."""
    for known in LANGUAGES:
        if lang == known:
            return known
    raise UnsupportedLanguageError(f"language {lang!r} is not supported; choose one of "
                                   f"{', '.join(LANGUAGES)}")


def service_name(type_name: str, lang: str) -> str:
    """The name of CBS service ``type_name`` (a protocol type name such as ``engine_oil``) in
    ``lang``. A name outside the table (a newer code) gets the ``unknown`` name, never an
    error: a new service code must not break the reception view."""
    language = check_language(lang)
    names = SERVICE_NAMES.get(str(type_name)) or SERVICE_NAMES[CbsType.UNKNOWN.value]
    return names[language]


def label(key: str, lang: str, **fields: object) -> str:
    """The label ``key`` in ``lang``; with ``fields``, the template is filled in
    (``label("due_in_days", "en", days=3)`` -> ``"due in 3 days"``). Raises
    :class:`UnknownLabelError` for a key outside :data:`LABEL_KEYS` and
    :class:`UnsupportedLanguageError` for a language outside :data:`LANGUAGES`."""
    language = check_language(lang)
    try:
        text = LABELS[key][language]
    except KeyError:
        raise UnknownLabelError(f"no label {key!r}") from None
    return text.format(**fields) if fields else text


def due_range_words(early_days: int, late_days: int, lang: str) -> str:
    """When an item falls due, in words, from the days between the read date and the two ends
    of its interval (``due_date_early``, ``due_date_late``; negative: in the past):
    ``due_range_words(40, 70, "en")`` -> ``"in 40-70 days"``, ``(0, 0)`` -> ``"today"``,
    ``(-10, -3)`` -> ``"3-10 days ago"``. Raises :class:`UnsupportedLanguageError`."""
    early, late = min(early_days, late_days), max(early_days, late_days)
    if early == late:
        if early == 0:
            return label("today", lang)
        return label("in_days", lang, days=early) if early > 0 else label("days_ago", lang, days=-early)
    if early >= 0:
        return label("in_days_range", lang, early=early, late=late)
    if late <= 0:
        return label("days_ago_range", lang, near=-late, far=-early)
    return label("days_ago_to_ahead", lang, ago=-early, ahead=late)


def forecast_range_words(forecast: Mapping[str, object], lang: str) -> str | None:
    """:func:`due_range_words` for a ``services[].forecast`` object as published (ISO dates);
    None when it has no interval (a payload of an earlier version) or is malformed."""
    try:
        due = date.fromisoformat(str(forecast["due_date"]))
        early = date.fromisoformat(str(forecast["due_date_early"]))
        late = date.fromisoformat(str(forecast["due_date_late"]))
        days_left = forecast["days_left"]
    except (KeyError, ValueError):
        return None
    if not isinstance(days_left, int):
        return None
    return due_range_words(days_left + (early - due).days, days_left + (late - due).days, lang)
