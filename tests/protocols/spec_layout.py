"""The bit layout of section 1 of the spec, transcribed by hand: an oracle independent of the DBC.

``pack_spec`` / ``unpack_spec`` know nothing of cantools, so a test that compares them with the
DBC-driven encoder checks the DBC against the spec rather than against itself.
"""

from __future__ import annotations

# frame id -> [(field, first bit, length, signed)], Intel bit numbering (bit 0 = LSB of byte 0)
SPEC_FIELDS: dict[int, list[tuple[str, int, int, bool]]] = {
    0x6F0: [("ProtocolVersion", 0, 8, False), ("SessionSeq", 8, 8, False),
            ("FrameCount", 16, 8, False), ("KeyId", 24, 32, False), ("KeySlot", 56, 4, False)],
    0x6F1: [("VinPart", 0, 8, False)] + [(f"VinChar{i}", 8 + 8 * i, 8, False) for i in range(7)],
    0x6F2: [("MileageKm", 0, 24, False), ("DataYear", 24, 7, False), ("DataMonth", 31, 4, False),
            ("DataDay", 35, 5, False), ("FuelLevelPct", 40, 8, False), ("BuildYear", 48, 7, False),
            ("BuildMonth", 55, 4, False)],
    0x6F3: [("AmbientAvg", 0, 8, False), ("AmbientMin", 8, 8, False), ("AmbientMax", 16, 8, False),
            ("HotSharePct", 24, 7, False), ("ColdSharePct", 31, 7, False),
            ("ShortTripPct", 38, 7, False), ("SevereDutyPct", 45, 7, False),
            ("AvgTripKm", 52, 12, False)],
    0x6F4: [("ItemIndex", 0, 4, False), ("CbsType", 8, 8, False), ("AvailabilityPct", 16, 8, False),
            ("RemainingKm", 24, 20, True), ("DueYear", 44, 7, False), ("DueMonth", 51, 4, False),
            ("ServiceCount", 55, 5, False)],
    0x6F5: [("ItemIndex", 0, 4, False), ("LastServiceKm", 8, 24, False),
            ("LastServiceYear", 32, 7, False), ("LastServiceMonth", 39, 4, False),
            ("IntervalKm", 43, 10, False), ("IntervalMonths", 53, 7, False)],
    0x6F6: [("CcIndex", 0, 8, False), ("CcId", 8, 16, False), ("CcStatus", 24, 8, False),
            ("CcMileageKm", 32, 24, False)],
    # DtcCode (bytes 1-3, big-endian) is handled apart in pack_spec
    0x6F7: [("DtcIndex", 0, 8, False), ("DtcStatus", 32, 8, False), ("EcuAddress", 40, 8, False),
            ("Occurrences", 48, 16, False)],
    0x6FF: [("SessionSeq", 0, 8, False), ("FrameCount", 8, 8, False), ("Crc32", 16, 32, False)],
}
KEY_DTC = 0x6F7


def field_ranges(frame_id: int) -> dict[str, tuple[int, int]]:
    """Raw (min, max) of every field of a message, from its width and signedness."""
    out = {name: ((-(1 << (n - 1)), (1 << (n - 1)) - 1) if signed else (0, (1 << n) - 1))
           for name, _, n, signed in SPEC_FIELDS[frame_id]}
    if frame_id == KEY_DTC:
        out["DtcCode"] = (0, 0xFFFFFF)
    return out


def pack_spec(frame_id: int, raw: dict[str, int]) -> bytes:
    """8 data bytes of a message from raw field values, reserved bits 0."""
    word = 0
    for name, first, length, _ in SPEC_FIELDS[frame_id]:
        word |= (raw[name] & ((1 << length) - 1)) << first
    data = bytearray(word.to_bytes(8, "little"))
    if frame_id == KEY_DTC:
        data[1:4] = raw["DtcCode"].to_bytes(3, "big")
    return bytes(data)


def unpack_spec(frame_id: int, data: bytes) -> dict[str, int]:
    """Raw field values of 8 data bytes; reserved bits ignored."""
    word = int.from_bytes(data, "little")
    out: dict[str, int] = {}
    for name, first, length, signed in SPEC_FIELDS[frame_id]:
        value = (word >> first) & ((1 << length) - 1)
        if signed and value >> (length - 1):
            value -= 1 << length
        out[name] = value
    if frame_id == KEY_DTC:
        out["DtcCode"] = int.from_bytes(data[1:4], "big")
    return out


def used_mask(frame_id: int) -> bytes:
    """The bits a message uses: 1 where a field lives, 0 for reserved bits."""
    return pack_spec(frame_id, {name: hi if lo == 0 else -1
                                for name, (lo, hi) in field_ranges(frame_id).items()})
