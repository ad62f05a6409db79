"""The customer's approval (``cbs.approval/1``): what the advisor ticked at the desk, priced.

The desk shows a readout's proposal (and the faults of the key and of the latest vehicle
test) as lines; the customer agrees to some of them. This module is pure:

* :func:`proposal_lines` reads a published proposal (parsed JSON) into :class:`PricedLine`
  values, exact decimals from the payload's decimal strings;
* :func:`selection_totals` sums a selection exactly as the agent's proposal does
  (docs/proposal.md, "Arithmetic"): labour and part amounts as published, tax rounded
  half-up once on the net total, gross = net + tax. Ticking every required line gives the
  published ``totals``; every line, ``totals_with_optional``;
* :class:`Approval` is the payload model (docs/approval.md); its JSON Schema is generated
  from it like the other payloads'.

* :func:`fault_finding_lines` turns the confirmed faults into one *fault-finding* line per
  control unit: the labour of tracing that unit's faults to their cause, the catalogue's
  minutes for the unit (``[fault_finding]``) at the proposal's labour rate, rounded like a
  service line's labour. The repair itself is quoted once the cause is known. Without a
  ``[fault_finding]`` section the line is "price on request", left out of the totals, which
  then say ``complete: false``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from agent.domain.catalogue import FaultFinding
from agent.domain.diagnosis import bmw_ecu_names
from agent.domain.express import REASONS
from agent.domain.i18n import Language
from agent.domain.models import DecimalText, ProposalTotals, format_timestamp
from agent.domain.proposal import labour_amount, round_money

__all__ = [
    "APPROVAL_SCHEMA",
    "Approval",
    "ApprovalExpress",
    "ApprovalLines",
    "ApprovedFault",
    "ApprovedFaultFinding",
    "ApprovedService",
    "FaultFindingLine",
    "FaultRef",
    "PricedLine",
    "approval_id",
    "decimal_places",
    "fault_finding_lines",
    "proposal_lines",
    "selection_totals",
]

APPROVAL_SCHEMA: Final = "cbs.approval/1"

ExpressReason = Literal["nothing_due", "not_express_item", "check_control_active",
                        "fault_confirmed", "diagnosis_fault", "unpriced_item", "over_budget",
                        "no_proposal"]
if tuple(ExpressReason.__args__) != REASONS:  # type: ignore[attr-defined]
    raise RuntimeError("ExpressReason must list agent.domain.express.REASONS in order")


@dataclass(frozen=True, slots=True)
class PricedLine:
    """One service line of a published proposal, its amounts as exact decimals."""

    index: int
    type: str
    name: str
    required: bool
    priced: bool
    labour_minutes: int
    labour: Decimal
    parts: Decimal
    net: Decimal

    @property
    def key(self) -> str:
        """The line's form value at the desk: ``service:{index}``."""
        return f"service:{self.index}"


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def decimal_places(proposal: Mapping[str, Any]) -> int:
    """The currency's minor-unit places of a published proposal: every amount has exactly
    that many, so the labour rate (``"156.00"``) tells."""
    exponent = _decimal(proposal.get("labour_rate_per_hour", "0.00")).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 2


def proposal_lines(proposal: Mapping[str, Any]) -> list[PricedLine]:
    """The required lines, then the optional ones, in the proposal's order."""
    lines: list[PricedLine] = []
    for required, key in ((True, "required"), (False, "optional")):
        items = proposal.get(key)
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, Mapping) or not isinstance(item.get("index"), int):
                continue
            raw_parts = item.get("parts")
            parts: list[Any] = raw_parts if isinstance(raw_parts, list) else []
            priced = item.get("priced") is not False
            lines.append(PricedLine(
                index=item["index"], type=str(item.get("type", "unknown")),
                name=str(item.get("name", "")), required=required, priced=priced,
                labour_minutes=int(item.get("labour_minutes") or 0) if priced else 0,
                labour=_decimal(item.get("labour")) if priced else Decimal(0),
                parts=sum((_decimal(p.get("amount")) for p in parts if isinstance(p, Mapping)),
                          Decimal(0)) if priced else Decimal(0),
                net=_decimal(item.get("net")) if priced else Decimal(0)))
    return lines


FaultSource = Literal["key", "diagnosis"]


@dataclass(frozen=True, slots=True)
class FaultRef:
    """One confirmed fault: of the key (the readout's ``dtcs[]``) or of the vehicle test.
    ``recurring``: the vehicle test found it confirmed at the previous visit too."""

    source: FaultSource
    ecu: int
    code: str
    sae: str | None
    recurring: bool = False


