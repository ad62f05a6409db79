"""The service catalogue: the shipped one is complete and valid; a broken one stops start-up
with one line that names the file and the entry."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from agent.config import load_settings
from agent.domain.catalogue import (
    DEFAULT_CATALOGUE_PATH,
    CatalogueError,
    CatalogueSettings,
    default_catalogue,
    load_catalogue,
    parse_catalogue,
)
from agent.errors import ConfigError
from agent.wiring import proposal_context
from protocols.cbs_types import CbsType

GOOD = """
currency = "EUR"
labour_rate_per_hour = 150.00
tax_rate_pct = 19
[services.engine_oil]
labour_minutes = 30
[[services.engine_oil.parts]]
number = "OIL-1"
description = { en = "Oil", de = "Öl", zh = "机油" }
quantity = 5.25
unit_price = 12.90
[[services.engine_oil.parts]]
number = "FILTER-1"
description = "Oil filter"
unit_price = "19.90"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    for name in list(os.environ):
        if name.startswith("CBS_"):
            monkeypatch.delenv(name)


def test_shipped_catalogue_prices_every_cbs_type() -> None:
    catalogue = default_catalogue()
    assert catalogue.source == str(DEFAULT_CATALOGUE_PATH)
    assert set(catalogue.entries) == {t.value for t in CbsType if t is not CbsType.UNKNOWN}
    assert catalogue.currency == "EUR" and catalogue.decimal_places == 2
    for entry in catalogue.entries.values():
        for part in entry.parts:
            assert set(part.description) == {"en", "de", "zh"}, (entry.type, part.number)


def test_shipped_catalogue_prices_fault_finding_per_control_unit() -> None:
    """Every unit of the diagnostic table has its minutes; the engine's takes longer than the
    instrument cluster's; a unit outside the table and an OBD-II unit take the default."""
    from agent.domain.diagnosis import bmw_ecu_names

    finding = default_catalogue().fault_finding
    assert finding is not None
    assert set(finding.ecus) == set(bmw_ecu_names().values())
    assert finding.minutes("DME") == 60 > finding.minutes("KOMBI") == 20
    assert finding.minutes(None) == finding.minutes("XYZ") == finding.default_minutes == 30


def test_fault_finding_is_optional_for_a_dealer_catalogue() -> None:
    """A catalogue written before fault finding was priced stays valid: fault lines are
    then on request."""
    assert parse_catalogue(GOOD).fault_finding is None
    finding = parse_catalogue(GOOD + "[fault_finding]\ndefault_minutes = 25\n").fault_finding
    assert finding is not None and finding.minutes("DME") == 25 and dict(finding.ecus) == {}


def test_good_catalogue_is_exact() -> None:
    catalogue = parse_catalogue(GOOD, source="good.toml")
    oil = catalogue.entry("engine_oil")
    assert oil is not None and catalogue.entry("brake_fluid") is None
    assert oil.parts[0].quantity == Decimal("5.25")
    assert str(oil.parts[0].unit_price) == "12.90"  # a TOML float, kept exactly
    assert oil.parts[1].quantity == 1 and oil.parts[1].unit_price == Decimal("19.90")
    assert oil.parts[0].describe("de") == "Öl" and oil.parts[1].describe("zh") == "Oil filter"


