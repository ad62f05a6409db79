"""The CAN frame as the protocol layer sees it, independent of python-can."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.values import fast_init

KEY_READER_FIRST_ID = 0x6F0
KEY_READER_LAST_ID = 0x6FF
SESSION_START_ID = 0x6F0
SESSION_END_ID = 0x6FF
DATA_FRAME_IDS = frozenset(range(0x6F1, 0x6F8))


@fast_init
@dataclass(frozen=True, slots=True)
class CanFrame:
    """One classic CAN frame. ``timestamp`` is seconds (epoch on live readers and captures)."""

    arbitration_id: int
    data: bytes
    timestamp: float = 0.0

    def __str__(self) -> str:
        return f"{self.arbitration_id:03X}#{self.data.hex().upper()}"


def is_key_reader_id(arbitration_id: int) -> bool:
    """True for the identifiers reserved for the key reader (0x6F0-0x6FF)."""
    return KEY_READER_FIRST_ID <= arbitration_id <= KEY_READER_LAST_ID
