"""The priced service proposal of a readout: what is due, what it costs, whether it fits the
express lane (docs/proposal.md). Pure: forecasts + catalogue + settings in, a model out.

Which items (``look_ahead_days`` and the forecast status decide):

* ``required``: items the forecast calls ``due_soon`` or ``overdue``;
* ``optional``: the other items whose *early* date (``due_date_early``, the 10th percentile
  of the due day) falls before the customer's likely next visit, ``look_ahead_days`` after the
  read date: such an item may well fall due before the customer comes back, so it is offered
  as "do it now and save a visit", with the range in words ("due in 40-70 days");
* items without a forecast are left out (the key gave nothing to date them by).

Arithmetic (exact :class:`~decimal.Decimal`, half-up rounding to the currency's minor unit,
i.e. commercial rounding):

* labour = round(labour_rate_per_hour x labour_minutes / 60);
* part amount = round(quantity x unit_price); item net = labour + part amounts;
* totals: net = sum of item nets; tax = round(net x tax_rate_pct / 100), once on the total
  (never per line, so the tax of a sum is the tax shown); gross = net + tax.

An item the catalogue does not price (e.g. a type the protocol calls ``unknown``) stays in the
list with ``priced: false`` and is left out of the totals, which then say ``complete: false``;
it never fits the express lane, since its time is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel, ConfigDict, Field

from agent.domain.catalogue import Catalogue, CatalogueEntry, default_catalogue
from agent.domain.i18n import (
    DEFAULT_LANGUAGE,
    Language,
    check_language,
    due_range_words,
    label,
    service_name,
)
from agent.domain.models import (
    ExpressLane,
    Proposal,
    ProposalItem,
    ProposalPart,
    ProposalTotals,
    ServiceEntry,
    ServiceForecast,
    construct,
)

__all__ = [
    "ProposalContext",
    "ProposalSettings",
    "build_proposal",
    "default_proposal_context",
    "labour_amount",
    "offered_as_optional",
    "price_entry",
    "round_money",
    "totals",
]

_DUE: frozenset[str] = frozenset({"due_soon", "overdue"})


class ProposalSettings(BaseModel):
    """The ``[proposal]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    look_ahead_days: int = Field(
        90, ge=0, description="The customer's likely next visit, days after the read date: items "
                              "whose early date (due_date_early) falls before it are offered as "
                              "optional (\"do it now and save a visit\"); 0 offers none.")
    express_budget_minutes: int = Field(
        60, ge=0, description="The express lane's time budget: the labour of the required items "
                              "must fit in it.")


@dataclass(frozen=True)
class ProposalContext:
    """Everything a proposal needs besides the readout; built once at start-up."""

    catalogue: Catalogue = field(default_factory=default_catalogue)
    settings: ProposalSettings = field(default_factory=lambda: ProposalSettings())
    language: Language = DEFAULT_LANGUAGE

    def propose(self, services: Sequence[ServiceEntry], *, express_eligible: bool) -> Proposal:
        return build_proposal(services, express_eligible=express_eligible,
                              catalogue=self.catalogue, settings=self.settings,
                              language=self.language)


def default_proposal_context() -> ProposalContext:
    """The shipped catalogue, default settings, English."""
    return ProposalContext()


def round_money(amount: Decimal, decimal_places: int) -> Decimal:
    """``amount`` rounded half-up to ``decimal_places`` (always with that many places)."""
    return amount.quantize(Decimal(1).scaleb(-decimal_places), rounding=ROUND_HALF_UP)


def labour_amount(labour_rate_per_hour: Decimal, minutes: int, decimal_places: int) -> Decimal:
    """The labour of ``minutes`` at the hourly rate, rounded half-up to the minor unit: the
    one rule for a service line and a fault-finding line alike."""
    return round_money(labour_rate_per_hour * minutes / Decimal(60), decimal_places)


def price_entry(entry: CatalogueEntry, catalogue: Catalogue,
                language: str) -> tuple[Decimal, list[ProposalPart], Decimal]:
    """(labour, parts, net) of one catalogue entry."""
    places = catalogue.decimal_places
    labour = labour_amount(catalogue.labour_rate_per_hour, entry.labour_minutes, places)
    parts = [construct(ProposalPart, {
        "number": p.number, "description": p.describe(language), "quantity": p.quantity,
        "unit_price": round_money(p.unit_price, places),
        "amount": round_money(p.quantity * p.unit_price, places)}) for p in entry.parts]
    return labour, parts, labour + sum((p.amount for p in parts), Decimal(0))


def _ends_in_days(forecast: ServiceForecast) -> tuple[int, int]:
    """Days from the read date to the early and the late end of the forecast's interval."""
    return (forecast.days_left + (forecast.due_date_early - forecast.due_date).days,
            forecast.days_left + (forecast.due_date_late - forecast.due_date).days)


