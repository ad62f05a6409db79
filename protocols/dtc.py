"""Diagnostic trouble codes: the one form shared by the key's fault list and the vehicle test.

A BMW-style ECU (UDS, ISO 14229-1) stores 3-byte codes with an ISO 14229-1 status byte; a
generic OBD-II ECU (ISO 15031-5) reports 2-byte codes without status, and the service that
reported them (03 stored, 07 pending, 0A permanent) says what they are. :class:`DtcRecord`
holds either; the readout's ``dtcs[]`` and the diagnosis report's ``dtcs[]`` are both built
from the same properties (``code_hex``, ``sae``, ``failure_type``, ``confirmed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocols.values import fast_init

# ISO 14229-1 DTC status bits.
STATUS_TEST_FAILED: Final = 0x01
STATUS_PENDING: Final = 0x04
STATUS_CONFIRMED: Final = 0x08
STATUS_WARNING_LAMP: Final = 0x80

# The OBD-II services that report DTCs.
OBD_STORED: Final = 0x03
OBD_PENDING: Final = 0x07
OBD_PERMANENT: Final = 0x0A
OBD_DTC_MODES: Final = (OBD_STORED, OBD_PENDING, OBD_PERMANENT)


def sae_reading(two_bytes: int) -> str:
    """SAE J2012 reading of a DTC's first two bytes: 0x0301 -> ``P0301``, 0xC123 -> ``U0123``."""
    letter = "PCBU"[(two_bytes >> 14) & 0x3]
    return f"{letter}{(two_bytes >> 12) & 0x3}{two_bytes & 0xFFF:03X}"


@fast_init
@dataclass(frozen=True, slots=True)
class DtcRecord:
    """One trouble code as an ECU reported it.

    ``width`` is 3 (UDS: code = 24 bits, high byte first, with a ``status`` byte) or 2
    (OBD-II: 16 bits, ``status`` None, ``obd_mode`` the service that reported it)."""

    code: int
    width: int = 3
    status: int | None = None
    obd_mode: int | None = None

    @property
    def code_hex(self) -> str:
        """The code as upper-case hex digits, 6 (UDS) or 4 (OBD-II): the canonical form."""
        return f"{self.code:0{2 * self.width}X}"

    @property
    def sae(self) -> str:
        return sae_reading(self.code >> 8 if self.width == 3 else self.code)

    @property
    def failure_type(self) -> int | None:
        """The third byte (UDS); None for a 2-byte OBD-II code."""
        return self.code & 0xFF if self.width == 3 else None

    @property
    def confirmed(self) -> bool:
        if self.status is not None:
            return bool(self.status & STATUS_CONFIRMED)
        return self.obd_mode in (OBD_STORED, OBD_PERMANENT)

    @property
    def pending(self) -> bool:
        if self.status is not None:
            return bool(self.status & STATUS_PENDING)
        return self.obd_mode == OBD_PENDING

    @property
    def warning_lamp(self) -> bool:
        """Status bit 7 (UDS). OBD-II codes carry no lamp: the MIL comes from PID 01."""
        return self.status is not None and bool(self.status & STATUS_WARNING_LAMP)

    @property
    def permanent(self) -> bool:
        return self.obd_mode == OBD_PERMANENT
