"""The priced proposal: the spec's worked example with the shipped catalogue, checked against
figures worked out by hand, and the arithmetic (rounding, tax, decimal places) on small
catalogues made for the purpose."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from spec_example import spec_frames

from agent.domain.catalogue import (
    CatalogueSettings,
    default_catalogue,
    load_catalogue,
    parse_catalogue,
)
from agent.domain.forecast import ForecastSettings
from agent.domain.models import Readout, ServiceEntry, ServiceForecast, to_json
from agent.domain.proposal import ProposalContext, ProposalSettings, build_proposal, round_money
from agent.pipeline import ReadoutPipeline
from protocols.session import SessionAccepted, SessionAssembler


def spec_readout(context: ProposalContext | None = None) -> Readout:
    assembler = SessionAssembler()
    (event,) = [e for frame in spec_frames() for e in assembler.feed(frame)]
    assert isinstance(event, SessionAccepted)
    pipeline = ReadoutPipeline(site="S1", reader="desk1", transport="serial",
                               forecast=ForecastSettings(), proposal=context)
    return pipeline.readout(event)


def wire(readout: Readout) -> dict:
    """The payload as integrators parse it; a JSON float anywhere in the proposal fails."""
    def no_floats(text: str) -> None:
        raise AssertionError(f"float {text} in the proposal: amounts must be decimal strings")
    assert readout.proposal is not None
    proposal = json.loads(to_json(readout.proposal), parse_float=no_floats)
    assert json.loads(to_json(readout))["proposal"] == proposal
    return proposal


# --- the worked example ------------------------------------------------------------------------
# Engine oil is due soon (1,800 km left, within the 2,000 km horizon); brake fluid is due
# 2027-03-31 (its due month), 124 days after the read date. Shipped catalogue:
# 156.00 EUR/h, 19 % VAT. Engine oil: 30 min labour = 156.00 x 30 / 60 = 78.00; oil filter
# 1 x 19.90; oil 5.25 x 17.90 = 93.975 -> 93.98 (half-up); sealing ring 1 x 1.10.
# Parts 19.90 + 93.98 + 1.10 = 114.98; net 78.00 + 114.98 = 192.98;
# tax 192.98 x 0.19 = 36.6662 -> 36.67; gross 229.65.
OIL_PARTS = [
    {"number": "11 42 8 575 211", "description": "Oil filter element", "quantity": "1",
     "unit_price": "19.90", "amount": "19.90"},
    {"number": "83 21 2 465 849", "description": "Engine oil Longlife-01 FE 0W-30, litre",
     "quantity": "5.25", "unit_price": "17.90", "amount": "93.98"},
    {"number": "07 11 9 963 151", "description": "Drain plug sealing ring", "quantity": "1",
     "unit_price": "1.10", "amount": "1.10"},
]
OIL_TOTALS = {"labour_minutes": 30, "labour": "78.00", "parts": "114.98", "net": "192.98",
              "tax": "36.67", "gross": "229.65", "complete": True}


def _dated(readout: Readout, index: int) -> tuple[str, int]:
    """(due_date, days_left) of an item: the forecast's (tests/agent/test_forecast.py checks
    those); this file checks what the proposal makes of them."""
    forecast = readout.services[index].forecast
    assert forecast is not None
    return forecast.due_date.isoformat(), forecast.days_left


def test_worked_example_with_the_shipped_catalogue() -> None:
    readout = spec_readout()
    oil_due, oil_days = _dated(readout, 0)
    assert readout.services[0].forecast.status == "due_soon"  # type: ignore[union-attr]
    assert readout.services[1].forecast.days_left > 90  # type: ignore[union-attr]
    proposal = wire(readout)
    assert proposal == {
        "language": "en", "currency": "EUR", "labour_rate_per_hour": "156.00",
        "tax_rate_pct": "19", "look_ahead_days": 90,
        "required": [{
            "index": 0, "type": "engine_oil", "code": 1, "name": "Engine oil and filter",
            "status": "due_soon", "due_date": oil_due, "days_left": oil_days,
            "note": f"due in {oil_days} days", "priced": True, "labour_minutes": 30, "labour": "78.00",
            "parts": OIL_PARTS, "net": "192.98"}],
        # Brake fluid (124 days) is beyond the default 90-day look-ahead.
        "optional": [],
        "totals": OIL_TOTALS,
        "totals_with_optional": OIL_TOTALS,
        # 30 min fits the 60 min budget, but the active check-control message and the
        # confirmed DTC keep the visit out of the express lane (summary.express_eligible).
        "express": {"budget_minutes": 60, "minutes": 30, "fits": True,
                    "with_optional_minutes": 30, "with_optional_fits": True, "eligible": False},
    }


def test_worked_example_offers_brake_fluid_within_the_look_ahead() -> None:
    context = ProposalContext(settings=ProposalSettings(look_ahead_days=150))
    readout = spec_readout(context)
    proposal = wire(readout)
    (fluid,) = proposal["optional"]
    # The key gives only the due month 2027-03: the last day of March, 124 days after the read.
    assert _dated(readout, 1) == ("2027-03-31", 124)
    # Brake fluid: 30 min = 78.00; 1 l x 24.50; net 102.50.
    assert fluid == {
        "index": 1, "type": "brake_fluid", "code": 3, "name": "Brake fluid", "status": "ok",
        "due_date": "2027-03-31", "days_left": 124,
        "note": "Brake fluid due in 124 days: do it now and save a visit", "priced": True,
        "labour_minutes": 30, "labour": "78.00",
        "parts": [{"number": "83 13 2 472 720", "description": "Brake fluid DOT 4 LV, litre",
                   "quantity": "1", "unit_price": "24.50", "amount": "24.50"}],
        "net": "102.50"}
    assert proposal["totals"] == OIL_TOTALS
    # 192.98 + 102.50 = 295.48; tax 56.1412 -> 56.14; gross 351.62.
    assert proposal["totals_with_optional"] == {
        "labour_minutes": 60, "labour": "156.00", "parts": "139.48", "net": "295.48",
        "tax": "56.14", "gross": "351.62", "complete": True}
    assert proposal["express"] == {"budget_minutes": 60, "minutes": 30, "fits": True,
                                   "with_optional_minutes": 60, "with_optional_fits": True,
                                   "eligible": False}


def test_worked_example_budget_and_language() -> None:
    context = ProposalContext(settings=ProposalSettings(look_ahead_days=150,
                                                        express_budget_minutes=45),
                              language="de")
    readout = spec_readout(context)
    proposal = wire(readout)
    assert proposal["express"]["fits"] is True
    assert proposal["express"]["with_optional_fits"] is False  # 60 min > 45 min
    (oil,) = proposal["required"]
    (fluid,) = proposal["optional"]
    assert oil["name"] == "Motoröl und Filter"
    assert oil["note"] == f"fällig in {_dated(readout, 0)[1]} Tagen"
    assert oil["parts"][0]["description"] == "Ölfiltereinsatz"
    assert fluid["note"].startswith("Bremsflüssigkeit in 124 Tagen fällig")
    # Language changes words, never figures.
    assert proposal["totals_with_optional"]["gross"] == "351.62"


def test_worked_example_tax_override() -> None:
    catalogue = load_catalogue(CatalogueSettings(tax_rate_pct=Decimal("7.7")))
    proposal = wire(spec_readout(ProposalContext(catalogue=catalogue)))
    # 192.98 x 0.077 = 14.85946 -> 14.86; gross 207.84.
    assert proposal["tax_rate_pct"] == "7.7"
    assert proposal["totals"]["tax"] == "14.86" and proposal["totals"]["gross"] == "207.84"
    assert default_catalogue().tax_rate_pct == Decimal(19)  # the shipped one is untouched


# --- arithmetic on purpose-made catalogues -----------------------------------------------------

def forecast(status: str, days_left: int) -> ServiceForecast:
    return ServiceForecast(status=status, due_date=date(2027, 1, 1), basis="time",  # type: ignore[arg-type]
                           days_left=days_left, km_left=None)


def entry(index: int, type_name: str, code: int, status: str = "due_soon",
          days_left: int = 10) -> ServiceEntry:
    return ServiceEntry(index=index, type=type_name, code=code, availability_pct=None,
                        remaining_km=None, due_month=None, service_count=0, last_service=None,
                        interval_km=None, interval_months=None,
                        forecast=forecast(status, days_left))


CATALOGUE = """
currency = "EUR"
labour_rate_per_hour = 100.00
tax_rate_pct = 10
[services.microfilter]
labour_minutes = 7
[[services.microfilter.parts]]
number = "A"
description = "half-cent part"
quantity = 2.5
unit_price = 0.05
[services.vehicle_check]
labour_minutes = 0
[[services.vehicle_check.parts]]
number = "B"
description = "five cents"
unit_price = "0.05"
[services.battery]
labour_minutes = 1
"""


def test_rounding_is_half_up_per_line_and_tax_once_on_the_total() -> None:
    catalogue = parse_catalogue(CATALOGUE)
    proposal = build_proposal([entry(0, "microfilter", 4)], express_eligible=True,
                              catalogue=catalogue, settings=ProposalSettings())
    (item,) = proposal.required
    # 100.00 x 7 / 60 = 11.666... -> 11.67; 2.5 x 0.05 = 0.125 -> 0.13 (half-even would be 0.12).
    assert item.labour == Decimal("11.67")
    assert item.parts[0].amount == Decimal("0.13")
    assert item.net == Decimal("11.80")
    # 11.80 x 10 % = 1.18.
    assert (proposal.totals.tax, proposal.totals.gross) == (Decimal("1.18"), Decimal("12.98"))

    # Two lines of 0.05 at 10 %: tax per line would be 0.005 -> 0.01 twice = 0.02; on the total
    # (0.10) it is 0.01. The proposal rounds once, on the total.
    two = build_proposal([entry(0, "vehicle_check", 0x11), entry(1, "vehicle_check", 0x11)],
                         express_eligible=True, catalogue=catalogue, settings=ProposalSettings())
    assert two.totals.net == Decimal("0.10")
    assert two.totals.tax == Decimal("0.01")
    assert two.totals.gross == Decimal("0.11")


def test_one_minute_and_zero_tax() -> None:
    catalogue = parse_catalogue(CATALOGUE.replace("tax_rate_pct = 10", "tax_rate_pct = 0"))
    proposal = build_proposal([entry(2, "battery", 8)], express_eligible=False,
                              catalogue=catalogue, settings=ProposalSettings())
    # 100.00 / 60 = 1.666... -> 1.67; no parts; no tax.
    assert proposal.totals.labour == Decimal("1.67") and proposal.totals.parts == Decimal("0.00")
    assert proposal.totals.tax == Decimal("0.00") and proposal.totals.gross == Decimal("1.67")
    # Item labour and net, then labour, net and gross in both totals.
    assert to_json(proposal).count('"1.67"') == 8


def test_whole_unit_currency() -> None:
    catalogue = parse_catalogue("""
