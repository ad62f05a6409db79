"""Realistic BMW-group VINs for the simulated fleet (ISO 3779 layout).

Positions: 1-3 WMI, 4-8 vehicle descriptor, 9 check digit (mandatory in North America,
optional elsewhere: European VINs often carry a plain character there), 10 model year,
11 plant, 12-17 serial number. Only ``A-HJ-NPR-Z0-9`` is used, so every VIN made here is
valid for the key reader protocol.
"""

from __future__ import annotations

import random
import re

VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
VIN_PATTERN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")

# World manufacturer identifiers of the BMW group with a rough share of a dealer's fleet.
# 5UX (Spartanburg X models) is a North American VIN, so it always carries a check digit.
WMI_WEIGHTS: dict[str, int] = {
    "WBA": 50,  # BMW cars
    "WBS": 8,   # BMW M
    "WBY": 7,   # BMW i (electric)
    "WMW": 15,  # MINI
    "WBX": 8,   # BMW X models
    "5UX": 12,  # BMW X models, USA
}
NORTH_AMERICAN_WMIS = frozenset({"5UX"})

_TRANSLITERATION = {
    **{str(d): d for d in range(10)},
    "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
    "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
    "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9,
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
# Model-year codes repeat every 30 years; 1980 and 2010 are both "A".
_MODEL_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"
# BMW plant letters seen in position 11 (Munich, Dingolfing, Regensburg, Leipzig, ...).
_PLANT_CODES = "ABCDEFGJKLNPRVWXYZ0123456789"


def check_digit(vin: str) -> str:
    """The ISO 3779 / FMVSS 115 check digit (position 9) of a 17-character VIN."""
    if len(vin) != 17:
        raise ValueError(f"VIN {vin!r} is not 17 characters")
    total = sum(_TRANSLITERATION[c] * w for c, w in zip(vin, _WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def has_valid_check_digit(vin: str) -> bool:
    return len(vin) == 17 and vin[8] == check_digit(vin)


def model_year_code(year: int) -> str:
    return _MODEL_YEAR_CODES[(year - 1980) % 30]


def make_vin(rng: random.Random, *, wmi: str, model_year: int,
             with_check_digit: bool | None = None) -> str:
    """A VIN with the given WMI and model year. ``with_check_digit`` None decides like the
    real world: always for North American WMIs, about half the time otherwise."""
    if with_check_digit is None:
        with_check_digit = wmi in NORTH_AMERICAN_WMIS or rng.random() < 0.5
    descriptor = "".join(rng.choice(VIN_ALPHABET) for _ in range(5))
    serial = "".join(rng.choice("0123456789") for _ in range(6))
    vin = (wmi + descriptor + rng.choice(VIN_ALPHABET) + model_year_code(model_year)
           + rng.choice(_PLANT_CODES) + serial)
    if with_check_digit:
        vin = vin[:8] + check_digit(vin) + vin[9:]
    assert VIN_PATTERN.fullmatch(vin), vin
    return vin


def choose_wmi(rng: random.Random) -> str:
    return rng.choices(list(WMI_WEIGHTS), weights=list(WMI_WEIGHTS.values()))[0]
