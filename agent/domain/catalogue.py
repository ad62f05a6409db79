"""The service catalogue: the published standard price of every CBS service (docs/proposal.md).

Dealers promise the same labour times and parts prices at every dealer, so the prices are data,
not code: a TOML file gives, per CBS service type, the labour time and the parts (number,
description, quantity, unit price), for the whole catalogue the currency, the hourly labour
rate and the tax rate, and (``[fault_finding]``, optional) the labour of finding a confirmed
fault, per control unit: what the desk prices a fault line with (docs/proposal.md). The
agent ships a default (``agent/domain/data/catalogue.toml``); a dealer points
``[catalogue] path`` at its own copy.

Path -> text -> pure parser (as cantools does): :func:`load_catalogue_file` reads,
:func:`parse_catalogue` validates a string and is what the tests drive. Every amount is a
:class:`~decimal.Decimal`: the TOML is parsed with ``parse_float=Decimal``, so ``12.90`` in the
file is exactly 12.90, never a binary float; quoted amounts (``"12.90"``) are accepted too.

Every problem is one :class:`CatalogueError` (a :class:`~agent.errors.ConfigError`, so the CLI
exits 2 at start-up) naming the file and the entry, e.g.
``catalogue dealer.toml: services.engine_oil.parts[2].unit_price: at most 2 decimal places, got 12.999``.
"""

from __future__ import annotations

import functools
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.domain.diagnosis import bmw_ecu_names
from agent.domain.i18n import DEFAULT_LANGUAGE, LANGUAGES
from agent.errors import ConfigError
from protocols.cbs_types import CbsType

__all__ = [
    "DEFAULT_CATALOGUE_PATH",
    "Catalogue",
    "CatalogueEntry",
    "CatalogueError",
    "CataloguePart",
    "CatalogueSettings",
    "FaultFinding",
    "default_catalogue",
    "load_catalogue",
    "load_catalogue_file",
    "parse_catalogue",
]

DEFAULT_CATALOGUE_PATH = Path(__file__).resolve().parent / "data" / "catalogue.toml"

_KNOWN_TYPES = frozenset(t.value for t in CbsType if t is not CbsType.UNKNOWN)
_TOP_KEYS = {"currency", "labour_rate_per_hour", "tax_rate_pct", "decimal_places", "title",
             "services", "fault_finding"}
_FAULT_FINDING_KEYS = {"default_minutes", "ecus"}
_ENTRY_KEYS = {"labour_minutes", "parts"}
_PART_KEYS = {"number", "description", "quantity", "unit_price"}


class CatalogueError(ConfigError):
    """The catalogue cannot be used; the message names the file and the entry."""


