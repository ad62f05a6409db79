"""The express-lane verdict: one rule, with its reasons, for every view (docs/express-lane.md).

Why one rule: the readout carries two answers to "can this car go to the express lane?".
``summary.express_eligible`` (the contract's rule: only express-set items due, no active
check-control message, no confirmed DTC) and ``proposal.express`` (the time budget). A view
that showed the first alone said "EXPRESS LANE: YES" for a visit whose proposal did not fit
the hour. The verdict is therefore:

    the visit goes to the express lane  <=>  every condition below holds

===========================  ======================================================================
reason (when it fails)        condition
===========================  ======================================================================
``nothing_due``               at least one service item is due soon or overdue
``not_express_item``          every such item is one the express lane does (the agent's express set)
``check_control_active``      no active check-control message
``fault_confirmed``           no confirmed fault on the key
``diagnosis_fault``           the latest vehicle test (when there is one) has no confirmed fault and
                              no warning lamp
``unpriced_item``             every required item is in the price catalogue (its time is known)
``over_budget``               the required items' labour fits the lane's time budget
``no_proposal``               the readout carries a proposal (else the time cannot be checked)
===========================  ======================================================================

Without a diagnosis report the verdict equals ``proposal.express.eligible``; the reasons say
why not. The readout's payload is read as plain JSON (``.get`` with defaults): a later
compatible payload only adds keys, and a view must keep working with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.domain.i18n import LABELS, label

__all__ = ["REASONS", "ExpressVerdict", "express_verdict", "reason_text"]

REASONS: tuple[str, ...] = (
    "nothing_due", "not_express_item", "check_control_active", "fault_confirmed",
    "diagnosis_fault", "unpriced_item", "over_budget", "no_proposal",
)

_DUE = ("due_soon", "overdue")


@dataclass(frozen=True, slots=True)
class ExpressVerdict:
    """Whether the visit goes to the express lane, and every reason it does not (in the
    order of :data:`REASONS`; empty when ``eligible``). ``minutes``/``budget_minutes`` are
    the required labour and the lane's budget when the proposal gave them."""

    eligible: bool
    reasons: tuple[str, ...]
    minutes: int | None = None
    budget_minutes: int | None = None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def express_verdict(readout: Mapping[str, Any], diagnosis: Mapping[str, Any] | None = None, *,
                    selected_minutes: int | None = None,
                    selected_unpriced: bool = False) -> ExpressVerdict:
    """The verdict for a ``cbs.readout/1`` payload (parsed JSON) and, optionally, the
    vehicle's latest ``cbs.diagnosis/1`` report. Pure; never raises on odd payloads (a
    missing part counts as the condition not being shown to hold).

    For the work the customer approved (the desk's ``cbs.approval/1``), ``selected_minutes``
    (the ticked service and fault-finding lines' labour) and ``selected_unpriced`` (a ticked
    line without a price) take the place of the proposal's required items in the last two
    conditions."""
    summary = _dict(readout.get("summary"))
    due = [s for s in (_dict(x) for x in _list(readout.get("services")))
           if _dict(s.get("forecast")).get("status") in _DUE]
    active_cc = any(_dict(c).get("status") == "active" for c in _list(readout.get("check_control")))
    confirmed = any(_dict(d).get("confirmed") is True for d in _list(readout.get("dtcs")))
    reasons: list[str] = []
    if not due:
        reasons.append("nothing_due")
    elif not summary.get("express_eligible") and not active_cc and not confirmed:
        # The contract's rule failed for none of its other causes: an item outside the set.
        reasons.append("not_express_item")
    if active_cc:
        reasons.append("check_control_active")
    if confirmed:
        reasons.append("fault_confirmed")
    if diagnosis is not None and _diagnosis_fault(diagnosis):
        reasons.append("diagnosis_fault")
    proposal = readout.get("proposal")
    minutes: int | None = None
    budget: int | None = None
    if isinstance(proposal, Mapping):
        lane = _dict(proposal.get("express"))
        minutes = lane.get("minutes") if isinstance(lane.get("minutes"), int) else None
        budget = lane.get("budget_minutes") if isinstance(lane.get("budget_minutes"), int) else None
        if selected_minutes is not None:
            minutes = selected_minutes
        unpriced = (selected_unpriced if selected_minutes is not None else
                    any(_dict(item).get("priced") is False
                        for item in _list(proposal.get("required"))))
        if unpriced:
            reasons.append("unpriced_item")
        elif minutes is None or budget is None or minutes > budget:
            reasons.append("over_budget")
    else:
        reasons.append("no_proposal")
    return ExpressVerdict(eligible=not reasons, reasons=tuple(reasons), minutes=minutes,
                          budget_minutes=budget)


def _diagnosis_fault(diagnosis: Mapping[str, Any]) -> bool:
    summary = _dict(diagnosis.get("summary"))
    if summary.get("warning_lamp") is True:
        return True
    for ecu in _list(diagnosis.get("ecus")):
        for dtc in _list(_dict(ecu).get("dtcs")):
            if _dict(dtc).get("confirmed") is True or _dict(dtc).get("warning_lamp") is True:
                return True
    return False


def reason_text(reason: str, lang: str) -> str:
    """A reason of :data:`REASONS` in ``lang`` (agent.domain.i18n); an unknown one as itself."""
    key = f"express_{reason}"
    return label(key, lang) if key in LABELS else reason
