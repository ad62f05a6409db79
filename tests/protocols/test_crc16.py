"""The serial frame CRC is CRC-16/CCITT-FALSE by its bitwise definition, for any bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from strategies import protocols_settings

from protocols.crc import crc16_ccitt_false


def _bitwise(data: bytes, crc: int = 0xFFFF) -> int:
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@protocols_settings(300)
@given(st.binary(max_size=260), st.integers(0, 0xFFFF))
def test_matches_the_bitwise_definition(data: bytes, start: int) -> None:
    assert crc16_ccitt_false(data) == _bitwise(data)
    assert crc16_ccitt_false(data, start) == _bitwise(data, start)


def test_accepts_every_bytes_like() -> None:
    assert crc16_ccitt_false(bytearray(b"123456789")) == crc16_ccitt_false(
        memoryview(b"123456789")) == 0x29B1
