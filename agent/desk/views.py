"""What the pages show, built from the desk's state: plain values for the templates, the PDF
and the approval. Pure; the web layer only picks the record and the language.

A vehicle's proposal becomes *lines* the advisor ticks: every required and optional service
line of the published proposal (``service:{index}``) and one fault-finding line per control
unit with a confirmed fault, of the key or of the latest vehicle test (``fault:{ecu}``),
priced from the desk's catalogue (agent.domain.approval.fault_finding_lines). Without a
selection the required lines are ticked, so the page first shows the published ``totals``;
fault-finding lines are offered, like optional ones.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from agent.desk.locale import Words
from agent.desk.state import DeskState, VehicleRecord, model_year, parse_time
from agent.domain.approval import (
    Approval,
    ApprovalExpress,
    ApprovalLines,
    ApprovedFault,
    ApprovedFaultFinding,
    ApprovedService,
    FaultFindingLine,
    PricedLine,
    approval_id,
    decimal_places,
    fault_finding_lines,
    proposal_lines,
    selection_totals,
)
from agent.domain.catalogue import FaultFinding
from agent.domain.express import ExpressVerdict, express_verdict, reason_text
from agent.domain.i18n import check_language, service_name
from agent.domain.models import ProposalTotals

__all__ = ["Selection", "queue_rows", "selection_of", "vehicle_view"]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass
class Selection:
    """The lines of one vehicle's proposal and which of them are ticked."""

    services: list[PricedLine]
    faults: list[FaultFindingLine]
    ticked: set[str]
    currency: str
    tax_rate_pct: Decimal
    places: int
    totals: ProposalTotals | None = None
    verdict: ExpressVerdict | None = None

    def services_ticked(self) -> list[PricedLine]:
        return [line for line in self.services if line.key in self.ticked]

    def faults_ticked(self) -> list[FaultFindingLine]:
        return [line for line in self.faults if line.key in self.ticked]


def _decimal_or_none(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value)) if isinstance(value, str | int) else None
    except InvalidOperation:
        return None
    return number if number is not None and number.is_finite() and number >= 0 else None


def selection_of(record: VehicleRecord, ticked: Collection[str] | None,
                 fault_finding: FaultFinding | None = None) -> Selection | None:
    """The proposal's lines with ``ticked`` (None: the required lines), their totals and the
    express verdict for them; None when the readout has no proposal. ``fault_finding`` (the
    desk's catalogue's) gives the fault-finding minutes, the published proposal the labour
    rate, so every line of the page is in the proposal's currency and rate; without it the
    fault-finding lines are on request."""
    proposal = record.latest.get("proposal")
    if not isinstance(proposal, Mapping):
        return None
    services = proposal_lines(proposal)
    places = decimal_places(proposal)
    faults = fault_finding_lines(
        record.latest, record.diagnosis, fault_finding, places=places,
        labour_rate_per_hour=_decimal_or_none(proposal.get("labour_rate_per_hour")))
    known = {line.key for line in services} | {line.key for line in faults}
    chosen = ({line.key for line in services if line.required} if ticked is None
              else {key for key in ticked if key in known})
    rate = _decimal_or_none(proposal.get("tax_rate_pct", "0")) or Decimal(0)
    selection = Selection(services=services, faults=faults, ticked=chosen,
                          currency=str(proposal.get("currency", "")), tax_rate_pct=rate,
                          places=places)
    picked: list[PricedLine | FaultFindingLine] = [*selection.services_ticked(),
                                                   *selection.faults_ticked()]
    selection.totals = selection_totals(picked, tax_rate_pct=rate, places=selection.places)
    selection.verdict = express_verdict(
        record.latest, record.diagnosis, selected_minutes=selection.totals.labour_minutes,
        selected_unpriced=any(not line.priced for line in picked))
    return selection


def fault_line_name(line: FaultFindingLine, w: Words) -> str:
    """``Fault finding DME (0x12): P0301``, in the page's language."""
    ecu = (f"{line.ecu_name} (0x{line.ecu:02X})" if line.ecu_name else
           w.t("ecu_at", address=f"0x{line.ecu:02X}"))
    return w.t("fault_finding_line", ecu=ecu, codes=", ".join(line.codes))


