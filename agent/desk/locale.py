"""The desk's languages: words (agent.domain.i18n first, then :data:`DESK_LABELS`) and
Babel's locale formats for dates, numbers and money.

The product's language codes are ``en``, ``de`` and ``zh`` (Simplified Chinese); the browser
may also say ``zh-Hans``, ``zh-CN`` or ``de-DE`` (:func:`language_of`). Amounts come as
exact decimal strings and are formatted from :class:`~decimal.Decimal`, never floats.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_currency, format_decimal

from agent.domain import i18n
from agent.domain.i18n import Language

__all__ = ["BABEL_LOCALES", "DESK_LABELS", "Words", "language_of"]

BABEL_LOCALES: dict[Language, str] = {"en": "en_GB", "de": "de_DE", "zh": "zh_Hans_CN"}
HTML_LANG: dict[Language, str] = {"en": "en", "de": "de", "zh": "zh-Hans"}
LANGUAGE_NAMES: dict[Language, str] = {"en": "English", "de": "Deutsch", "zh": "简体中文"}

DESK_LABELS: dict[str, dict[Language, str]] = {
    "title": {"en": "Service reception", "de": "Serviceannahme", "zh": "服务接待"},
    "queue": {"en": "Today's vehicles", "de": "Fahrzeuge heute", "zh": "今日车辆"},
    "queue_empty": {"en": "No key read today yet. Lay a key on the reader.",
                    "de": "Heute noch kein Schlüssel gelesen. Bitte Schlüssel auflegen.",
                    "zh": "今天尚未读取钥匙。请将钥匙放在读卡器上。"},
    "model_year": {"en": "Model year", "de": "Modelljahr", "zh": "车型年份"},
    "broker_ok": {"en": "Connected", "de": "Verbunden", "zh": "已连接"},
    "broker_connecting": {"en": "Connecting to the message broker …",
                          "de": "Verbinde mit dem Nachrichtenbroker …", "zh": "正在连接消息服务器…"},
    "broker_lost": {"en": "Message broker unreachable: retrying. New keys appear once it is back.",
                    "de": "Nachrichtenbroker nicht erreichbar: neuer Versuch läuft. Neue Schlüssel "
                          "erscheinen, sobald er wieder da ist.",
                    "zh": "消息服务器无法连接：正在重试。恢复后将显示新的钥匙。"},
    "desk_lost": {"en": "Connection to the desk lost: reconnecting …",
                  "de": "Verbindung zur Serviceannahme verloren: verbinde neu …",
                  "zh": "与接待系统的连接中断：正在重连…"},
    "agent_away": {"en": "Key reader {reader} is away (agent offline or silent)",
                   "de": "Schlüsselleser {reader} nicht erreichbar (Agent offline oder stumm)",
                   "zh": "钥匙读卡器 {reader} 不在线（代理离线或无响应）"},
    "reader_unplugged": {"en": "Key reader {reader}: reader unplugged",
                         "de": "Schlüsselleser {reader}: Leser getrennt",
                         "zh": "钥匙读卡器 {reader}：读卡器未连接"},
    "open": {"en": "Open", "de": "Öffnen", "zh": "打开"},
    "back": {"en": "Back to today's vehicles", "de": "Zurück zu den Fahrzeugen heute",
             "zh": "返回今日车辆"},
    "services": {"en": "Service items", "de": "Servicepositionen", "zh": "保养项目"},
    "made_due_by": {"en": "Made due by", "de": "Fällig durch", "zh": "到期依据"},
    "key_faults": {"en": "Faults on the key", "de": "Fehler im Schlüssel", "zh": "钥匙中的故障"},
    "diagnosis": {"en": "Vehicle test", "de": "Fahrzeugtest", "zh": "车辆检测"},
    "no_diagnosis": {"en": "No vehicle test yet. Plug the tester into the OBD socket.",
                     "de": "Noch kein Fahrzeugtest. Tester an die OBD-Buchse anschließen.",
                     "zh": "尚无车辆检测。请将检测仪连接到 OBD 接口。"},
    "outcome": {"en": "Outcome", "de": "Ergebnis", "zh": "结果"},
    "ecu": {"en": "Control unit", "de": "Steuergerät", "zh": "控制单元"},
    "address": {"en": "Address", "de": "Adresse", "zh": "地址"},
    "software": {"en": "Software", "de": "Software", "zh": "软件"},
    "warning_lamp": {"en": "Warning lamp", "de": "Warnleuchte", "zh": "故障警告灯"},
    "warning_lamp_on": {"en": "Warning lamp ON", "de": "Warnleuchte AN", "zh": "故障警告灯亮"},
    "vin_mismatch": {"en": "VIN mismatch: {ecus} report another VIN",
                     "de": "FIN-Abweichung: {ecus} melden eine andere FIN",
                     "zh": "车辆识别号不一致：{ecus} 报告了不同的识别号"},
    "vin_short": {"en": "VIN mismatch", "de": "FIN-Abweichung", "zh": "车辆识别号不一致"},
    "absent_ecus": {"en": "Not answering", "de": "Antworten nicht", "zh": "未响应"},
    "pending": {"en": "Pending", "de": "Sporadisch", "zh": "待定"},
    "errors": {"en": "Errors", "de": "Fehler", "zh": "错误"},
    "reminders": {"en": "Reminders", "de": "Erinnerungen", "zh": "提醒"},
    "reminder_planned": {"en": "Reminder planned for {day}", "de": "Erinnerung geplant am {day}",
                         "zh": "计划于 {day} 提醒"},
    "reminder_sent": {"en": "Reminder sent {day}", "de": "Erinnerung gesendet am {day}",
                      "zh": "已于 {day} 发送提醒"},
    "no_reminders": {"en": "No reminders planned", "de": "Keine Erinnerungen geplant",
                     "zh": "暂无计划提醒"},
    "visits": {"en": "Earlier visits", "de": "Frühere Besuche", "zh": "以往到店记录"},
    "no_visits": {"en": "No earlier visit seen at this desk",
                  "de": "Kein früherer Besuch an dieser Annahme",
                  "zh": "此接待处无以往到店记录"},
    "fault_finding_line": {"en": "Fault finding {ecu}: {codes}",
                           "de": "Fehlersuche {ecu}: {codes}",
                           "zh": "故障查找 {ecu}：{codes}"},
    "ecu_at": {"en": "control unit {address}", "de": "Steuergerät {address}",
               "zh": "控制单元 {address}"},
    "fault_finding_note": {"en": "repair quoted once the cause is found",
                           "de": "Reparatur nach Befund auf Anfrage",
                           "zh": "查明原因后另行报价维修"},
    "recurring": {"en": "Recurring: confirmed at the previous visit too",
                  "de": "Wiederkehrend: schon beim letzten Besuch bestätigt",
                  "zh": "反复出现：上次到店时也已确认"},
    "recurring_short": {"en": "recurring", "de": "wiederkehrend", "zh": "反复出现"},
    "attention": {"en": "Check before anything else", "de": "Vorab prüfen", "zh": "请优先检查"},
    "on_request": {"en": "on request", "de": "auf Anfrage", "zh": "另询"},
    "agree": {"en": "Agreed", "de": "Zugestimmt", "zh": "同意"},
    "recalculate": {"en": "Update totals", "de": "Summen aktualisieren", "zh": "更新合计"},
    "approve": {"en": "Record the customer's approval", "de": "Zustimmung des Kunden speichern",
                "zh": "记录客户确认"},
    "approved_ok": {"en": "Approval recorded ({id}). It reaches the workshop even if the "
                          "network is down now.",
                    "de": "Zustimmung gespeichert ({id}). Sie erreicht die Werkstatt auch, "
                          "wenn das Netz gerade fehlt.",
                    "zh": "已记录确认（{id}）。即使网络暂时中断，也会送达车间。"},
    "approvals_seen": {"en": "Approved at {time}: {gross}", "de": "Zugestimmt um {time}: {gross}",
                       "zh": "已于 {time} 确认：{gross}"},
    "print": {"en": "Printable proposal (PDF)", "de": "Angebot zum Drucken (PDF)",
              "zh": "可打印报价（PDF）"},
    "signature": {"en": "Customer's signature", "de": "Unterschrift des Kunden", "zh": "客户签名"},
    "date": {"en": "Date", "de": "Datum", "zh": "日期"},
    "no_proposal": {"en": "This readout carries no priced proposal.",
                    "de": "Diese Auslesung enthält kein Preisangebot.", "zh": "此次读取没有报价。"},
    "incomplete": {"en": "Totals leave out lines priced on request.",
                   "de": "Die Summen enthalten keine Positionen mit Preis auf Anfrage.",
                   "zh": "合计不含价格另询的项目。"},
    "express_verdict_yes": {"en": "Express lane: yes", "de": "Express-Service: ja",
                            "zh": "快速保养通道：是"},
    "express_verdict_no": {"en": "Express lane: no", "de": "Express-Service: nein",
                           "zh": "快速保养通道：否"},
    "minutes_of": {"en": "{minutes} of {budget} min", "de": "{minutes} von {budget} Min.",
                   "zh": "{minutes} / {budget} 分钟"},
    "unknown_vehicle": {"en": "This vehicle has not been read at this desk.",
                        "de": "Dieses Fahrzeug wurde an dieser Annahme nicht gelesen.",
                        "zh": "此接待处未读取过该车辆。"},
    "newer_readout": {"en": "The key was read again: check the proposal once more before approving.",
                      "de": "Der Schlüssel wurde erneut gelesen: bitte das Angebot vor der "
                            "Zustimmung noch einmal prüfen.",
                      "zh": "钥匙已重新读取：确认前请再次核对报价。"},
    "news": {"en": "New data for this vehicle (key read, vehicle test or approval): show it",
             "de": "Neue Daten zu diesem Fahrzeug (Schlüssel, Fahrzeugtest oder Zustimmung): "
                   "anzeigen",
             "zh": "此车辆有新数据（钥匙读取、车辆检测或确认）：点击查看"},
    "login": {"en": "Sign in", "de": "Anmelden", "zh": "登录"},
    "logout": {"en": "Sign out", "de": "Abmelden", "zh": "退出"},
    "password": {"en": "Password", "de": "Passwort", "zh": "密码"},
    "login_failed": {"en": "Wrong password.", "de": "Falsches Passwort.", "zh": "密码错误。"},
    "login_limited": {"en": "Too many attempts: wait a minute.",
                      "de": "Zu viele Versuche: bitte eine Minute warten.",
                      "zh": "尝试次数过多：请稍候一分钟。"},
    "language": {"en": "Language", "de": "Sprache", "zh": "语言"},
    "reader": {"en": "Reader", "de": "Leser", "zh": "读卡器"},
    "outcome_complete": {"en": "complete", "de": "vollständig", "zh": "完成"},
    "outcome_partial": {"en": "partial", "de": "unvollständig", "zh": "部分完成"},
    "outcome_no_response": {"en": "no ECU answered (ignition off?)",
                            "de": "kein Steuergerät antwortet (Zündung aus?)",
                            "zh": "无控制单元响应（点火关闭？）"},
    "outcome_aborted": {"en": "aborted", "de": "abgebrochen", "zh": "已中止"},
}


def language_of(value: str | None, default: Language = i18n.DEFAULT_LANGUAGE) -> Language:
    """The product language for ``?lang=`` or a browser tag: ``zh-Hans``/``zh-CN``/``zh``
    -> ``zh``, ``de-DE`` -> ``de``; anything else -> ``default``."""
    if not value:
        return default
    head = value.strip().replace("_", "-").split("-")[0].lower()
    for known in i18n.LANGUAGES:
        if head == known:
            return known
    return default


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


class Words:
    """Everything a page needs to speak ``lang``: ``t(key, **fields)``, service names and
    Babel's formats. Passed to the templates as ``w``."""

    def __init__(self, lang: Language) -> None:
        self.lang = lang
        self.locale = BABEL_LOCALES[lang]
        self.html_lang = HTML_LANG[lang]

    def t(self, key: str, **fields: object) -> str:
        entry = DESK_LABELS.get(key)
        if entry is not None:
            text = entry[self.lang]
            return text.format(**fields) if fields else text
        if key in i18n.LABELS:
            return i18n.label(key, self.lang, **fields)
        return key

    def service(self, type_name: object) -> str:
        return i18n.service_name(str(type_name), self.lang)

    def money(self, amount: Any, currency: str) -> str:
        value = _decimal(amount)
        if value is None:
            return self.t("on_request")
        return str(format_currency(value, currency, locale=self.locale))

    def number(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return self.t("not_available")
        return format_decimal(value, locale=self.locale)

    def km(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self.t("not_available")
        return f"{format_decimal(value, locale=self.locale)} {self.t('unit_km')}"

    def day(self, value: Any) -> str:
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value)
            except ValueError:
                return str(value)
        if not isinstance(value, date):
            return self.t("not_available")
        return format_date(value, format="medium", locale=self.locale)

    def clock(self, value: datetime | None, zone: Any) -> str:
        if value is None:
            return self.t("not_available")
        return format_time(value.astimezone(zone), format="short", locale=self.locale)

    def moment(self, value: datetime | None, zone: Any) -> str:
        if value is None:
            return self.t("not_available")
        return format_datetime(value.astimezone(zone), format="medium", locale=self.locale)

    def status(self, value: object) -> str:
        return self.t(str(value)) if value in ("ok", "due_soon", "overdue") else "?"