currency = "JPY"
decimal_places = 0
labour_rate_per_hour = 9000
tax_rate_pct = 10
[services.engine_oil]
labour_minutes = 25
[[services.engine_oil.parts]]
number = "OIL"
description = "oil, litre"
quantity = 4.5
unit_price = 1333
""")
    proposal = build_proposal([entry(0, "engine_oil", 1)], express_eligible=True,
                              catalogue=catalogue, settings=ProposalSettings())
    # 9000 x 25 / 60 = 3750; 4.5 x 1333 = 5998.5 -> 5999; net 9749; tax 974.9 -> 975.
    assert proposal.totals.labour == Decimal(3750)
    assert proposal.required[0].parts[0].amount == Decimal(5999)
    assert (proposal.totals.net, proposal.totals.tax, proposal.totals.gross) == (
        Decimal(9749), Decimal(975), Decimal(10724))
    assert '"gross":"10724"' in to_json(proposal)


def test_items_outside_the_catalogue_are_listed_unpriced() -> None:
    catalogue = parse_catalogue(CATALOGUE)
    proposal = build_proposal(
        [entry(0, "microfilter", 4), entry(1, "unknown", 0x99, status="overdue", days_left=-3)],
        express_eligible=True, catalogue=catalogue, settings=ProposalSettings())
    unknown = proposal.required[1]
    assert unknown.priced is False and unknown.labour is None and unknown.net is None
    assert unknown.note == "Not in the price catalogue: price on request"
    assert proposal.totals.complete is False
    assert proposal.totals.net == Decimal("11.80")  # the priced item only
    # Unknown labour time: never promised to fit the express lane.
    assert proposal.express.fits is False and proposal.express.eligible is False


def test_selection_order_and_look_ahead() -> None:
    catalogue = parse_catalogue(CATALOGUE)
    services = [
        entry(0, "vehicle_check", 0x11, status="ok", days_left=91),  # beyond the look-ahead
        entry(1, "battery", 8, status="ok", days_left=90),           # on its edge: offered
        entry(2, "microfilter", 4, status="overdue", days_left=-5),
        entry(3, "vehicle_check", 0x11, status="due_soon", days_left=12),
        ServiceEntry(index=4, type="battery", code=8, availability_pct=None, remaining_km=None,
                     due_month=None, service_count=0, last_service=None, interval_km=None,
                     interval_months=None, forecast=None),             # nothing to date it by
    ]
    services[2] = services[2].model_copy(update={"forecast": services[2].forecast.model_copy(
        update={"due_date": date(2026, 12, 1)})})
    proposal = build_proposal(services, express_eligible=True, catalogue=catalogue,
                              settings=ProposalSettings())
    assert [i.index for i in proposal.required] == [2, 3]  # earliest due first
    assert [i.index for i in proposal.optional] == [1]
    assert proposal.required[0].note == "overdue by 5 days"
    # 7 + 0 minutes of required work fits 60; eligible follows the summary flag.
    assert proposal.express.minutes == 7 and proposal.express.eligible is True
    assert proposal.express.with_optional_minutes == 8


def test_nothing_due_gives_an_empty_proposal() -> None:
    proposal = build_proposal([entry(0, "battery", 8, status="ok", days_left=400)],
                              express_eligible=False, catalogue=parse_catalogue(CATALOGUE),
                              settings=ProposalSettings())
    assert proposal.required == [] and proposal.optional == []
    assert proposal.totals.gross == Decimal("0.00") and proposal.totals.complete is True
    assert proposal.express.eligible is False


@pytest.mark.parametrize(("amount", "places", "expected"), [
    ("0.125", 2, "0.13"), ("0.135", 2, "0.14"), ("-0.125", 2, "-0.13"), ("2.5", 0, "3"),
    ("1", 2, "1.00"), ("93.975", 2, "93.98"), ("36.6662", 2, "36.67"), ("0.0049", 2, "0.00"),
])
def test_round_money(amount: str, places: int, expected: str) -> None:
    assert str(round_money(Decimal(amount), places)) == expected


def test_readout_round_trips_with_its_proposal() -> None:
    readout = spec_readout()
    again = Readout.model_validate_json(to_json(readout))
    assert again == readout
    assert again.proposal is not None and again.proposal.totals.gross == Decimal("229.65")


def _with_interval(item: ServiceEntry, early: date, late: date) -> ServiceEntry:
    assert item.forecast is not None
    return item.model_copy(update={"forecast": item.forecast.model_copy(
        update={"due_date_early": early, "due_date_late": late})})


def test_optional_lines_use_the_early_date_before_the_next_visit() -> None:
    """Worth doing now: an item whose early date comes before the customer's likely next visit
    (look_ahead_days), even when its due date is after it; the note gives the range."""
    catalogue = parse_catalogue(CATALOGUE)
    # Due 2027-01-01, 120 days after the read date; the interval starts 40 days earlier.
    wide = _with_interval(entry(0, "battery", 8, status="ok", days_left=120),
                          date(2026, 11, 22), date(2027, 2, 20))   # 80-170 days
    narrow = _with_interval(entry(1, "microfilter", 4, status="ok", days_left=120),
                            date(2026, 12, 22), date(2027, 1, 11))  # 110-130 days
    proposal = build_proposal([wide, narrow], express_eligible=True, catalogue=catalogue,
                              settings=ProposalSettings(look_ahead_days=90))
    assert [i.index for i in proposal.optional] == [0]
    assert proposal.optional[0].note.endswith("due in 80-170 days: do it now and save a visit")
    de = build_proposal([wide], express_eligible=True, catalogue=catalogue,
                        settings=ProposalSettings(look_ahead_days=90), language="de")
    assert "fällig in 80-170 Tagen: gleich mit erledigen" in de.optional[0].note
    assert build_proposal([wide], express_eligible=True, catalogue=catalogue,
                          settings=ProposalSettings(look_ahead_days=0)).optional == []