def verdict_view(verdict: ExpressVerdict, w: Words) -> dict[str, Any]:
    return {"eligible": verdict.eligible,
            "text": w.t("express_verdict_yes" if verdict.eligible else "express_verdict_no"),
            "reasons": [reason_text(reason, w.lang) for reason in verdict.reasons],
            "minutes": (w.t("minutes_of", minutes=verdict.minutes, budget=verdict.budget_minutes)
                        if verdict.minutes is not None and verdict.budget_minutes is not None
                        else "")}


def totals_view(selection: Selection, w: Words) -> dict[str, Any]:
    """Totals as exact strings (``value``) and in the locale's form (``text``)."""
    totals = selection.totals
    assert totals is not None and selection.verdict is not None
    out: dict[str, Any] = {}
    for name in ("labour", "parts", "net", "tax", "gross"):
        value = format(getattr(totals, name), "f")
        out[name] = {"value": value, "text": w.money(value, selection.currency)}
    out["labour_minutes"] = totals.labour_minutes
    out["complete"] = totals.complete
    out["incomplete_text"] = "" if totals.complete else w.t("incomplete")
    out["express"] = verdict_view(selection.verdict, w)
    return out


def queue_rows(state: DeskState, now: datetime, w: Words) -> list[dict[str, Any]]:
    today = state.today(now)
    rows = []
    for record in state.queue(now):
        data = record.latest
        vehicle = _dict(data.get("vehicle"))
        status = str(_dict(data.get("summary")).get("status", ""))
        verdict = express_verdict(data, record.diagnosis)
        rows.append({
            "vin": record.vin, "reader": str(data.get("reader", "")),
            "time": w.clock(record.read_at, state.zone),
            "model_year": model_year(record.vin, vehicle.get("build_month"), today) or "–",
            "mileage": w.km(vehicle.get("mileage_km")),
            "status": status if status in ("ok", "due_soon", "overdue") else "unknown",
            "status_text": w.status(status),
            "express": verdict.eligible,
            "express_text": w.t("yes" if verdict.eligible else "no"),
            "alerts": diagnosis_alerts(record.diagnosis, record.vin, w)})
    return rows


def _vin_mismatch(diagnosis: Mapping[str, Any], vin: str) -> bool:
    vehicle = _dict(diagnosis.get("vehicle"))
    reported = _text_or_none(vehicle.get("vin"))
    return (vehicle.get("vin_consistent") is False or (reported is not None and reported != vin)
            or any(isinstance(_dict(e).get("vin"), str) and _dict(e).get("vin") != vin
                   for e in _list(diagnosis.get("ecus"))))


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def diagnosis_alerts(diagnosis: Mapping[str, Any] | None, vin: str, w: Words) -> list[str]:
    """What the advisor must see before anything else: the warning lamp on, the car's VIN
    other than the key's (shown in the queue and at the top of the vehicle page)."""
    if diagnosis is None:
        return []
    alerts = []
    if _dict(diagnosis.get("summary")).get("warning_lamp") is True:
        alerts.append(w.t("warning_lamp_on"))
    if _vin_mismatch(diagnosis, vin):
        alerts.append(w.t("vin_short"))
    return alerts


def link_state(state: DeskState, now: datetime, w: Words) -> dict[str, Any]:
    """The broker and agents as the pages' banner shows them."""
    problems: list[str] = []
    if not state.broker_connected:
        problems.append(w.t("broker_lost" if state.broker_was_connected else "broker_connecting"))
    else:
        for view in state.agents_away(now):
            problems.append(w.t("agent_away", reader=view.reader))
        for reader, view in sorted(state.agents.items()):
            if not view.away(now) and view.connected is False:
                problems.append(w.t("reader_unplugged", reader=reader))
    return {"ok": not problems, "problems": problems, "broker": state.broker_connected,
            "text": w.t("broker_ok")}


def _reminder_rows(record: VehicleRecord, w: Words, today: date,
                   window_days: int) -> list[dict[str, Any]]:
    rows = []
    sent = {(r.get("service", {}) or {}).get("index"): r for r in record.reminders.values()
            if isinstance(r.get("service"), dict)}
    for item in (_dict(s) for s in _list(record.latest.get("services"))):
        forecast = _dict(item.get("forecast"))
        # Reminders are planned from the early end of the interval (docs/reminders.md).
        due = forecast.get("due_date_early") or forecast.get("due_date")
        if not isinstance(due, str):
            continue
        try:
            due_day = date.fromisoformat(due)
        except ValueError:
            continue
        name = w.service(item.get("type"))
        reminder = sent.get(item.get("index"))
        if reminder is not None:
            created = parse_time(reminder.get("created_at"))
            rows.append({"service": name, "due": w.day(due_day),
                         "text": w.t("reminder_sent", day=w.day(created.date()
                                                                 if created else None))})
        elif due_day - timedelta(days=window_days) > today:
            rows.append({"service": name, "due": w.day(due_day),
                         "text": w.t("reminder_planned",
                                     day=w.day(due_day - timedelta(days=window_days)))})
    return rows


