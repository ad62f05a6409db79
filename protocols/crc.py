"""Checksums of the key reader protocol.

CRC-16/CCITT-FALSE guards each serial frame; the session CRC-32 is zlib's (see session.py).
Both are computed in C by the standard library: CRC-16/CCITT-FALSE is ``binascii.crc_hqx``
(poly 0x1021, not reflected, no final XOR) started at 0xFFFF — about thirty times faster than
a table-driven loop in Python, which matters on the appliance's slow core at 9,000 frames/s.
``tests/protocols`` checks it against the bitwise definition.
"""

from __future__ import annotations

from binascii import crc_hqx


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final XOR."""
    return crc_hqx(data, crc)