def offered_as_optional(forecast: ServiceForecast, settings: ProposalSettings) -> bool:
    """Whether an item not yet due is worth doing now: its early date (the 10th percentile of
    its due day) comes before the customer's likely next visit, ``look_ahead_days`` after the
    read date, so it may well fall due before the customer is back."""
    return (forecast.status not in _DUE and settings.look_ahead_days > 0
            and _ends_in_days(forecast)[0] <= settings.look_ahead_days)


def _note(forecast: ServiceForecast, optional: bool, name: str, priced: bool,
          language: str) -> str:
    status, days_left = forecast.status, forecast.days_left
    if not priced:
        return label("not_in_catalogue", language)
    if optional:
        early, late = _ends_in_days(forecast)
        if early != late:
            return label("optional_hint_range", language, service=name,
                         when=due_range_words(early, late, language))
        return label("optional_hint", language, service=name, days=days_left)
    if status == "overdue":
        return label("overdue_by_days", language, days=-days_left)
    return label("due_in_days", language, days=days_left)


def _item(entry: ServiceEntry, forecast: ServiceForecast, *, optional: bool,
          catalogue: Catalogue, language: str) -> ProposalItem:
    name = service_name(entry.type, language)
    priced_entry = catalogue.entry(entry.type)
    labour: Decimal | None = None
    parts: list[ProposalPart] = []
    net: Decimal | None = None
    if priced_entry is not None:
        labour, parts, net = price_entry(priced_entry, catalogue, language)
    return construct(ProposalItem, {
        "index": entry.index, "type": entry.type, "code": entry.code, "name": name,
        "status": forecast.status, "due_date": forecast.due_date,
        "days_left": forecast.days_left,
        "note": _note(forecast, optional, name, priced_entry is not None, language),
        "priced": priced_entry is not None,
        "labour_minutes": None if priced_entry is None else priced_entry.labour_minutes,
        "labour": labour, "parts": parts, "net": net})


def totals(items: Sequence[ProposalItem], catalogue: Catalogue) -> ProposalTotals:
    """Sums of the priced items, with tax rounded once on the net total."""
    places = catalogue.decimal_places
    zero = round_money(Decimal(0), places)
    priced = [i for i in items if i.priced]
    labour = sum((i.labour or zero for i in priced), zero)
    parts = sum((p.amount for i in priced for p in i.parts), zero)
    net = labour + parts
    tax = round_money(net * catalogue.tax_rate_pct / Decimal(100), places)
    return construct(ProposalTotals, {
        "labour_minutes": sum(i.labour_minutes or 0 for i in priced), "labour": labour,
        "parts": parts, "net": net, "tax": tax, "gross": net + tax,
        "complete": len(priced) == len(items)})


def _minutes(items: Sequence[ProposalItem]) -> tuple[int, bool]:
    """(labour minutes, all priced)."""
    return sum(i.labour_minutes or 0 for i in items), all(i.priced for i in items)


def build_proposal(services: Sequence[ServiceEntry], *, express_eligible: bool,
                   catalogue: Catalogue, settings: ProposalSettings,
                   language: str = DEFAULT_LANGUAGE) -> Proposal:
    """The proposal for a readout's ``services`` (their forecasts decide what is in it).

    ``express_eligible`` is the readout's ``summary.express_eligible`` (the express set, check
    control and DTCs); the proposal adds the time budget. Raises UnsupportedLanguageError for
    a language outside agent.domain.i18n.LANGUAGES.
    """
    lang = check_language(language)
    required: list[ProposalItem] = []
    optional: list[ProposalItem] = []
    for entry in services:
        forecast = entry.forecast
        if forecast is None:
            continue
        if forecast.status in _DUE:
            required.append(_item(entry, forecast, optional=False, catalogue=catalogue,
                                  language=lang))
        elif offered_as_optional(forecast, settings):
            optional.append(_item(entry, forecast, optional=True, catalogue=catalogue,
                                  language=lang))
    def order(item: ProposalItem) -> tuple[object, int]:
        return (item.due_date, item.index)

    required.sort(key=order)
    optional.sort(key=order)
    budget = settings.express_budget_minutes
    minutes, all_priced = _minutes(required)
    more_minutes, all_priced_more = _minutes(required + optional)
    fits = all_priced and minutes <= budget
    express = construct(ExpressLane, {
        "budget_minutes": budget, "minutes": minutes, "fits": fits,
        "with_optional_minutes": more_minutes,
        "with_optional_fits": all_priced_more and more_minutes <= budget,
        "eligible": bool(express_eligible and fits)})
    # The proposal's models are built without re-validation (agent.domain.models.construct): every
    # value comes from the catalogue (validated when it was loaded) and the readout's checked
    # forecasts; tests/agent/test_trusted_payloads.py holds them to pydantic's validation.
    return construct(Proposal, {
        "language": lang, "currency": catalogue.currency,
        "labour_rate_per_hour": round_money(catalogue.labour_rate_per_hour,
                                            catalogue.decimal_places),
        "tax_rate_pct": catalogue.tax_rate_pct, "look_ahead_days": settings.look_ahead_days,
        "required": required, "optional": optional, "totals": totals(required, catalogue),
        "totals_with_optional": totals(required + optional, catalogue), "express": express})
