"""Shared samples of the protocol tests: the spec's worked example (section 4) and helpers."""

from __future__ import annotations

from datetime import date

from protocols.can_frame import CanFrame
from protocols.key_session import (
    CheckControlMessage,
    CheckControlStatus,
    KeySession,
    ServiceHistory,
    ServiceItem,
    StoredDtc,
    UsageData,
    VehicleData,
)
from protocols.session import SessionAssembler, SessionEvent

# The spec's table, verbatim: identifier, then the 8 data bytes.
SPEC_FRAMES_TEXT = """
6F0  01 07 0A 78 56 34 12 02
6F1  00 57 42 41 38 45 35 31
6F1  01 30 37 46 4B 31 32 33
6F1  02 34 35 36 00 00 00 00
6F2  F3 BC 00 9A CD 3F 96 01
6F3  7C 42 9A 88 C5 08 E0 08
6F4  00 01 0C 08 07 B0 11 02
6F4  01 03 FF 00 00 B8 99 00
6F5  00 30 75 00 99 B5 04 03
6F6  00 02 01 01 8A BB 00 00
6F7  00 03 01 1F 2F 12 03 00
6FF  07 0A 9F 2A B0 2C 00 00
"""
FRAME_GAP_S = 0.002


def spec_frames() -> list[CanFrame]:
    frames = []
    for i, line in enumerate(SPEC_FRAMES_TEXT.strip().splitlines()):
        frame_id, *data = line.split()
        frames.append(CanFrame(int(frame_id, 16), bytes.fromhex("".join(data)), i * FRAME_GAP_S))
    return frames


SPEC_DATA = [(f.arbitration_id, f.data) for f in spec_frames()[1:-1]]

# What the example means, written out from the spec's comments.
EXAMPLE_SESSION = KeySession(
    session_seq=7,
    key_id=0x12345678,
    key_slot=2,
    vin="WBA8E5107FK123456",
    vehicle=VehicleData(mileage_km=48_371, data_date=date(2026, 11, 25), fuel_level_pct=63,
                        build_year=2022, build_month=3),
    usage=UsageData(ambient_avg_c=22.0, ambient_min_c=-7.0, ambient_max_c=37.0, hot_share_pct=8,
                    cold_share_pct=11, short_trip_pct=35, severe_duty_pct=0, avg_trip_km=14.2),
    services=(
        ServiceItem(index=0, code=0x01, availability_pct=12, remaining_km=1_800, due_year=2027,
                    due_month=2, service_count=4,
                    history=ServiceHistory(last_service_km=30_000, last_service_year=2025,
                                           last_service_month=11, interval_km=15_000,
                                           interval_months=24)),
        ServiceItem(index=1, code=0x03, availability_pct=None, remaining_km=None, due_year=2027,
                    due_month=3, service_count=1, history=None),
    ),
    check_controls=(CheckControlMessage(index=0, cc_id=0x0102, status=CheckControlStatus.ACTIVE,
                                        mileage_km=48_010),),
    dtcs=(StoredDtc(index=0, code=0x03011F, status=0x2F, ecu_address=0x12, occurrences=3),),
)


def feed_all(frames: list[CanFrame], assembler: SessionAssembler | None = None,
             ) -> tuple[SessionAssembler, list[SessionEvent]]:
    """Feed ``frames`` to ``assembler`` (a new one by default); return it and all events."""
    assembler = assembler if assembler is not None else SessionAssembler()
    return assembler, [event for frame in frames for event in assembler.feed(frame)]
