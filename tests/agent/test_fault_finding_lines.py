"""Fault-finding lines (agent.domain.approval.fault_finding_lines): one line per control unit
with a confirmed fault, priced as the catalogue's minutes at the proposal's labour rate,
rounded and taxed like the service lines (docs/proposal.md). Pure: payloads in, lines out."""

from __future__ import annotations

import json
import types
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agent.domain.approval import (
    FaultRef,
    fault_finding_lines,
    proposal_lines,
    selection_totals,
)
from agent.domain.catalogue import FaultFinding, default_catalogue
from agent.domain.proposal import labour_amount

RATE = Decimal("156.00")
FINDING = default_catalogue().fault_finding
assert FINDING is not None


def dtc(code: str, sae: str | None, *, confirmed: bool = True, **more: Any) -> dict[str, Any]:
    return {"code": code, "sae": sae, "confirmed": confirmed, **more}


def report(*ecus: tuple[int, str | None, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"ecus": [{"address": a, "name": n, "dtcs": d} for a, n, d in ecus]}


def test_one_line_per_control_unit_listing_its_faults() -> None:
    """The key's P0301 of the DME (0x12) and the vehicle test's P0301 and P0171 of the same
    unit are one line (60 min); the KOMBI's fault is another (20 min); unconfirmed faults
    are not lines."""
    readout = {"dtcs": [{**dtc("03011F", "P0301"), "ecu": 0x12},
                        {**dtc("055501", "P0555", confirmed=False), "ecu": 0x40}]}
    diagnosis = report((0x12, "DME", [dtc("03011F", "P0301"), dtc("01711F", "P0171"),
                                      dtc("04201F", "P0420", confirmed=False)]),
                       (0x60, "KOMBI", [dtc("A1B2C3", None)]),
                       (0x40, "BDC", []))
    dme, kombi = fault_finding_lines(readout, diagnosis, FINDING, labour_rate_per_hour=RATE,
                                     places=2)
    assert (dme.key, dme.ecu_name, dme.labour_minutes, dme.labour, dme.net) == (
        "fault:18", "DME", 60, Decimal("156.00"), Decimal("156.00"))
    assert dme.codes == ["P0301", "P0171"] and dme.parts == 0 and dme.priced
    assert dme.faults == (FaultRef("key", 0x12, "03011F", "P0301"),
                          FaultRef("diagnosis", 0x12, "03011F", "P0301"),
                          FaultRef("diagnosis", 0x12, "01711F", "P0171"))
    assert (kombi.key, kombi.labour_minutes, kombi.net, kombi.codes) == (
        "fault:96", 20, Decimal("52.00"), ["A1B2C3"])


def test_unnamed_and_obd2_units_take_the_default() -> None:
    """A key fault at an address outside the diagnostic table and an OBD-II unit (name null,
    address 0x7E8) take default_minutes; the key's named address gets the table's name."""
    readout = {"dtcs": [{**dtc("03011F", "P0301"), "ecu": 0x99},
                        {**dtc("D01234", None), "ecu": 0x29}]}
    obd2 = report((0x7E8, None, [dtc("0301", "P0301")]))
    dsc, unnamed, engine = fault_finding_lines(readout, obd2, FINDING,
                                               labour_rate_per_hour=RATE, places=2)
    assert (dsc.ecu_name, dsc.labour_minutes, dsc.net) == ("DSC", 45, Decimal("117.00"))
    assert (unnamed.ecu, unnamed.ecu_name, unnamed.labour_minutes) == (0x99, None, 30)
    assert (engine.ecu, engine.ecu_name, engine.net) == (0x7E8, None, Decimal("78.00"))


def test_recurring_comes_from_the_report() -> None:
    diagnosis = report((0x12, "DME", [dtc("03011F", "P0301", recurring=True)]),
                       (0x60, "KOMBI", [dtc("A1B2C3", None, recurring=False)]))
    dme, kombi = fault_finding_lines({}, diagnosis, FINDING, labour_rate_per_hour=RATE,
                                     places=2)
    assert dme.recurring and not kombi.recurring


def test_without_fault_finding_in_the_catalogue_the_line_is_on_request() -> None:
    readout = {"dtcs": [{**dtc("03011F", "P0301"), "ecu": 0x12}]}
    for finding, rate in ((None, RATE), (FINDING, None)):
        (line,) = fault_finding_lines(readout, None, finding, labour_rate_per_hour=rate,
                                      places=2)
        assert not line.priced and line.labour_minutes == 0 and line.net == 0
        totals = selection_totals([line], tax_rate_pct=Decimal(19), places=2)
        assert totals.complete is False and totals.gross == Decimal("0.00")


def test_rounding_is_the_service_lines_half_up_and_tax_once_on_the_total() -> None:
    """1.50/h x 5 min = 0.125 -> 0.13 (half-up); 0 places: 9000/h x 25 min = 3750; the tax of
    a service line plus a fault-finding line is rounded once on their sum."""
    finding = FaultFinding(default_minutes=5, ecus=types.MappingProxyType({"DME": 25}))
    readout = {"dtcs": [{**dtc("03011F", "P0301"), "ecu": 0x60}]}
    (cheap,) = fault_finding_lines(readout, None, finding, labour_rate_per_hour=Decimal("1.50"),
                                   places=2)
    assert cheap.net == Decimal("0.13") == labour_amount(Decimal("1.50"), 5, 2)
    (whole,) = fault_finding_lines({"dtcs": [{**dtc("03011F", "P0301"), "ecu": 0x12}]}, None,
                                   finding, labour_rate_per_hour=Decimal(9000), places=0)
    assert str(whole.net) == "3750"

    proposal = {"required": [{"index": 0, "type": "engine_oil", "priced": True,
                              "labour_minutes": 30, "labour": "78.00",
                              "parts": [{"amount": "114.98"}], "net": "192.98"}]}
    (oil,) = proposal_lines(proposal)
    (dme,) = fault_finding_lines({"dtcs": [{**dtc("03011F", "P0301"), "ecu": 0x12}]}, None,
                                 FINDING, labour_rate_per_hour=RATE, places=2)
    totals = selection_totals([oil, dme], tax_rate_pct=Decimal(19), places=2)
    assert (totals.labour_minutes, totals.labour, totals.parts, totals.net, totals.tax,
            totals.gross, totals.complete) == (
        90, Decimal("234.00"), Decimal("114.98"), Decimal("348.98"), Decimal("66.31"),
        Decimal("415.29"), True)


@given(minutes=st.dictionaries(st.sampled_from(["DME", "KOMBI", "DSC", "EGS"]),
                               st.integers(0, 600)),
       default=st.integers(0, 600),
       rate=st.decimals(min_value=0, max_value=10_000, places=2),
       units=st.lists(st.sampled_from([(0x12, "DME"), (0x60, "KOMBI"), (0x29, "DSC"),
                                       (0x7E8, None), (0x99, None)]), unique=True),
       tax=st.decimals(min_value=0, max_value=Decimal("99.99"), places=2))
def test_every_line_is_its_minutes_at_the_rate_and_the_totals_add_up(
        minutes: dict[str, int], default: int, rate: Decimal,
        units: list[tuple[int, str | None]], tax: Decimal) -> None:
    finding = FaultFinding(default_minutes=default, ecus=types.MappingProxyType(minutes))
    diagnosis = report(*[(a, n, [dtc("03011F", "P0301")]) for a, n in units])
    lines = fault_finding_lines({}, diagnosis, finding, labour_rate_per_hour=rate, places=2)
    assert [line.ecu for line in lines] == sorted(a for a, _ in units)
    for line in lines:
        assert line.labour_minutes == finding.minutes(line.ecu_name)
        assert line.net == line.labour == labour_amount(rate, line.labour_minutes, 2)
    totals = selection_totals(lines, tax_rate_pct=tax, places=2)
    assert totals.net == sum((line.net for line in lines), Decimal(0))
    assert totals.gross == totals.net + totals.tax and totals.complete


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=4),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["dtcs", "ecus", "ecu", "address",
                                                        "name", "code", "sae", "confirmed",
                                                        "recurring"]), inner, max_size=4),
                     max_leaves=20)


@given(readout=_json, diagnosis=_json)
def test_odd_payloads_never_raise(readout: Any, diagnosis: Any) -> None:
    """A later compatible payload, or a broken one, gives fewer lines, never an error."""
    readout = readout if isinstance(readout, dict) else {"dtcs": readout}
    diagnosis = diagnosis if isinstance(diagnosis, dict) else None
    lines = fault_finding_lines(readout, diagnosis, FINDING, labour_rate_per_hour=RATE,
                                places=2)
    json.dumps([line.key for line in lines])
    assert len({line.key for line in lines}) == len(lines)
