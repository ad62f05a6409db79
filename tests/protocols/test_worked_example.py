"""Section 4 of the spec (the worked example), decoded and re-encoded, every field checked
against values computed by hand from the spec's tables, never against our own decoder."""

from __future__ import annotations

import zlib
from datetime import date

import pytest
from samples import EXAMPLE_SESSION, FRAME_GAP_S, SPEC_DATA, spec_frames

from dbc import key_reader_database
from protocols.can_frame import CanFrame
from protocols.cbs_types import CbsType
from protocols.crc import crc16_ccitt_false
from protocols.encoder import data_frame_payloads, encode_session, frame_session, session_crc32
from protocols.key_session import CheckControlStatus, ServiceHistory
from protocols.serial_framing import (
    FrameType,
    SerialFrame,
    SerialFrameDecoder,
    decode_can_payload,
    encode_can_frame,
    encode_frame,
)
from protocols.session import SessionAccepted, SessionAssembler

# Raw wire values of every field (scaling off), computed by hand from the spec's tables.
EXPECTED_RAW = [
    (0x6F0, {"ProtocolVersion": 1, "SessionSeq": 7, "FrameCount": 10, "KeyId": 0x12345678,
             "KeySlot": 2}),
    (0x6F1, {"VinPart": 0} | {f"VinChar{i}": ord(c) for i, c in enumerate("WBA8E51")}),
    (0x6F1, {"VinPart": 1} | {f"VinChar{i}": ord(c) for i, c in enumerate("07FK123")}),
    (0x6F1, {"VinPart": 2} | {f"VinChar{i}": c for i, c in enumerate(b"456\0\0\0\0")}),
    (0x6F2, {"MileageKm": 48_371, "DataYear": 26, "DataMonth": 11, "DataDay": 25,
             "FuelLevelPct": 63, "BuildYear": 22, "BuildMonth": 3}),
    # 22.0 °C = (22 + 40) / 0.5 = 124; -7.0 -> 66; 37.0 -> 154; 14.2 km -> 142
    (0x6F3, {"AmbientAvg": 124, "AmbientMin": 66, "AmbientMax": 154, "HotSharePct": 8,
             "ColdSharePct": 11, "ShortTripPct": 35, "SevereDutyPct": 0, "AvgTripKm": 142}),
    (0x6F4, {"ItemIndex": 0, "CbsType": 0x01, "AvailabilityPct": 12, "RemainingKm": 1_800,
             "DueYear": 27, "DueMonth": 2, "ServiceCount": 4}),
    (0x6F4, {"ItemIndex": 1, "CbsType": 0x03, "AvailabilityPct": 255, "RemainingKm": -524_288,
             "DueYear": 27, "DueMonth": 3, "ServiceCount": 1}),
    (0x6F5, {"ItemIndex": 0, "LastServiceKm": 30_000, "LastServiceYear": 25,
             "LastServiceMonth": 11, "IntervalKm": 150, "IntervalMonths": 24}),
    (0x6F6, {"CcIndex": 0, "CcId": 0x0102, "CcStatus": 1, "CcMileageKm": 48_010}),
    (0x6F7, {"DtcIndex": 0, "DtcCode": 0x03011F, "DtcStatus": 0x2F, "EcuAddress": 0x12,
             "Occurrences": 3}),
    (0x6FF, {"SessionSeq": 7, "FrameCount": 10, "Crc32": 0x2CB02A9F}),
]


@pytest.mark.parametrize("index", range(len(EXPECTED_RAW)),
                         ids=[f"{fid:03X}-{i}" for i, (fid, _) in enumerate(EXPECTED_RAW)])
def test_dbc_decodes_every_frame_to_the_hand_computed_raw_values(index: int) -> None:
    frame = spec_frames()[index]
    frame_id, raw = EXPECTED_RAW[index]
    assert frame.arbitration_id == frame_id
    db = key_reader_database()
    assert db.decode_message(frame_id, frame.data, decode_choices=False, scaling=False) == raw