def _diagnosis_view(diagnosis: Mapping[str, Any] | None, vin: str, w: Words,
                    zone: Any) -> dict[str, Any] | None:
    if diagnosis is None:
        return None
    ecus = []
    mismatched = []
    for ecu in (_dict(e) for e in _list(diagnosis.get("ecus"))):
        address = ecu.get("address")
        name = ecu.get("name") if isinstance(ecu.get("name"), str) else (
            f"0x{address:03X}" if isinstance(address, int) else "?")
        ecu_vin = ecu.get("vin")
        if isinstance(ecu_vin, str) and ecu_vin != vin:
            mismatched.append(f"{name} ({ecu_vin})")
        dtcs = []
        for dtc in (_dict(d) for d in _list(ecu.get("dtcs"))):
            dtcs.append({"code": str(dtc.get("code", "")), "sae": str(dtc.get("sae") or ""),
                         "text": dtc_text(dtc, w),
                         "confirmed": dtc.get("confirmed") is True,
                         "pending": dtc.get("pending") is True,
                         "lamp": dtc.get("warning_lamp") is True,
                         "recurring": dtc.get("recurring") is True,
                         "occurrences": dtc.get("occurrences")})
        ecus.append({"name": name,
                     "address": f"0x{address:02X}" if isinstance(address, int) else "?",
                     "software": str(ecu.get("software") or ""),
                     "part_number": str(ecu.get("part_number") or ""),
                     "vin_mismatch": isinstance(ecu_vin, str) and ecu_vin != vin,
                     "dtcs": dtcs,
                     "errors": [str(_dict(e).get("detail") or _dict(e).get("kind") or "")
                                for e in _list(ecu.get("errors"))]})
    summary = _dict(diagnosis.get("summary"))
    vehicle = _dict(diagnosis.get("vehicle"))
    outcome = str(diagnosis.get("outcome", ""))
    absent = [f"0x{a:02X}" for a in _list(diagnosis.get("absent")) if isinstance(a, int)]
    return {"id": str(diagnosis.get("diagnosis_id", "")),
            "finished": w.moment(parse_time(diagnosis.get("finished_at")), zone),
            "outcome": w.t(f"outcome_{outcome}") if f"outcome_{outcome}" in _OUTCOMES else outcome,
            "warning_lamp": summary.get("warning_lamp") is True,
            "vin_consistent": vehicle.get("vin_consistent") is not False,
            # The key's VIN against the car's: an ECU reporting another VIN (a swapped or
            # mis-coded unit), or a report joined by key_readout_id whose VIN is another.
            "vin_mismatch": _vin_mismatch(diagnosis, vin),
            "mismatched": ", ".join(mismatched) or (
                str(vehicle["vin"]) if isinstance(vehicle.get("vin"), str)
                and vehicle.get("vin") != vin else
                "?" if vehicle.get("vin_consistent") is False else ""),
            "mileage": w.km(vehicle.get("mileage_km")) if vehicle.get("mileage_km") is not None
            else "",
            "ecus": ecus, "absent": ", ".join(absent)}


_OUTCOMES = {"outcome_complete", "outcome_partial", "outcome_no_response", "outcome_aborted"}

# A few generic SAE J2012 fault texts (the ISO 15031-6 names the workshop knows); a code
# outside the table shows its code and the words of its status.
DTC_TEXTS: dict[str, dict[str, str]] = {
    "P0300": {"en": "Random/multiple cylinder misfire detected",
              "de": "Zufällige/mehrfache Zündaussetzer erkannt", "zh": "检测到随机/多缸失火"},
    "P0301": {"en": "Cylinder 1 misfire detected", "de": "Zündaussetzer Zylinder 1",
              "zh": "检测到 1 号气缸失火"},
    "P0302": {"en": "Cylinder 2 misfire detected", "de": "Zündaussetzer Zylinder 2",
              "zh": "检测到 2 号气缸失火"},
    "P0171": {"en": "System too lean (bank 1)", "de": "Gemisch zu mager (Bank 1)",
              "zh": "系统过稀（第 1 列）"},
    "P0420": {"en": "Catalyst efficiency below threshold (bank 1)",
              "de": "Katalysatorwirkung unter Schwellwert (Bank 1)",
              "zh": "催化转化器效率低于阈值（第 1 列）"},
    "P0128": {"en": "Coolant temperature below thermostat regulating temperature",
              "de": "Kühlmitteltemperatur unter Thermostat-Regeltemperatur",
              "zh": "冷却液温度低于节温器调节温度"},
    "P0562": {"en": "System voltage low", "de": "Bordnetzspannung zu niedrig",
              "zh": "系统电压过低"},
}