def _broken(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


@pytest.mark.parametrize(("text", "expected"), [
    ("currency = \n", "catalogue dealer.toml: invalid TOML"),
    (_broken('currency = "EUR"', 'currency = "euro"'),
     "catalogue dealer.toml: currency: expected an ISO 4217 code such as EUR, got 'euro'"),
    (_broken('currency = "EUR"\n', ""), "catalogue dealer.toml: currency: is missing"),
    (_broken("labour_rate_per_hour = 150.00", "labour_rate_per_hour = -1"),
     "labour_rate_per_hour: must not be negative, got -1"),
    (_broken("tax_rate_pct = 19", "tax_rate_pct = 100"),
     "tax_rate_pct: must be at least 0 and below 100, got 100"),
    (_broken("tax_rate_pct = 19", "tax_rate_pct = nan"), "tax_rate_pct: must be a finite number"),
    (_broken("tax_rate_pct = 19", "tax_rate_pct = 19\nvat = 7"), "vat: unknown key"),
    (_broken("[services.engine_oil]", "[services.engine_oel]"),
     "catalogue dealer.toml: services.engine_oel: not a CBS service type"),
    (_broken("[services.engine_oil]", "[services.unknown]"), "services.unknown: not a CBS service type"),
    (_broken("labour_minutes = 30", "labour_minutes = 0.5"),
     "services.engine_oil.labour_minutes: expected a whole number of minutes >= 0, got 0.5"),
    (_broken("labour_minutes = 30\n", ""), "services.engine_oil.labour_minutes: is missing"),
    (_broken("labour_minutes = 30", "labour_minutes = 30\nlabour_price = 10"),
     "services.engine_oil.labour_price: unknown key"),
    (_broken('unit_price = "19.90"', 'unit_price = "19.999"'),
     ("catalogue dealer.toml: services.engine_oil.parts[1].unit_price: at most 2 decimal places, "
      "got 19.999")),
    (_broken('unit_price = "19.90"', 'unit_price = "cheap"'),
     "services.engine_oil.parts[1].unit_price: expected a decimal number such as 12.90, got 'cheap'"),
    (_broken('unit_price = "19.90"', "unit_price = -1.00"),
     "services.engine_oil.parts[1].unit_price: must not be negative"),
    (_broken('unit_price = "19.90"', "unit_price = true"),
     "services.engine_oil.parts[1].unit_price: expected a decimal number"),
    (_broken('unit_price = "19.90"', ""), "services.engine_oil.parts[1].unit_price: is missing"),
    (_broken("quantity = 5.25", "quantity = 0"),
     "services.engine_oil.parts[0].quantity: must be greater than 0, got 0"),
    (_broken('number = "FILTER-1"', 'number = "OIL-1"'),
     "services.engine_oil.parts[1].number: part OIL-1 is listed twice"),
    (_broken('number = "FILTER-1"', "number = 42"),
     "services.engine_oil.parts[1].number: expected a part number as text, got 42"),
    (_broken('description = "Oil filter"', 'description = "Oil filter"\nprice = 1'),
     "services.engine_oil.parts[1].price: unknown key"),
    (_broken('{ en = "Oil", de = "Öl", zh = "机油" }', '{ de = "Öl" }'),
     "services.engine_oil.parts[0].description: needs an 'en' text"),
    (_broken('{ en = "Oil", de = "Öl", zh = "机油" }', '{ en = "Oil", fr = "Huile" }'),
     "services.engine_oil.parts[0].description.fr: unknown language"),
    (_broken('description = "Oil filter"', 'description = " "'),
     "services.engine_oil.parts[1].description: must not be empty"),
    ('currency = "EUR"\nlabour_rate_per_hour = 1\nservices = {}\n',
     "services: expected at least one [services.<type>] table"),
    ('currency = "EUR"\nlabour_rate_per_hour = 1\n[services.battery]\nlabour_minutes = 0\n',
     "services.battery: has neither labour nor parts"),
    (_broken("tax_rate_pct = 19", "tax_rate_pct = 19\ndecimal_places = 7"),
     "decimal_places: expected 0 to 4, got 7"),
    (GOOD + "[fault_finding]\necus = { DME = 60 }\n", "fault_finding.default_minutes: is missing"),
    (GOOD + "[fault_finding]\ndefault_minutes = 30\nper_fault = 5\n",
     "fault_finding.per_fault: unknown key (allowed: default_minutes, ecus)"),
    (GOOD + "[fault_finding]\ndefault_minutes = 0.5\n",
     "fault_finding.default_minutes: expected a whole number of minutes >= 0, got 0.5"),
    (GOOD + "[fault_finding]\ndefault_minutes = 30\necus = { DMW = 60 }\n",
     "fault_finding.ecus.DMW: not a control unit of the diagnostic table (ACSM, BDC, DME, DME2, "),
    (GOOD + "[fault_finding]\ndefault_minutes = 30\necus = { DME = -5 }\n",
     "fault_finding.ecus.DME: expected a whole number of minutes >= 0, got -5"),
    (GOOD + "[fault_finding]\ndefault_minutes = 30\necus = { DME = true }\n",
     "fault_finding.ecus.DME: expected a whole number of minutes >= 0, got True"),
    (GOOD + "[fault_finding]\ndefault_minutes = 30\necus = 60\n",
     "fault_finding.ecus: expected a table ([fault_finding.ecus])"),
    ("fault_finding = 30\n" + GOOD, "fault_finding: expected a table ([fault_finding]), got 30"),
])
def test_errors_name_the_entry(text: str, expected: str) -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(text, source="dealer.toml")
    message = str(caught.value)
    assert expected in message
    assert message.startswith("catalogue dealer.toml: ")
    assert "\n" not in message.split(": invalid TOML")[0]
    assert isinstance(caught.value, ConfigError)  # the CLI prints it and exits 2


def test_dealer_file_replaces_the_default(tmp_path: Path) -> None:
    path = tmp_path / "dealer.toml"
    path.write_text(GOOD.replace('"EUR"', '"CNY"'), encoding="utf-8")
    catalogue = load_catalogue(CatalogueSettings(path=path, currency="CNY",
                                                 tax_rate_pct=Decimal(13)))
    assert catalogue.currency == "CNY" and catalogue.tax_rate_pct == Decimal(13)
    assert set(catalogue.entries) == {"engine_oil"}


def test_currency_guard_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"priced in EUR, but catalogue.currency is CNY; "
                                             r"set \[catalogue\] path"):
        load_catalogue(CatalogueSettings(currency="CNY"))
    with pytest.raises(CatalogueError, match=r"catalogue .*nope.toml: cannot read"):
        load_catalogue(CatalogueSettings(path=tmp_path / "nope.toml"))


def test_start_up_validates_the_configured_catalogue(tmp_path: Path) -> None:
    broken = tmp_path / "dealer.toml"
    broken.write_text(_broken('unit_price = "19.90"', 'unit_price = "19.999"'), encoding="utf-8")
    config = tmp_path / "cbs-agent.toml"
    config.write_text(f'site = "S1"\nreader = "desk1"\nlanguage = "de"\n'
                      f'[catalogue]\npath = "{broken}"\n', encoding="utf-8")
    settings = load_settings(config)
    with pytest.raises(ConfigError, match=r"services.engine_oil.parts\[1\].unit_price"):
        proposal_context(settings)
    broken.write_text(GOOD, encoding="utf-8")
    context = proposal_context(load_settings(config))
    assert context.language == "de" and context.catalogue.source == str(broken)


@pytest.mark.parametrize(("text", "expected"), [
    ('[catalogue]\ntax_rate_pct = 100\n', "catalogue.tax_rate_pct"),
    ('[catalogue]\ncurrency = "euro"\n', "catalogue.currency"),
    ('[catalogue]\nbogus = 1\n', "unknown option 'catalogue.bogus'"),
    ('[proposal]\nlook_ahead_days = -1\n', "proposal.look_ahead_days"),
    ('[reminders]\nhour = 24\n', "reminders.hour"),
    ('language = "fr"\n', "language"),
])
def test_config_sections_are_checked(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "cbs-agent.toml"
    config.write_text('site = "S1"\nreader = "desk1"\n' + text, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_settings(config)