def test_dbc_scales_the_physical_values() -> None:
    db = key_reader_database()
    frames = spec_frames()
    vehicle = db.decode_message(0x6F2, frames[4].data)
    assert (vehicle["DataYear"], vehicle["BuildYear"]) == (2026, 2022)
    usage = db.decode_message(0x6F3, frames[5].data)
    assert (usage["AmbientAvg"], usage["AmbientMin"], usage["AmbientMax"]) == (22.0, -7.0, 37.0)
    assert usage["AvgTripKm"] == pytest.approx(14.2)
    status = db.decode_message(0x6F4, frames[6].data)
    assert status["CbsType"] == "engine_oil" and status["DueYear"] == 2027
    not_available = db.decode_message(0x6F4, frames[7].data)
    assert not_available["CbsType"] == "brake_fluid"
    assert not_available["AvailabilityPct"] == "NotAvailable"
    assert not_available["RemainingKm"] == "NotAvailable"
    history = db.decode_message(0x6F5, frames[8].data)
    assert (history["LastServiceYear"], history["IntervalKm"]) == (2025, 15_000)
    assert db.decode_message(0x6F6, frames[9].data)["CcStatus"] == "Active"


def accepted(frames: list[CanFrame]) -> SessionAccepted:
    assembler = SessionAssembler()
    events = [event for frame in frames for event in assembler.feed(frame)]
    assert len(events) == 1, events
    assert isinstance(events[0], SessionAccepted), events[0]
    return events[0]


def test_session_assembler_accepts_the_example() -> None:
    event = accepted(spec_frames())
    assert event.session == EXAMPLE_SESSION
    assert event.frames_received == 10
    assert event.completed_at == pytest.approx(11 * FRAME_GAP_S)


def test_every_field_of_the_accepted_session() -> None:
    s = accepted(spec_frames()).session
    assert (s.session_seq, s.key_id, s.key_slot) == (7, 0x12345678, 2)
    assert s.vin == "WBA8E5107FK123456"
    v = s.vehicle
    assert v.mileage_km == 48_371
    assert v.data_date == date(2026, 11, 25)
    assert v.fuel_level_pct == 63
    assert (v.build_year, v.build_month) == (2022, 3)
    u = s.usage
    assert u is not None
    assert (u.ambient_avg_c, u.ambient_min_c, u.ambient_max_c) == (22.0, -7.0, 37.0)
    assert (u.hot_share_pct, u.cold_share_pct, u.short_trip_pct, u.severe_duty_pct) == (8, 11, 35, 0)
    assert u.avg_trip_km == 14.2

    oil, fluid = s.services
    assert (oil.index, oil.type, oil.code) == (0, CbsType.ENGINE_OIL, 0x01)
    assert (oil.availability_pct, oil.remaining_km) == (12, 1_800)
    assert (oil.due_year, oil.due_month, oil.service_count) == (2027, 2, 4)
    assert oil.history == ServiceHistory(last_service_km=30_000, last_service_year=2025,
                                         last_service_month=11, interval_km=15_000,
                                         interval_months=24)
    assert (fluid.index, fluid.type, fluid.code) == (1, CbsType.BRAKE_FLUID, 0x03)
    assert fluid.availability_pct is None and fluid.remaining_km is None
    assert (fluid.due_year, fluid.due_month, fluid.service_count) == (2027, 3, 1)
    assert fluid.history is None

    (cc,) = s.check_controls
    assert (cc.index, cc.cc_id, cc.status, cc.mileage_km) == (0, 0x0102, CheckControlStatus.ACTIVE,
                                                              48_010)
    (dtc,) = s.dtcs
    assert dtc.code == 0x03011F and dtc.code_hex == "03011F"
    assert dtc.sae == "P0301"
    assert dtc.failure_type == 0x1F
    assert dtc.status == 0x2F and dtc.confirmed  # 0x2F has bit 3 (confirmedDTC) set
    assert (dtc.ecu_address, dtc.occurrences) == (0x12, 3)