@dataclass(frozen=True, slots=True)
class FaultFindingLine:
    """Finding the confirmed faults of one control unit: a line of the desk's proposal.
    ``priced`` is false when the catalogue has no ``[fault_finding]`` (then on request)."""

    ecu: int
    ecu_name: str | None
    faults: tuple[FaultRef, ...]
    priced: bool
    labour_minutes: int
    labour: Decimal
    net: Decimal
    parts: Decimal = Decimal(0)
    required: bool = False

    @property
    def key(self) -> str:
        """The line's form value at the desk: ``fault:{ecu}`` (the address, decimal)."""
        return f"fault:{self.ecu}"

    @property
    def codes(self) -> list[str]:
        """The faults' codes as the workshop reads them (SAE where known), each once."""
        return list(dict.fromkeys(f.sae or f.code for f in self.faults))

    @property
    def recurring(self) -> bool:
        return any(f.recurring for f in self.faults)


class _Totalled(Protocol):
    @property
    def priced(self) -> bool: ...
    @property
    def labour_minutes(self) -> int: ...
    @property
    def labour(self) -> Decimal: ...
    @property
    def parts(self) -> Decimal: ...


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _confirmed(readout: Mapping[str, Any],
               diagnosis: Mapping[str, Any] | None) -> dict[int, tuple[str | None, list[FaultRef]]]:
    """ECU address -> (name, its confirmed faults): the key's first, then the vehicle test's,
    each (source, code) once. The key's addresses are BMW diagnostic addresses, the ones the
    vehicle test's ``bmw`` protocol uses, so a fault of the DME on the key and one the test
    read from the DME are the same unit's; ``obd2`` addresses (0x7E8-0x7EF) never clash."""
    units: dict[int, tuple[str | None, list[FaultRef]]] = {}
    seen: set[tuple[str, int, str]] = set()

    def add(ref: FaultRef, name: str | None) -> None:
        if (ref.source, ref.ecu, ref.code) in seen:
            return
        seen.add((ref.source, ref.ecu, ref.code))
        known, refs = units.get(ref.ecu, (None, []))
        units[ref.ecu] = (known or name, [*refs, ref])

    table = bmw_ecu_names()
    dtcs = readout.get("dtcs")
    for dtc in dtcs if isinstance(dtcs, list) else []:
        if (isinstance(dtc, Mapping) and dtc.get("confirmed") is True
                and isinstance(dtc.get("ecu"), int) and not isinstance(dtc.get("ecu"), bool)):
            add(FaultRef("key", dtc["ecu"], str(dtc.get("code", "")), _text(dtc.get("sae"))),
                table.get(dtc["ecu"]))
    ecus = diagnosis.get("ecus") if isinstance(diagnosis, Mapping) else None
    for ecu in ecus if isinstance(ecus, list) else []:
        if not isinstance(ecu, Mapping):
            continue
        address = ecu.get("address")
        if not isinstance(address, int) or isinstance(address, bool):
            continue
        faults = ecu.get("dtcs")
        for dtc in faults if isinstance(faults, list) else []:
            if isinstance(dtc, Mapping) and dtc.get("confirmed") is True:
                add(FaultRef("diagnosis", address, str(dtc.get("code", "")), _text(dtc.get("sae")),
                             recurring=dtc.get("recurring") is True), _text(ecu.get("name")))
    return units


def fault_finding_lines(readout: Mapping[str, Any], diagnosis: Mapping[str, Any] | None,
                        fault_finding: FaultFinding | None, *,
                        labour_rate_per_hour: Decimal | None,
                        places: int) -> list[FaultFindingLine]:
    """One line per control unit with a confirmed fault (of the key or of the latest vehicle
    test), by address: that unit's fault-finding minutes (``fault_finding``) at
    ``labour_rate_per_hour`` (the published proposal's), rounded half-up to ``places``.
    Unpriced when there is no ``fault_finding`` table or no rate. Pure."""
    lines = []
    for address, (name, refs) in sorted(_confirmed(readout, diagnosis).items()):
        priced = fault_finding is not None and labour_rate_per_hour is not None
        minutes = fault_finding.minutes(name) if fault_finding is not None else 0
        labour = (labour_amount(labour_rate_per_hour, minutes, places)
                  if priced and labour_rate_per_hour is not None else Decimal(0))
        lines.append(FaultFindingLine(ecu=address, ecu_name=name, faults=tuple(refs),
                                      priced=priced, labour_minutes=minutes if priced else 0,
                                      labour=labour, net=labour))
    return lines


def selection_totals(lines: Iterable[_Totalled], *, tax_rate_pct: Decimal, places: int,
                     unpriced_extra: int = 0) -> ProposalTotals:
    """Totals of the selected ``lines`` (service and fault-finding lines; ``unpriced_extra``:
    further selected lines without a price, which make the totals incomplete)."""
    chosen = list(lines)
    priced = [line for line in chosen if line.priced]
    zero = round_money(Decimal(0), places)
    labour = sum((line.labour for line in priced), zero)
    parts = sum((line.parts for line in priced), zero)
    net = labour + parts
    tax = round_money(net * tax_rate_pct / Decimal(100), places)
    return ProposalTotals(
        labour_minutes=sum(line.labour_minutes for line in priced), labour=labour, parts=parts,
        net=net, tax=tax, gross=net + tax,
        complete=len(priced) == len(chosen) and unpriced_extra == 0)