def dtc_text(dtc: Mapping[str, Any], w: Words) -> str:
    sae = dtc.get("sae")
    known = DTC_TEXTS.get(sae) if isinstance(sae, str) else None
    if known is not None:
        return known[w.lang]
    return w.t("confirmed") if dtc.get("confirmed") is True else w.t("stored")


def vehicle_view(state: DeskState, record: VehicleRecord, w: Words, *,
                 ticked: Collection[str] | None, now: datetime,
                 window_days: int = 30,
                 fault_finding: FaultFinding | None = None) -> dict[str, Any]:
    """Everything the vehicle page (and its PDF) shows."""
    data = record.latest
    vehicle = _dict(data.get("vehicle"))
    today = state.today(now)
    services = []
    for item in (_dict(s) for s in _list(data.get("services"))):
        forecast = _dict(item.get("forecast"))
        status = str(forecast.get("status", ""))
        name = w.service(item.get("type"))
        if item.get("type") == "unknown":
            name += f" (0x{int(item.get('code') or 0):02X})"
        km_left = forecast.get("km_left", item.get("remaining_km"))
        basis = forecast.get("basis")
        services.append({
            "name": name, "status": status if status in ("ok", "due_soon", "overdue")
            else "unknown", "status_text": w.status(status),
            "due": w.day(forecast.get("due_date")),
            "due_range": (f"{w.day(forecast['due_date_early'])} – {w.day(forecast['due_date_late'])}"
                          if forecast.get("due_date_early") and forecast.get("due_date_late")
                          and forecast.get("due_date_early") != forecast.get("due_date_late")
                          else ""),
            "days_left": w.number(forecast.get("days_left")),
            "km_left": w.km(km_left),
            "basis": w.t(str(basis)) if basis in ("distance", "time", "wear") else "–"})
    checks = [{"id": c.get("id"), "active": c.get("status") == "active",
               "status_text": w.t("active" if c.get("status") == "active" else "stored"),
               "mileage": w.km(c.get("mileage_km"))}
              for c in (_dict(x) for x in _list(data.get("check_control")))]
    dtcs = [{"code": str(d.get("code", "")), "sae": str(d.get("sae") or ""),
             "ecu": f"0x{d['ecu']:02X}" if isinstance(d.get("ecu"), int) else "?",
             "text": dtc_text(d, w), "confirmed": d.get("confirmed") is True,
             "occurrences": d.get("occurrences")}
            for d in (_dict(x) for x in _list(data.get("dtcs")))]
    visits = [{"when": w.moment(parse_time(v.get("read_at")), state.zone),
               "mileage": w.km(_dict(v.get("vehicle")).get("mileage_km")),
               "status": str(_dict(v.get("summary")).get("status", "")),
               "status_text": w.status(_dict(v.get("summary")).get("status"))}
              for v in record.visits]
    selection = selection_of(record, ticked, fault_finding)
    proposal = None
    if selection is not None:
        lines = []
        for line in selection.services:
            lines.append({"key": line.key, "ticked": line.key in selection.ticked,
                          "name": w.service(line.type), "required": line.required,
                          "fault": False, "recurring": False, "priced": line.priced,
                          "minutes": line.labour_minutes if line.priced else None,
                          "labour": w.money(line.labour if line.priced else None,
                                            selection.currency),
                          "parts": w.money(line.parts if line.priced else None,
                                           selection.currency),
                          "net": w.money(line.net if line.priced else None, selection.currency),
                          "net_value": format(line.net, "f") if line.priced else ""})
        for fault in selection.faults:
            lines.append({"key": fault.key, "ticked": fault.key in selection.ticked,
                          "name": fault_line_name(fault, w), "required": False,
                          "fault": True, "recurring": fault.recurring,
                          "priced": fault.priced,
                          "minutes": fault.labour_minutes if fault.priced else None,
                          "labour": w.money(fault.labour if fault.priced else None,
                                            selection.currency),
                          "parts": "",
                          "net": w.money(fault.net if fault.priced else None,
                                         selection.currency),
                          "net_value": format(fault.net, "f") if fault.priced else ""})
        proposal = {"lines": lines, "currency": selection.currency,
                    "totals": totals_view(selection, w),
                    "published_gross": str(_dict(_dict(data.get("proposal")).get("totals"))
                                           .get("gross", ""))}
    approvals = [{"id": str(a.get("approval_id", "")),
                  "time": w.moment(parse_time(a.get("approved_at")), state.zone),
                  "gross": w.money(_dict(a.get("totals")).get("gross"), str(a.get("currency", "")))}
                 for a in record.approvals]
    return {
        "vin": record.vin, "readout_id": str(data.get("readout_id", "")),
        "token": vehicle_token(record),
        "reader": str(data.get("reader", "")),
        "read_at": w.moment(record.read_at, state.zone),
        "model_year": model_year(record.vin, vehicle.get("build_month"), today) or "–",
        "mileage": w.km(vehicle.get("mileage_km")),
        "status": str(_dict(data.get("summary")).get("status", "")),
        "status_text": w.status(_dict(data.get("summary")).get("status")),
        "services": services, "checks": checks, "dtcs": dtcs,
        "diagnosis": _diagnosis_view(record.diagnosis, record.vin, w, state.zone),
        "reminders": _reminder_rows(record, w, today, window_days),
        "visits": visits, "proposal": proposal, "approvals": approvals,
        "verdict": verdict_view(selection.verdict if selection and selection.verdict
                                else express_verdict(data, record.diagnosis), w)}


