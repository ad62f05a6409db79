"""What a vehicle test found, as plain values, and the spec's rules over them (pure).

The tester (agent/diagnostics) fills a :class:`VehicleTest`; the contract
(agent/contract/diagnosis.py) turns it into the ``cbs.diagnosis/1`` payload. The rules that
need no I/O live here: the outcome, the VIN most ECUs agree on, the summary counts, and the
table of BMW diagnostic addresses (data, in ``data/bmw_ecus.toml``).
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Literal

from protocols.dtc import DtcRecord

Protocol = Literal["bmw", "obd2"]
Outcome = Literal["complete", "partial", "no_response", "aborted"]
Step = Literal["ident", "faults", "counts", "mileage", "clear"]
FailureKind = Literal["timeout", "nrc", "transport"]

KOMBI_ADDRESS = 0x60


@cache
def bmw_ecu_names() -> dict[int, str]:
    """Address -> workshop name, from the shipped table (the default probe list)."""
    text = resources.files("agent.domain").joinpath("data/bmw_ecus.toml").read_text("utf-8")
    return {int(key, 16): str(name) for key, name in tomllib.loads(text)["ecus"].items()}


@dataclass(frozen=True, slots=True)
class RequestFailure:
    """A request of one ECU that failed: the report lists it under that ECU's ``errors``."""

    step: Step
    request: str  # the request bytes as upper-case hex, e.g. "22F190"
    kind: FailureKind
    nrc: int | None
    detail: str


@dataclass(slots=True)
class EcuReading:
    """Everything read from one present ECU. ``None`` is "not known" (the ECU said it does not
    support it, or the request failed: then ``errors`` says so)."""

    address: int
    name: str | None = None
    vin: str | None = None
    part_number: str | None = None
    software: str | None = None
    hardware: str | None = None
    serial: str | None = None
    dtcs: list[DtcRecord] | None = None
    occurrences: dict[int, int | None] = field(default_factory=dict)  # DTC code -> count
    errors: list[RequestFailure] = field(default_factory=list)
    mileage_km: int | None = None
    mil_on: bool = False  # OBD-II PID 01: the malfunction indicator lamp
    km_since_cleared: int | None = None  # OBD-II PID 31

    def fail(self, step: Step, request: bytes, kind: FailureKind, detail: str,
             nrc: int | None = None) -> None:
        self.errors.append(RequestFailure(step, request.hex().upper(), kind, nrc, detail))


@dataclass(slots=True)
class VehicleTest:
    """One test of one car. ``aborted`` says the interface went away before the end."""

    protocol: Protocol
    started_at: datetime
    finished_at: datetime | None = None
    ecus: list[EcuReading] = field(default_factory=list)
    absent: list[int] = field(default_factory=list)
    aborted: bool = False
    abort_reason: str | None = None

    @property
    def outcome(self) -> Outcome:
        if self.aborted:
            return "aborted"
        if not self.ecus:
            return "no_response"
        return "partial" if any(ecu.errors for ecu in self.ecus) else "complete"

    def vin(self) -> tuple[str | None, bool]:
        """The VIN most ECUs agree on (ties: the one of the lowest address) and whether every
        ECU that reported a VIN reported that one."""
        reported = [ecu.vin for ecu in sorted(self.ecus, key=lambda e: e.address) if ecu.vin]
        if not reported:
            return None, True
        counts = Counter(reported)
        best = max(counts.values())
        vin = next(v for v in reported if counts[v] == best)
        return vin, len(counts) == 1

    def mileage_km(self) -> int | None:
        """KOMBI's figure (``bmw``) or the first odometer reported (``obd2``)."""
        for ecu in sorted(self.ecus, key=lambda e: e.address):
            if ecu.mileage_km is not None and (self.protocol == "obd2"
                                               or ecu.address == KOMBI_ADDRESS):
                return ecu.mileage_km
        return None

    def warning_lamp(self) -> bool:
        return any(ecu.mil_on or any(d.warning_lamp for d in ecu.dtcs or ())
                   for ecu in self.ecus)
