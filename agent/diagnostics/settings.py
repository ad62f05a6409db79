"""The ``[diagnostics]`` section: how the vehicle test talks to the car (every figure of the
spec's "Timing" is configurable here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from agent.diagnostics.timing import DiagnosticTiming


class DiagnosticsSettings(BaseModel):
    model_config = {"extra": "forbid"}

    can_interface: str | None = Field(None, description="The daemon's diagnostics channel: a "
                                      "python-can interface of its own (never the key "
                                      "reader's); unset: `run` tests no vehicle.")
    can_channel: str | None = Field(None, description="Its channel (can1, /dev/ttyACM1, ...).")
    can_bitrate: int = Field(500_000, ge=5_000, le=1_000_000, description="Its bit rate, bit/s.")
    probe_interval_s: float = Field(2.0, ge=0.2, le=3600, description="How often `run` looks "
                                                                     "for a car there.")
    protocol: Literal["bmw", "obd2"] = Field("bmw", description="bmw (UDS, extended addressing) "
                                                                "or obd2 (generic OBD-II).")
    addresses: list[int] | None = Field(None, description="bmw: ECU addresses to probe "
                                                          "(default: every address of the table).")
    p2_ms: float = Field(150.0, gt=0, le=60_000, description="First answer, ms.")
    p2_star_ms: float = Field(5000.0, gt=0, le=600_000,
                              description="After each response-pending (0x78), ms.")
    max_pending: int = Field(10, ge=0, le=1000, description="0x78 answers accepted in a row.")
    n_bs_ms: float = Field(1000.0, gt=0, le=60_000, description="ISO-TP N_Bs, ms.")
    n_cr_ms: float = Field(1000.0, gt=0, le=60_000, description="ISO-TP N_Cr, ms.")
    busy_retry_ms: float = Field(20.0, ge=0, le=10_000, description="Wait before asking again "
                                                                    "after NRC 0x21, ms.")
    busy_retries: int = Field(3, ge=0, le=100, description="Times to ask again after NRC 0x21.")
    max_in_flight: int = Field(8, ge=1, le=64, description="Requests to different ECUs at once "
                               "after the probe.")
    probes_in_flight: int | None = Field(None, ge=1, le=256, description="Probes (3E 00, one "
                                         "frame each) at once; unset: every address.")
    key_link_hours: float = Field(2.0, ge=0, le=720, description="A key readout of the same VIN at this "
                                                         "reader this recent is linked.")
    publish_timeout_s: float = Field(10.0, ge=0, le=3600,
                                     description="How long `diagnose` waits for the broker.")

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            bad = [a for a in value if not 0 <= a <= 0xFF]
            if bad or not value:
                raise ValueError("addresses are 1 or more diagnostic addresses 0x00-0xFF")
        return value

    def timing(self) -> DiagnosticTiming:
        return DiagnosticTiming(p2_s=self.p2_ms / 1000, p2_star_s=self.p2_star_ms / 1000,
                                max_pending=self.max_pending, n_bs_s=self.n_bs_ms / 1000,
                                n_cr_s=self.n_cr_ms / 1000, busy_retry_s=self.busy_retry_ms / 1000,
                                busy_retries=self.busy_retries, max_in_flight=self.max_in_flight,
                                probes_in_flight=self.probes_in_flight)