def vehicle_token(record: VehicleRecord) -> str:
    """Changes whenever the vehicle page would show something new (a readout, a vehicle
    test, a reminder, an approval): the open page compares it with its own."""
    diagnosis = record.diagnosis or {}
    return "|".join([str(record.latest.get("readout_id", "")),
                     str(diagnosis.get("diagnosis_id", "")), str(len(record.reminders)),
                     str(len(record.approvals))])


def build_approval(record: VehicleRecord, selection: Selection, *, lang: str, desk: str,
                   now: datetime) -> Approval:
    """The ``cbs.approval/1`` for the ticked lines of ``selection``."""
    assert selection.totals is not None and selection.verdict is not None
    data = record.latest

    def service(line: PricedLine) -> ApprovedService:
        return ApprovedService(index=line.index, type=line.type,
                               name=service_name(line.type, lang), required=line.required,
                               priced=line.priced,
                               labour_minutes=line.labour_minutes if line.priced else None,
                               net=line.net if line.priced else None)

    def lines(services: list[PricedLine], faults: list[FaultFindingLine]) -> ApprovalLines:
        return ApprovalLines(
            services=[service(x) for x in services],
            faults=[ApprovedFault(ecu=f.ecu, code=f.code, sae=f.sae, source=f.source)
                    for line in faults for f in line.faults],
            fault_finding=[ApprovedFaultFinding(
                ecu=line.ecu, name=line.ecu_name, priced=line.priced,
                labour_minutes=line.labour_minutes if line.priced else None,
                net=line.net if line.priced else None) for line in faults])

    approved = lines(selection.services_ticked(), selection.faults_ticked())
    declined = lines([x for x in selection.services if x.key not in selection.ticked],
                     [x for x in selection.faults if x.key not in selection.ticked])
    verdict = selection.verdict
    readout_id = str(data.get("readout_id", ""))
    diagnosis_id = (record.diagnosis or {}).get("diagnosis_id")
    return Approval(
        approval_id=approval_id(readout_id, now, sorted(selection.ticked)),
        readout_id=readout_id,
        diagnosis_id=diagnosis_id if isinstance(diagnosis_id, str) else None,
        site=str(data.get("site", "")), reader=str(data.get("reader", "")), desk=desk,
        vin=record.vin, approved_at=now, language=check_language(lang),
        currency=selection.currency, tax_rate_pct=selection.tax_rate_pct,
        approved=approved, declined=declined, totals=selection.totals,
        express=ApprovalExpress(eligible=verdict.eligible, reasons=list(verdict.reasons),
                                minutes=verdict.minutes, budget_minutes=verdict.budget_minutes))