def test_end_crc_is_zlib_crc32_over_the_data_frames_in_arrival_order() -> None:
    payloads = [data for _, data in SPEC_DATA]
    assert session_crc32(payloads) == 0x2CB02A9F
    assert zlib.crc32(b"".join(payloads)) == 0x2CB02A9F


def test_encoder_produces_the_example_bytes_in_the_spec_order() -> None:
    # The canonical order puts each item's history right after its status; the spec lists the
    # history after both status frames. Same frames, different order:
    canonical = data_frame_payloads(EXAMPLE_SESSION)
    spec_order = [canonical[i] for i in (0, 1, 2, 3, 4, 5, 7, 6, 8, 9)]
    assert spec_order == SPEC_DATA
    framed = frame_session(EXAMPLE_SESSION, spec_order, start_time=0.0, frame_gap_s=FRAME_GAP_S)
    assert framed == spec_frames()


def test_encode_session_is_the_example_in_canonical_order() -> None:
    frames = encode_session(EXAMPLE_SESSION)
    expected = spec_frames()
    assert frames[0].data == expected[0].data  # same START
    assert [(f.arbitration_id, f.data) for f in frames[1:-1]] == data_frame_payloads(EXAMPLE_SESSION)
    assert sorted(f.data for f in frames[1:-1]) == sorted(d for _, d in SPEC_DATA)
    # the END's CRC follows the order actually sent
    assert frames[-1].data[:2] == bytes((7, 10))
    crc = int.from_bytes(frames[-1].data[2:6], "little")
    assert crc == zlib.crc32(b"".join(f.data for f in frames[1:-1])) != 0x2CB02A9F
    assert accepted(frames).session == EXAMPLE_SESSION


START_SERIAL = bytes.fromhex("02 0C 04 06 F0 08 01 07 0A 78 56 34 12 02 01 3B 03")
KEY_PRESENT_SERIAL = bytes.fromhex("02 01 02 0E 7C 03")


def test_serial_bytes_of_the_example() -> None:
    start = spec_frames()[0]
    assert encode_can_frame(start) == START_SERIAL
    assert encode_frame(FrameType.KEY_PRESENT) == KEY_PRESENT_SERIAL
    # CRC over LEN TYPE PAYLOAD, high byte first
    assert crc16_ccitt_false(START_SERIAL[1:-3]) == 0x013B
    assert crc16_ccitt_false(KEY_PRESENT_SERIAL[1:-3]) == 0x0E7C


def test_crc16_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_serial_decoder_reads_the_example_bytes() -> None:
    decoder = SerialFrameDecoder()
    frames = decoder.feed(KEY_PRESENT_SERIAL + START_SERIAL, now=1.0)
    assert frames == [SerialFrame(FrameType.KEY_PRESENT, b"", 1.0),
                      SerialFrame(FrameType.CAN_FRAME, START_SERIAL[3:-3], 1.0)]
    assert decode_can_payload(frames[1].payload, 1.0) == CanFrame(0x6F0, spec_frames()[0].data, 1.0)
    assert (decoder.frames, decoder.bad_frames, decoder.ignored_bytes, decoder.buffered) == (2, 0, 0, 0)


def test_whole_example_over_serial_byte_by_byte() -> None:
    stream = (KEY_PRESENT_SERIAL + b"".join(encode_can_frame(f) for f in spec_frames())
              + encode_frame(FrameType.KEY_REMOVED))
    decoder = SerialFrameDecoder()
    assembler = SessionAssembler()
    events = []
    byte_time_s = 10 / 115_200  # 8N1
    for i in range(len(stream)):
        for frame in decoder.feed(stream[i:i + 1], now=i * byte_time_s):
            if frame.frame_type == FrameType.CAN_FRAME:
                can = decode_can_payload(frame.payload, frame.timestamp)
                assert can is not None
                events += assembler.feed(can)
            elif frame.frame_type == FrameType.KEY_REMOVED:
                events += assembler.key_removed(frame.timestamp)
    assert [type(e) for e in events] == [SessionAccepted]
    assert events[0].session == EXAMPLE_SESSION
    assert decoder.frames == 14 and decoder.ignored_bytes == 0