class CatalogueSettings(BaseModel):
    """The ``[catalogue]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path | None = Field(None, description="Dealer catalogue (TOML) replacing the shipped "
                                                "default; see docs/proposal.md.")
    tax_rate_pct: Decimal | None = Field(None, ge=0, lt=100,
                                         description="Overrides the catalogue's tax rate, %.")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$",
                                 description="Expected currency (ISO 4217); start-up fails when "
                                             "the catalogue is priced in another.")


@dataclass(frozen=True, slots=True)
class CataloguePart:
    number: str
    description: Mapping[str, str]  # language -> text; "en" is always there
    quantity: Decimal
    unit_price: Decimal

    def describe(self, lang: str) -> str:
        """The description in ``lang``, else in English."""
        return self.description.get(lang) or self.description[DEFAULT_LANGUAGE]


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    type: str
    labour_minutes: int
    parts: tuple[CataloguePart, ...]


@dataclass(frozen=True, slots=True)
class FaultFinding:
    """Labour minutes of finding a confirmed fault in one control unit, by the unit's workshop
    name (``DME``, ``KOMBI``: the diagnostic table, agent/domain/data/bmw_ecus.toml).
    ``default_minutes`` is for a unit not listed, for a unit without a name (an address
    outside the table) and for every OBD-II unit (generic OBD-II names none)."""

    default_minutes: int
    ecus: Mapping[str, int]

    def minutes(self, ecu_name: str | None) -> int:
        """The labour minutes of fault finding in the unit called ``ecu_name`` (None: unnamed)."""
        if ecu_name is None:
            return self.default_minutes
        return self.ecus.get(ecu_name, self.default_minutes)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """A validated catalogue. Amounts are exact; ``decimal_places`` is the currency's minor
    unit (2 for EUR and CNY), to which every computed amount is rounded."""

    currency: str
    labour_rate_per_hour: Decimal
    tax_rate_pct: Decimal
    decimal_places: int
    entries: Mapping[str, CatalogueEntry]
    source: str = "<catalogue>"
    title: str = ""
    fault_finding: FaultFinding | None = None  # None: fault lines are priced on request

    def entry(self, type_name: str) -> CatalogueEntry | None:
        """The entry of CBS type ``type_name``; None when the catalogue has no price for it."""
        return self.entries.get(type_name)


# --- parsing -------------------------------------------------------------------------------

def _fail(source: str, where: str, message: str) -> CatalogueError:
    return CatalogueError(f"catalogue {source}: {where}: {message}" if where
                          else f"catalogue {source}: {message}")


def _shown(value: Any) -> str:
    """A value as the file wrote it: 0.5, not Decimal('0.5')."""
    return str(value) if isinstance(value, Decimal) else repr(value)


def _decimal(value: Any, source: str, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise _fail(source, where, f"expected a decimal number such as 12.90, got {_shown(value)}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise _fail(source, where, f"expected a decimal number such as 12.90, got {_shown(value)}") from None
    if not number.is_finite():
        raise _fail(source, where, f"must be a finite number, got {_shown(value)}")
    return number


def _places(number: Decimal) -> int:
    exponent = number.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _unknown_keys(table: Mapping[str, Any], allowed: set[str], source: str, where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        prefix = f"{where}." if where else ""
        raise _fail(source, f"{prefix}{extra[0]}",
                    f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _description(value: Any, source: str, where: str) -> dict[str, str]:
    texts: dict[str, str]
    if isinstance(value, str):
        texts = {DEFAULT_LANGUAGE: value}
    elif isinstance(value, Mapping):
        texts = dict(value)
        for lang, text in texts.items():
            if lang not in LANGUAGES:
                raise _fail(source, f"{where}.{lang}",
                            f"unknown language (choose from {', '.join(LANGUAGES)})")
            if not isinstance(text, str):
                raise _fail(source, f"{where}.{lang}", f"expected text, got {_shown(text)}")
        if DEFAULT_LANGUAGE not in texts:
            raise _fail(source, where, f"needs an '{DEFAULT_LANGUAGE}' text (the fallback)")
    else:
        raise _fail(source, where, f"expected text or a table of languages, got {_shown(value)}")
    for lang, text in texts.items():
        if not text.strip():
            raise _fail(source, f"{where}.{lang}" if isinstance(value, Mapping) else where,
                        "must not be empty")
    return texts


def _part(raw: Any, places: int, source: str, where: str) -> CataloguePart:
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"expected a table ([[...parts]]), got {_shown(raw)}")
    _unknown_keys(raw, _PART_KEYS, source, where)
    for key in ("number", "description", "unit_price"):
        if key not in raw:
            raise _fail(source, f"{where}.{key}", "is missing")
    number = raw["number"]
    if not isinstance(number, str) or not number.strip():
        raise _fail(source, f"{where}.number", f"expected a part number as text, got {_shown(number)}")
    quantity = _decimal(raw.get("quantity", 1), source, f"{where}.quantity")
    if quantity <= 0:
        raise _fail(source, f"{where}.quantity", f"must be greater than 0, got {quantity}")
    price = _decimal(raw["unit_price"], source, f"{where}.unit_price")
    if price < 0:
        raise _fail(source, f"{where}.unit_price", f"must not be negative, got {price}")
    if _places(price) > places:
        raise _fail(source, f"{where}.unit_price",
                    f"at most {places} decimal places, got {raw['unit_price']}")
    return CataloguePart(number=number.strip(),
                         description=_description(raw["description"], source, f"{where}.description"),
                         quantity=quantity, unit_price=price)


def _entry(type_name: str, raw: Any, places: int, source: str) -> CatalogueEntry:
    where = f"services.{type_name}"
    if type_name not in _KNOWN_TYPES:
        raise _fail(source, where, "not a CBS service type of the protocol's table "
                                   "(engine_oil, brake_fluid, ...; see docs/proposal.md)")
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"expected a table, got {_shown(raw)}")
    _unknown_keys(raw, _ENTRY_KEYS, source, where)
    if "labour_minutes" not in raw:
        raise _fail(source, f"{where}.labour_minutes", "is missing")
    minutes = _minutes(raw["labour_minutes"], source, f"{where}.labour_minutes")
    raw_parts = raw.get("parts", [])
    if not isinstance(raw_parts, list):
        raise _fail(source, f"{where}.parts", "expected an array of tables ([[...parts]])")
    parts = tuple(_part(p, places, source, f"{where}.parts[{i}]") for i, p in enumerate(raw_parts))
    seen: set[str] = set()
    for i, part in enumerate(parts):
        if part.number in seen:
            raise _fail(source, f"{where}.parts[{i}].number",
                        f"part {part.number} is listed twice; give one line with its quantity")
        seen.add(part.number)
    if minutes == 0 and not parts:
        raise _fail(source, where, "has neither labour nor parts")
    return CatalogueEntry(type=type_name, labour_minutes=minutes, parts=parts)


def _minutes(value: Any, source: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(source, where, f"expected a whole number of minutes >= 0, got {_shown(value)}")
    return value


def _fault_finding(raw: Any, source: str) -> FaultFinding:
    where = "fault_finding"
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"expected a table ([fault_finding]), got {_shown(raw)}")
    _unknown_keys(raw, _FAULT_FINDING_KEYS, source, where)
    if "default_minutes" not in raw:
        raise _fail(source, f"{where}.default_minutes", "is missing")
    default = _minutes(raw["default_minutes"], source, f"{where}.default_minutes")
    ecus = raw.get("ecus", {})
    if not isinstance(ecus, Mapping):
        raise _fail(source, f"{where}.ecus", "expected a table ([fault_finding.ecus]) of "
                                             "control-unit names and minutes")
    names = sorted(set(bmw_ecu_names().values()))
    minutes: dict[str, int] = {}
    for name, value in ecus.items():
        if name not in names:
            raise _fail(source, f"{where}.ecus.{name}",
                        "not a control unit of the diagnostic table "
                        f"({', '.join(names)}; see docs/diagnostics.md)")
        minutes[name] = _minutes(value, source, f"{where}.ecus.{name}")
    return FaultFinding(default_minutes=default, ecus=types.MappingProxyType(minutes))


def parse_catalogue(text: str, *, source: str = "<catalogue>") -> Catalogue:
    """Validate a catalogue given as TOML text. Pure; raises :class:`CatalogueError`."""
    try:
        raw = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(source, "", f"invalid TOML: {exc}") from exc
    _unknown_keys(raw, _TOP_KEYS, source, "")
    for key in ("currency", "labour_rate_per_hour", "services"):
        if key not in raw:
            raise _fail(source, key, "is missing")
    currency = raw["currency"]
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isascii() \
            or not currency.isupper() or not currency.isalpha():
        raise _fail(source, "currency", f"expected an ISO 4217 code such as EUR, got {_shown(currency)}")
    places = raw.get("decimal_places", 2)
    if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= 4:
        raise _fail(source, "decimal_places", f"expected 0 to 4, got {_shown(places)}")
    rate = _decimal(raw["labour_rate_per_hour"], source, "labour_rate_per_hour")
    if rate < 0:
        raise _fail(source, "labour_rate_per_hour", f"must not be negative, got {rate}")
    if _places(rate) > places:
        raise _fail(source, "labour_rate_per_hour",
                    f"at most {places} decimal places, got {raw['labour_rate_per_hour']}")
    tax = _decimal(raw.get("tax_rate_pct", 0), source, "tax_rate_pct")
    if not 0 <= tax < 100:
        raise _fail(source, "tax_rate_pct", f"must be at least 0 and below 100, got {tax}")
    title = raw.get("title", "")
    if not isinstance(title, str):
        raise _fail(source, "title", f"expected text, got {_shown(title)}")
    services = raw["services"]
    if not isinstance(services, Mapping) or not services:
        raise _fail(source, "services", "expected at least one [services.<type>] table")
    entries = types.MappingProxyType(
        {name: _entry(name, value, places, source) for name, value in services.items()})
    fault_finding = (_fault_finding(raw["fault_finding"], source) if "fault_finding" in raw
                     else None)
    return Catalogue(currency=currency, labour_rate_per_hour=rate, tax_rate_pct=tax,
                     decimal_places=places, entries=entries, source=source, title=title,
                     fault_finding=fault_finding)


def load_catalogue_file(path: str | Path) -> Catalogue:
    """Read and validate a catalogue file; raises :class:`CatalogueError` naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:  # ValueError: undecodable, or a NUL in the path
        shown = str(path) if str(path).isprintable() else repr(str(path))
        raise CatalogueError(f"catalogue {shown}: cannot read: {exc}") from exc
    return parse_catalogue(text, source=str(path))


@functools.cache
def default_catalogue() -> Catalogue:
    """The shipped catalogue (``agent/domain/data/catalogue.toml``), parsed once."""
    return load_catalogue_file(DEFAULT_CATALOGUE_PATH)


def load_catalogue(settings: CatalogueSettings | None = None) -> Catalogue:
    """The catalogue the agent prices with: the dealer's file or the shipped default, with
    the configured tax rate applied. Call at start-up: raises :class:`CatalogueError` for an
    invalid file, or when ``currency`` is set and the catalogue is priced in another one (a
    dealer outside the euro area must not publish the default's euro prices)."""
    settings = settings if settings is not None else CatalogueSettings()
    catalogue = load_catalogue_file(settings.path) if settings.path else default_catalogue()
    if settings.currency is not None and settings.currency != catalogue.currency:
        hint = "" if settings.path else "; set [catalogue] path to a catalogue priced in " \
                                        f"{settings.currency}"
        raise CatalogueError(f"catalogue {catalogue.source}: priced in {catalogue.currency}, "
                             f"but catalogue.currency is {settings.currency}{hint}")
    if settings.tax_rate_pct is not None:
        catalogue = replace(catalogue, tax_rate_pct=settings.tax_rate_pct)
    return catalogue
