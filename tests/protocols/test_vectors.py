"""Round-trip tables in the style of cantools' ``test_motohawk_encode_decode``.

Each row pairs values with the 8 data bytes computed by hand from the spec's bit tables
(checked against the independent packer in ``spec_layout``): encode == bytes, decode == values
and encode(decode(bytes)) == bytes, first for the raw signals of every message (the DBC), then
for the domain values (DBC + meaning: sentinels, scales, unknown codes, DTC letters).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from spec_layout import pack_spec, unpack_spec

from dbc import key_reader_database
from protocols.can_frame import CanFrame
from protocols.cbs_types import CODE_TO_TYPE, CbsType
from protocols.encoder import data_frame_payloads, encode_raw, frame_session
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
from protocols.session import SessionAccepted, SessionAssembler

START, VIN, VEHICLE, USAGE, STATUS, HISTORY, CHECK_CONTROL, DTC, END = (
    0x6F0, 0x6F1, 0x6F2, 0x6F3, 0x6F4, 0x6F5, 0x6F6, 0x6F7, 0x6FF)


def vin_raw(part: int, chars: bytes) -> dict[str, int]:
    return {"VinPart": part} | {f"VinChar{i}": c for i, c in enumerate(chars)}


# (name, frame id, raw signal values, hand-computed bytes)
RAW_VECTORS = [
    ("start-example", START, {"ProtocolVersion": 1, "SessionSeq": 7, "FrameCount": 10,
                              "KeyId": 0x12345678, "KeySlot": 2}, "01 07 0A 78 56 34 12 02"),
    ("start-zero", START, {"ProtocolVersion": 0, "SessionSeq": 0, "FrameCount": 0, "KeyId": 0,
                           "KeySlot": 0}, "00 00 00 00 00 00 00 00"),
    ("start-max", START, {"ProtocolVersion": 255, "SessionSeq": 255, "FrameCount": 255,
                          "KeyId": 0xFFFFFFFF, "KeySlot": 15}, "FF FF FF FF FF FF FF 0F"),
    ("start-key-top-bit", START, {"ProtocolVersion": 1, "SessionSeq": 255, "FrameCount": 1,
                                  "KeyId": 0x80000001, "KeySlot": 9}, "01 FF 01 01 00 00 80 09"),
    ("vin-0", VIN, vin_raw(0, b"WBA8E51"), "00 57 42 41 38 45 35 31"),
    ("vin-1", VIN, vin_raw(1, b"07FK123"), "01 30 37 46 4B 31 32 33"),
    ("vin-2", VIN, vin_raw(2, b"456\0\0\0\0"), "02 34 35 36 00 00 00 00"),
    ("vin-max", VIN, vin_raw(255, b"\xff" * 7), "FF FF FF FF FF FF FF FF"),
    ("vehicle-example", VEHICLE, {"MileageKm": 48_371, "DataYear": 26, "DataMonth": 11,
                                  "DataDay": 25, "FuelLevelPct": 63, "BuildYear": 22,
                                  "BuildMonth": 3}, "F3 BC 00 9A CD 3F 96 01"),
    ("vehicle-min", VEHICLE, {"MileageKm": 0, "DataYear": 0, "DataMonth": 1, "DataDay": 1,
                              "FuelLevelPct": 0, "BuildYear": 0, "BuildMonth": 0},
     "00 00 00 80 08 00 00 00"),
    ("vehicle-leap-day", VEHICLE, {"MileageKm": 0xFFFFFE, "DataYear": 24, "DataMonth": 2,
                                   "DataDay": 29, "FuelLevelPct": 100, "BuildYear": 127,
                                   "BuildMonth": 12}, "FE FF FF 18 E9 64 7F 06"),
    ("vehicle-max", VEHICLE, {"MileageKm": 0xFFFFFF, "DataYear": 127, "DataMonth": 15,
                              "DataDay": 31, "FuelLevelPct": 255, "BuildYear": 127,
                              "BuildMonth": 15}, "FF FF FF FF FF FF FF 07"),
    ("usage-example", USAGE, {"AmbientAvg": 124, "AmbientMin": 66, "AmbientMax": 154,
                              "HotSharePct": 8, "ColdSharePct": 11, "ShortTripPct": 35,
                              "SevereDutyPct": 0, "AvgTripKm": 142}, "7C 42 9A 88 C5 08 E0 08"),
    ("usage-not-available-100pct", USAGE, {"AmbientAvg": 255, "AmbientMin": 255,
                                           "AmbientMax": 255, "HotSharePct": 100,
                                           "ColdSharePct": 100, "ShortTripPct": 100,
                                           "SevereDutyPct": 100, "AvgTripKm": 4095},
     "FF FF FF 64 32 99 FC FF"),
    ("usage-min", USAGE, {"AmbientAvg": 0, "AmbientMin": 0, "AmbientMax": 254, "HotSharePct": 0,
                          "ColdSharePct": 0, "ShortTripPct": 0, "SevereDutyPct": 0,
                          "AvgTripKm": 0}, "00 00 FE 00 00 00 00 00"),
    ("usage-max", USAGE, {"AmbientAvg": 255, "AmbientMin": 255, "AmbientMax": 255,
                          "HotSharePct": 127, "ColdSharePct": 127, "ShortTripPct": 127,
                          "SevereDutyPct": 127, "AvgTripKm": 4095}, "FF FF FF FF FF FF FF FF"),
    ("status-example-0", STATUS, {"ItemIndex": 0, "CbsType": 0x01, "AvailabilityPct": 12,
                                  "RemainingKm": 1_800, "DueYear": 27, "DueMonth": 2,
                                  "ServiceCount": 4}, "00 01 0C 08 07 B0 11 02"),
    ("status-not-available", STATUS, {"ItemIndex": 1, "CbsType": 0x03, "AvailabilityPct": 255,
                                      "RemainingKm": -524_288, "DueYear": 27, "DueMonth": 3,
                                      "ServiceCount": 1}, "01 03 FF 00 00 B8 99 00"),
    ("status-overdue-1km-unknown-type", STATUS, {"ItemIndex": 2, "CbsType": 0xFE,
                                                 "AvailabilityPct": 0, "RemainingKm": -1,
                                                 "DueYear": 26, "DueMonth": 0, "ServiceCount": 0},
     "02 FE 00 FF FF AF 01 00"),
    ("status-most-overdue", STATUS, {"ItemIndex": 3, "CbsType": 0x37, "AvailabilityPct": 250,
                                     "RemainingKm": -524_287, "DueYear": 0, "DueMonth": 1,
                                     "ServiceCount": 31}, "03 37 FA 01 00 08 88 0F"),
    ("status-most-remaining", STATUS, {"ItemIndex": 15, "CbsType": 0xFF, "AvailabilityPct": 100,
                                       "RemainingKm": 524_287, "DueYear": 127, "DueMonth": 12,
                                       "ServiceCount": 31}, "0F FF 64 FF FF F7 E7 0F"),
    ("status-max", STATUS, {"ItemIndex": 15, "CbsType": 0xFF, "AvailabilityPct": 255,
                            "RemainingKm": -1, "DueYear": 127, "DueMonth": 15,
                            "ServiceCount": 31}, "0F FF FF FF FF FF FF 0F"),
    ("history-example", HISTORY, {"ItemIndex": 0, "LastServiceKm": 30_000, "LastServiceYear": 25,
                                  "LastServiceMonth": 11, "IntervalKm": 150,
                                  "IntervalMonths": 24}, "00 30 75 00 99 B5 04 03"),
    ("history-never-serviced", HISTORY, {"ItemIndex": 1, "LastServiceKm": 0xFFFFFF,
                                         "LastServiceYear": 0, "LastServiceMonth": 0,
                                         "IntervalKm": 0, "IntervalMonths": 0},
     "01 FF FF FF 00 00 00 00"),
    ("history-largest-valid", HISTORY, {"ItemIndex": 15, "LastServiceKm": 0xFFFFFE,
                                        "LastServiceYear": 127, "LastServiceMonth": 12,
                                        "IntervalKm": 1023, "IntervalMonths": 127},
     "0F FE FF FF 7F FE FF 0F"),
    ("history-max", HISTORY, {"ItemIndex": 15, "LastServiceKm": 0xFFFFFF, "LastServiceYear": 127,
                              "LastServiceMonth": 15, "IntervalKm": 1023, "IntervalMonths": 127},
     "0F FF FF FF FF FF FF 0F"),
    ("check-control-example", CHECK_CONTROL, {"CcIndex": 0, "CcId": 0x0102, "CcStatus": 1,
                                              "CcMileageKm": 48_010}, "00 02 01 01 8A BB 00 00"),
    ("check-control-stored-max", CHECK_CONTROL, {"CcIndex": 255, "CcId": 0xFFFF, "CcStatus": 2,
                                                 "CcMileageKm": 0xFFFFFF},
     "FF FF FF 02 FF FF FF 00"),
    ("check-control-max", CHECK_CONTROL, {"CcIndex": 255, "CcId": 0xFFFF, "CcStatus": 255,
                                          "CcMileageKm": 0xFFFFFF}, "FF FF FF FF FF FF FF 00"),
    # DtcCode is big-endian: bytes 1-3 are the code as written
    ("dtc-example-P0301", DTC, {"DtcIndex": 0, "DtcCode": 0x03011F, "DtcStatus": 0x2F,
                                "EcuAddress": 0x12, "Occurrences": 3}, "00 03 01 1F 2F 12 03 00"),
    ("dtc-C1A23", DTC, {"DtcIndex": 1, "DtcCode": 0x5A2311, "DtcStatus": 0x09, "EcuAddress": 0x40,
                        "Occurrences": 0x0102}, "01 5A 23 11 09 40 02 01"),
    ("dtc-B2ABC", DTC, {"DtcIndex": 2, "DtcCode": 0xAABC4B, "DtcStatus": 0x00, "EcuAddress": 0x60,
                        "Occurrences": 0}, "02 AA BC 4B 00 60 00 00"),
    ("dtc-U0100", DTC, {"DtcIndex": 3, "DtcCode": 0xC10087, "DtcStatus": 0x08, "EcuAddress": 0x10,
                        "Occurrences": 1}, "03 C1 00 87 08 10 01 00"),
    ("dtc-zero", DTC, {"DtcIndex": 0, "DtcCode": 0, "DtcStatus": 0, "EcuAddress": 0,
                       "Occurrences": 0}, "00 00 00 00 00 00 00 00"),
    ("dtc-max", DTC, {"DtcIndex": 255, "DtcCode": 0xFFFFFF, "DtcStatus": 0xFF, "EcuAddress": 0xFF,
                      "Occurrences": 0xFFFF}, "FF FF FF FF FF FF FF FF"),
    ("end-example", END, {"SessionSeq": 7, "FrameCount": 10, "Crc32": 0x2CB02A9F},
     "07 0A 9F 2A B0 2C 00 00"),
    ("end-max", END, {"SessionSeq": 255, "FrameCount": 255, "Crc32": 0xFFFFFFFF},
     "FF FF FF FF FF FF 00 00"),
    ("end-crc-byte-order", END, {"SessionSeq": 0, "FrameCount": 0, "Crc32": 0x01020304},
     "00 00 04 03 02 01 00 00"),
]


@pytest.mark.parametrize(("frame_id", "raw", "hex_bytes"), [row[1:] for row in RAW_VECTORS],
                         ids=[row[0] for row in RAW_VECTORS])
def test_raw_signals_encode_decode(frame_id: int, raw: dict[str, int], hex_bytes: str) -> None:
    expected = bytes.fromhex(hex_bytes)
    db = key_reader_database()
    assert pack_spec(frame_id, raw) == expected  # the hand computation, by the spec's tables
    assert encode_raw(frame_id, raw) == expected
    decoded = db.decode_message(frame_id, expected, decode_choices=False, scaling=False)
    assert decoded == raw
    assert unpack_spec(frame_id, expected) == raw
    assert encode_raw(frame_id, decoded) == expected


# Scaled (physical) values of the DBC, as cantools users see them.
PHYSICAL_VECTORS = [
    ("vehicle-example", VEHICLE, {"MileageKm": 48_371, "DataYear": 2026, "DataMonth": 11,
                                  "DataDay": 25, "FuelLevelPct": 63, "BuildYear": 2022,
                                  "BuildMonth": 3}, "F3 BC 00 9A CD 3F 96 01"),
    ("usage-example", USAGE, {"AmbientAvg": 22.0, "AmbientMin": -7.0, "AmbientMax": 37.0,
                              "HotSharePct": 8, "ColdSharePct": 11, "ShortTripPct": 35,
                              "SevereDutyPct": 0, "AvgTripKm": 14.2}, "7C 42 9A 88 C5 08 E0 08"),
    ("usage-extremes", USAGE, {"AmbientAvg": -40.0, "AmbientMin": -40.0, "AmbientMax": 87.0,
                               "HotSharePct": 0, "ColdSharePct": 0, "ShortTripPct": 0,
                               "SevereDutyPct": 0, "AvgTripKm": 0.0}, "00 00 FE 00 00 00 00 00"),
    ("status-example", STATUS, {"ItemIndex": 0, "CbsType": 1, "AvailabilityPct": 12,
                                "RemainingKm": 1_800, "DueYear": 2027, "DueMonth": 2,
                                "ServiceCount": 4}, "00 01 0C 08 07 B0 11 02"),
    ("history-largest-valid", HISTORY, {"ItemIndex": 15, "LastServiceKm": 0xFFFFFE,
                                        "LastServiceYear": 2127, "LastServiceMonth": 12,
                                        "IntervalKm": 102_300, "IntervalMonths": 127},
     "0F FE FF FF 7F FE FF 0F"),
]


@pytest.mark.parametrize(("frame_id", "physical", "hex_bytes"),
                         [row[1:] for row in PHYSICAL_VECTORS], ids=[r[0] for r in PHYSICAL_VECTORS])
def test_physical_values_encode_decode(frame_id: int, physical: dict[str, float],
                                       hex_bytes: str) -> None:
    expected = bytes.fromhex(hex_bytes)
    db = key_reader_database()
    assert db.encode_message(frame_id, physical) == expected
    decoded = db.decode_message(frame_id, expected, decode_choices=False)
    assert decoded == pytest.approx(physical)
    assert db.encode_message(frame_id, decoded) == expected


def test_reserved_bits_are_ignored_on_decode() -> None:
    db = key_reader_database()
    # START bits 60-63, STATUS bits 4-7 and 60-63, CC byte 7, END bytes 6-7 are reserved
    for frame_id, clean, dirty in [
        (START, "01 07 0A 78 56 34 12 02", "01 07 0A 78 56 34 12 F2"),
        (STATUS, "00 01 0C 08 07 B0 11 02", "F0 01 0C 08 07 B0 11 F2"),
        (CHECK_CONTROL, "00 02 01 01 8A BB 00 00", "00 02 01 01 8A BB 00 FF"),
        (END, "07 0A 9F 2A B0 2C 00 00", "07 0A 9F 2A B0 2C AA 55"),
    ]:
        decoded = db.decode_message(frame_id, bytes.fromhex(dirty), decode_choices=False,
                                    scaling=False)
        assert encode_raw(frame_id, decoded) == bytes.fromhex(clean)


# -- domain values -------------------------------------------------------------------------

BASE = KeySession(
    session_seq=1, key_id=0xCAFE, key_slot=0, vin="WBA8E5107FK123456",
    vehicle=VehicleData(mileage_km=48_371, data_date=date(2026, 11, 25), fuel_level_pct=63,
                        build_year=2022, build_month=3),
    usage=None, services=())


def accept(frames: list[CanFrame]) -> KeySession:
    assembler = SessionAssembler()
    events = [e for f in frames for e in assembler.feed(f)]
    assert len(events) == 1 and isinstance(events[0], SessionAccepted), events
    return events[0].session


def check_domain_vector(session: KeySession, frame_ids: tuple[int, ...],
                        hand: list[tuple[int, str]]) -> None:
    """encode == bytes, decode(bytes) == session, encode(decode(bytes)) == bytes, where
    ``hand`` lists the frames of ``frame_ids`` the session must produce, in canonical order."""
    hand_frames = [(fid, bytes.fromhex(h)) for fid, h in hand]
    encoded = [(fid, d) for fid, d in data_frame_payloads(session) if fid in frame_ids]
    assert encoded == hand_frames
    others = [(fid, d) for fid, d in data_frame_payloads(session) if fid not in frame_ids]
    decoded = accept(frame_session(session, others + hand_frames))
    assert decoded == session
    assert [(fid, d) for fid, d in data_frame_payloads(decoded) if fid in frame_ids] == hand_frames


VEHICLE_VECTORS = [
    ("example", VehicleData(48_371, date(2026, 11, 25), 63, 2022, 3), "F3 BC 00 9A CD 3F 96 01"),
    ("min-build-month-not-available", VehicleData(0, date(2000, 1, 1), 0, 2000, None),
     "00 00 00 80 08 00 00 00"),
    ("leap-day", VehicleData(0xFFFFFE, date(2024, 2, 29), 100, 2127, 12), "FE FF FF 18 E9 64 7F 06"),
    ("max-fuel-not-available", VehicleData(0xFFFFFF, date(2127, 12, 31), None, 2127, 12),
     "FF FF FF 7F FE FF 7F 06"),
]


@pytest.mark.parametrize(("vehicle", "hex_bytes"), [r[1:] for r in VEHICLE_VECTORS],
                         ids=[r[0] for r in VEHICLE_VECTORS])
def test_vehicle_vectors(vehicle: VehicleData, hex_bytes: str) -> None:
    check_domain_vector(replace(BASE, vehicle=vehicle), (VEHICLE,), [(VEHICLE, hex_bytes)])


USAGE_VECTORS = [
    ("example", UsageData(22.0, -7.0, 37.0, 8, 11, 35, 0, 14.2), "7C 42 9A 88 C5 08 E0 08"),
    ("ambient-not-available-100pct-max-trip", UsageData(None, None, None, 100, 100, 100, 100, 409.5),
     "FF FF FF 64 32 99 FC FF"),
    ("ambient-extremes-zero", UsageData(-40.0, -40.0, 87.0, 0, 0, 0, 0, 0.0),
     "00 00 FE 00 00 00 00 00"),
]


@pytest.mark.parametrize(("usage", "hex_bytes"), [r[1:] for r in USAGE_VECTORS],
                         ids=[r[0] for r in USAGE_VECTORS])
def test_usage_vectors(usage: UsageData, hex_bytes: str) -> None:
    check_domain_vector(replace(BASE, usage=usage), (USAGE,), [(USAGE, hex_bytes)])


HISTORY_EXAMPLE = ServiceHistory(30_000, 2025, 11, 15_000, 24)
# (name, item, expected type, [status bytes, history bytes if any])
SERVICE_VECTORS = [
    ("example-with-history", ServiceItem(0, 0x01, 12, 1_800, 2027, 2, 4, HISTORY_EXAMPLE),
     CbsType.ENGINE_OIL, ["00 01 0C 08 07 B0 11 02", "00 30 75 00 99 B5 04 03"]),
    ("not-available", ServiceItem(1, 0x03, None, None, 2027, 3, 1), CbsType.BRAKE_FLUID,
     ["01 03 FF 00 00 B8 99 00"]),
    ("overdue-1km-unknown-code-no-due-date", ServiceItem(2, 0xFE, 0, -1, 2026, None, 0),
     CbsType.UNKNOWN, ["02 FE 00 FF FF AF 01 00"]),
    ("most-overdue-250pct", ServiceItem(3, 0x37, 250, -524_287, 2000, 1, 31),
     CbsType.SHOCK_ABSORBERS, ["03 37 FA 01 00 08 88 0F"]),
    ("most-remaining-unknown-0xFF",
     ServiceItem(15, 0xFF, 100, 524_287, 2127, 12, 31,
                 ServiceHistory(0xFFFFFE, 2127, 12, 102_300, 127)),
     CbsType.UNKNOWN, ["0F FF 64 FF FF F7 E7 0F", "0F FE FF FF 7F FE FF 0F"]),
    ("never-serviced", ServiceItem(1, 0x03, None, None, 2027, 3, 1,
                                   ServiceHistory(None, 2000, None, None, None)),
     CbsType.BRAKE_FLUID, ["01 03 FF 00 00 B8 99 00", "01 FF FF FF 00 00 00 00"]),
]


@pytest.mark.parametrize(("item", "cbs_type", "hex_frames"), [r[1:] for r in SERVICE_VECTORS],
                         ids=[r[0] for r in SERVICE_VECTORS])
def test_service_item_vectors(item: ServiceItem, cbs_type: CbsType, hex_frames: list[str]) -> None:
    assert item.type == cbs_type
    hand = [(STATUS, hex_frames[0])] + [(HISTORY, h) for h in hex_frames[1:]]
    check_domain_vector(replace(BASE, services=(item,)), (STATUS, HISTORY), hand)


def test_unknown_code_keeps_its_code() -> None:
    item = accept(frame_session(BASE, data_frame_payloads(BASE) + [
        (STATUS, bytes.fromhex("02 FE 00 FF FF AF 01 00"))])).services[0]
    assert (item.type, item.code) == (CbsType.UNKNOWN, 0xFE)
    assert item.type == "unknown"
    assert key_reader_database().decode_message(
        STATUS, bytes.fromhex("02 FE 00 FF FF AF 01 00"))["CbsType"] == 0xFE


CHECK_CONTROL_VECTORS = [
    ("example", CheckControlMessage(0, 0x0102, CheckControlStatus.ACTIVE, 48_010),
     "00 02 01 01 8A BB 00 00"),
    ("stored-max", CheckControlMessage(255, 0xFFFF, CheckControlStatus.STORED, 0xFFFFFF),
     "FF FF FF 02 FF FF FF 00"),
]


@pytest.mark.parametrize(("cc", "hex_bytes"), [r[1:] for r in CHECK_CONTROL_VECTORS],
                         ids=[r[0] for r in CHECK_CONTROL_VECTORS])
def test_check_control_vectors(cc: CheckControlMessage, hex_bytes: str) -> None:
    check_domain_vector(replace(BASE, check_controls=(cc,)), (CHECK_CONTROL,),
                        [(CHECK_CONTROL, hex_bytes)])


# (dtc, bytes, SAE J2012 reading, failure type, confirmed)
DTC_VECTORS = [
    (StoredDtc(0, 0x03011F, 0x2F, 0x12, 3), "00 03 01 1F 2F 12 03 00", "P0301", 0x1F, True),
    (StoredDtc(1, 0x5A2311, 0x09, 0x40, 0x0102), "01 5A 23 11 09 40 02 01", "C1A23", 0x11, True),
    (StoredDtc(2, 0xAABC4B, 0x00, 0x60, 0), "02 AA BC 4B 00 60 00 00", "B2ABC", 0x4B, False),
    (StoredDtc(3, 0xC10087, 0x08, 0x10, 1), "03 C1 00 87 08 10 01 00", "U0100", 0x87, True),
    (StoredDtc(0, 0x000000, 0x00, 0x00, 0), "00 00 00 00 00 00 00 00", "P0000", 0x00, False),
    (StoredDtc(255, 0xFFFFFF, 0xF7, 0xFF, 0xFFFF), "FF FF FF FF F7 FF FF FF", "U3FFF", 0xFF, False),
]


@pytest.mark.parametrize(("dtc", "hex_bytes", "sae", "failure_type", "confirmed"), DTC_VECTORS,
                         ids=[r[2] for r in DTC_VECTORS])
def test_dtc_vectors(dtc: StoredDtc, hex_bytes: str, sae: str, failure_type: int,
                     confirmed: bool) -> None:
    assert (dtc.sae, dtc.failure_type, dtc.confirmed) == (sae, failure_type, confirmed)
    assert dtc.code_hex == hex_bytes.replace(" ", "")[2:8]
    check_domain_vector(replace(BASE, dtcs=(dtc,)), (DTC,), [(DTC, hex_bytes)])


def test_session_header_vectors() -> None:
    session = replace(BASE, session_seq=255, key_id=0xFFFFFFFF, key_slot=9)
    frames = frame_session(session, data_frame_payloads(session))
    assert frames[0].data == bytes.fromhex("01 FF 04 FF FF FF FF 09")
    assert frames[-1].data[:2] == bytes.fromhex("FF 04")
    assert accept(frames) == session


def test_cbs_type_table_matches_the_spec_and_the_dbc() -> None:
    spec = {0x01: "engine_oil", 0x02: "brake_pads_front", 0x03: "brake_fluid",
            0x04: "microfilter", 0x06: "brake_pads_rear", 0x07: "particulate_filter",
            0x08: "battery", 0x09: "transfer_case_oil", 0x0A: "spark_plugs_adaptive",
            0x0D: "nox_additive", 0x10: "spark_plugs", 0x11: "vehicle_check", 0x12: "coolant",
            0x14: "pre_delivery_inspection", 0x15: "running_in_check",
            0x16: "particulate_filter_additive", 0x20: "statutory_inspection",
            0x21: "emission_inspection", 0x23: "transmission_oil", 0x31: "tyre_age",
            0x32: "clutch", 0x37: "shock_absorbers"}
    assert {code: str(t) for code, t in CODE_TO_TYPE.items()} == spec
    signal = key_reader_database().get_message_by_frame_id(STATUS).get_signal_by_name("CbsType")
    assert {code: str(name) for code, name in signal.choices.items()} == spec
    for code in range(256):
        assert CbsType.from_code(code) == spec.get(code, "unknown")