def approval_id(readout_id: str, approved_at: datetime, approved: Sequence[str]) -> str:
    """``{UTC time}-{12 hex}``: sortable by time, unique by what was approved."""
    stamp = format_timestamp(approved_at).replace("-", "").replace(":", "").replace(".", "")
    digest = hashlib.sha256("|".join([readout_id, stamp, *approved]).encode()).hexdigest()[:12]
    return f"{stamp}-{digest}"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApprovedService(_Payload):
    index: int = Field(description="Item index on the key (0-15), as in the readout's services[].",
                       ge=0, le=15)
    type: str = Field(description="Service type name from the protocol's CBS table, or 'unknown'.")
    name: str = Field(description="Service name in the approval's language.")
    required: bool = Field(description="True for a required line of the proposal, false for an "
                                       "optional one.")
    priced: bool = Field(description="False for a line the catalogue does not price (on request).")
    labour_minutes: int | None = Field(description="Standard labour time, minutes; null when "
                                                   "unpriced.", ge=0)
    net: DecimalText | None = Field(description="The line's net amount as published in the "
                                                "proposal (decimal string); null when unpriced.")


class ApprovedFault(_Payload):
    ecu: int = Field(description="Diagnostic address of the ECU that stores the fault.",
                     ge=0, le=0xFFFF)
    code: str = Field(description="The DTC as hex digits (6 for a BMW fault, 4 for OBD-II).",
                      pattern=r"^[0-9A-F]{4,6}$")
    sae: str | None = Field(description="SAE J2012 reading, e.g. P0301; null when unknown.")
    source: Literal["key", "diagnosis"] = Field(
        description="key: from the readout's dtcs[]; diagnosis: from the vehicle test's report.")


class ApprovedFaultFinding(_Payload):
    ecu: int = Field(description="Diagnostic address of the control unit whose faults are to "
                                 "be traced.", ge=0, le=0xFFFF)
    name: str | None = Field(description="The unit's workshop name (DME, KOMBI); null when "
                                         "unknown (an OBD-II unit).")
    priced: bool = Field(description="False when the catalogue prices no fault finding "
                                     "(on request).")
    labour_minutes: int | None = Field(description="Fault-finding labour of the unit from the "
                                                   "catalogue, minutes; null when unpriced.", ge=0)
    net: DecimalText | None = Field(description="labour_minutes at the proposal's labour rate, "
                                                "rounded like a service line's labour (decimal "
                                                "string); null when unpriced.")


class ApprovalLines(_Payload):
    services: list[ApprovedService] = Field(description="Service lines, in the proposal's order.")
    faults: list[ApprovedFault] = Field(description="The confirmed faults of the fault-finding "
                                                    "lines (the repair itself is quoted once "
                                                    "the cause is found).")
    fault_finding: list[ApprovedFaultFinding] = Field(
        default_factory=list,
        description="Fault-finding lines, one per control unit with a confirmed fault, by "
                    "address; their faults are in faults[]. Absent before the desk priced "
                    "fault finding.")


class ApprovalExpress(_Payload):
    eligible: bool = Field(description="The approved work goes to the express lane "
                                       "(docs/express-lane.md).")
    reasons: list[ExpressReason] = Field(description="Why not; empty when eligible.")
    minutes: int | None = Field(description="Labour time of the approved service and "
                                            "fault-finding lines, minutes.", ge=0)
    budget_minutes: int | None = Field(description="The lane's time budget, minutes; null when "
                                                   "the readout had no proposal.", ge=0)


class Approval(_Payload):
    """``{prefix}/{site}/{reader}/approval``: the customer agreed to these lines."""

    schema_: Literal["cbs.approval/1"] = Field(APPROVAL_SCHEMA, alias="schema")
    approval_id: str = Field(description="Unique; the same on every redelivery. Deduplicate on it.")
    readout_id: str = Field(description="The readout whose proposal was approved.")
    diagnosis_id: str | None = Field(description="The vehicle test shown beside it; null when "
                                                 "there was none.")
    site: str
    reader: str = Field(description="The reader that read the key (the topic's reader level).")
    desk: str = Field(description="The desk that recorded the approval.")
    vin: str = Field(description="Vehicle identification number.", pattern=r"^[A-HJ-NPR-Z0-9]{17}$")
    approved_at: datetime = Field(description="When the advisor confirmed (UTC, ms precision).")
    language: Language = Field(description="Language the customer was shown: en, de or zh.")
    currency: str = Field(description="ISO 4217 currency of every amount.", pattern=r"^[A-Z]{3}$")
    tax_rate_pct: DecimalText = Field(description="Tax rate of the proposal, % (decimal string).")
    approved: ApprovalLines = Field(description="What the customer agreed to.")
    declined: ApprovalLines = Field(description="What was offered and not agreed to.")
    totals: ProposalTotals = Field(description="Totals of the approved service and "
                                               "fault-finding lines, the proposal's "
                                               "arithmetic.")
    express: ApprovalExpress = Field(description="The express-lane verdict for the approved work "
                                                 "(docs/express-lane.md).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_serializer("approved_at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)
