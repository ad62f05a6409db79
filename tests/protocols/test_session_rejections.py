"""One test per reason code of the spec's session rules, plus the silent cases (identical
repeats, stray frames, other traffic). Each rejection is checked for its reason, a detail that
names the frame and the field, the key id and the number of data frames received."""

from __future__ import annotations

from dataclasses import replace

import pytest
from samples import EXAMPLE_SESSION, SPEC_DATA, feed_all, spec_frames

from protocols.can_frame import CanFrame
from protocols.encoder import (
    encode_raw,
    end_payload,
    frame_session,
    session_crc32,
    start_payload,
)
from protocols.session import RejectReason, SessionAccepted, SessionAssembler, SessionRejected

START, VIN, VEHICLE, USAGE, STATUS, HISTORY, CHECK_CONTROL, DTC, END = (
    0x6F0, 0x6F1, 0x6F2, 0x6F3, 0x6F4, 0x6F5, 0x6F6, 0x6F7, 0x6FF)
KEY_ID = 0x12345678
GAP_S = 0.01


def timed(frames: list[CanFrame], start_time: float = 100.0, gap_s: float = GAP_S) -> list[CanFrame]:
    return [CanFrame(f.arbitration_id, f.data, start_time + i * gap_s) for i, f in enumerate(frames)]


def session_of(data: list[tuple[int, bytes]], **start_overrides: int) -> list[CanFrame]:
    """START + ``data`` + a matching END (count and CRC computed from ``data``)."""
    return timed(frame_session(EXAMPLE_SESSION, data, **start_overrides))


def replaced(index: int, frame_id: int, raw: dict[str, int]) -> list[tuple[int, bytes]]:
    """The example's data frames with data frame ``index`` replaced by ``raw`` (encoded)."""
    data = list(SPEC_DATA)
    data[index] = (frame_id, encode_raw(frame_id, raw))
    return data


def rejection(events: list, reason: RejectReason) -> SessionRejected:
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, SessionRejected), event
    assert event.reason == reason, event
    assert event.key_id == KEY_ID
    return event


# -- checked at once -----------------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 2, 255])
def test_unsupported_version(version: int) -> None:
    frames = session_of(list(SPEC_DATA), version=version)
    assembler, events = feed_all(frames)
    event = rejection(events, RejectReason.UNSUPPORTED_VERSION)
    assert "KEY_SESSION_START" in event.detail and "ProtocolVersion" in event.detail
    assert str(version) in event.detail
    assert event.frames_received == 0
    assert event.at == frames[0].timestamp
    # rejected at once: the rest of the session is stray
    assert assembler.counters.stray_frames == len(frames) - 1
    assert not assembler.in_session


@pytest.mark.parametrize(("position", "name", "slot_name"), [
    (1, "KEY_VIN", "index 1"),
    (6, "KEY_CBS_STATUS", "index 1"),
    (8, "KEY_CHECK_CONTROL", "index 0"),
])
def test_duplicate_frame(position: int, name: str, slot_name: str) -> None:
    frame_id, original = SPEC_DATA[position]
    changed = original[:-1] + bytes((original[-1] ^ 0x01,))
    data = list(SPEC_DATA)
    data.insert(position + 1, (frame_id, changed))  # right after its first copy
    frames = session_of(data)
    assembler, events = feed_all(frames)
    event = rejection(events, RejectReason.DUPLICATE_FRAME)
    assert name in event.detail and slot_name in event.detail
    assert original.hex().upper() in event.detail  # the first copy, for the log
    assert event.frames_received == position + 1
    duplicate = frames[position + 2]  # START comes first
    assert str(duplicate) in event.detail and event.at == duplicate.timestamp
    # rejected at once: what follows the duplicate, END included, is stray
    assert assembler.counters.stray_frames == len(frames) - (position + 3)


def test_data_frame_with_short_dlc_is_invalid_at_once() -> None:
    data = list(SPEC_DATA)
    data[4] = (USAGE, SPEC_DATA[4][1][:7])
    frames = session_of(data)
    assembler, events = feed_all(frames)
    event = rejection(events, RejectReason.INVALID_VALUE)
    assert "KEY_USAGE" in event.detail and "7 data bytes" in event.detail
    assert event.frames_received == 4
    assert assembler.counters.stray_frames == len(frames) - 6


def test_end_with_short_dlc_is_invalid() -> None:
    frames = session_of(list(SPEC_DATA))
    frames[-1] = replace(frames[-1], data=frames[-1].data[:6])
    event = rejection(feed_all(frames)[1], RejectReason.INVALID_VALUE)
    assert "KEY_SESSION_END" in event.detail and "6 data bytes" in event.detail
    assert event.frames_received == 10


def test_start_with_short_dlc_is_not_a_start() -> None:
    frames = session_of(list(SPEC_DATA))
    frames[0] = replace(frames[0], data=frames[0].data[:7])
    assembler, events = feed_all(frames)
    assert events == []
    assert assembler.counters.stray_frames == len(frames)


# -- checked at END, in the order seq, count, CRC, content -------------------------------------

def with_end(**fields: int) -> list[CanFrame]:
    payloads = [d for _, d in SPEC_DATA]
    end = {"seq": 7, "frame_count": 10, "crc32": session_crc32(payloads)} | fields
    frames = session_of(list(SPEC_DATA))
    frames[-1] = replace(frames[-1], data=end_payload(**end))
    return frames


def test_seq_mismatch() -> None:
    # a wrong count and CRC too: seq is checked first
    event = rejection(feed_all(with_end(seq=8, frame_count=9, crc32=1))[1],
                      RejectReason.SEQ_MISMATCH)
    assert "KEY_SESSION_END" in event.detail and "SessionSeq" in event.detail
    assert "8" in event.detail and "7" in event.detail
    assert event.frames_received == 10


def test_frame_count_mismatch_end_says_otherwise() -> None:
    event = rejection(feed_all(with_end(frame_count=11, crc32=1))[1],
                      RejectReason.FRAME_COUNT_MISMATCH)
    assert "KEY_SESSION_END" in event.detail and "FrameCount" in event.detail
    assert event.frames_received == 10


def test_frame_count_mismatch_frame_lost() -> None:
    frames = session_of(list(SPEC_DATA))
    del frames[5]  # START and END both say 10; 9 arrive
    event = rejection(feed_all(frames)[1], RejectReason.FRAME_COUNT_MISMATCH)
    assert "FrameCount" in event.detail and "9 data frames received" in event.detail
    assert event.frames_received == 9


def test_frame_count_mismatch_start_says_otherwise() -> None:
    frames = session_of(list(SPEC_DATA))
    frames[0] = replace(frames[0], data=start_payload(seq=7, frame_count=11, key_id=KEY_ID,
                                                      key_slot=2))
    event = rejection(feed_all(frames)[1], RejectReason.FRAME_COUNT_MISMATCH)
    assert "START said 11" in event.detail


def test_crc_mismatch_in_end() -> None:
    event = rejection(feed_all(with_end(crc32=0x2CB02A9E))[1], RejectReason.CRC_MISMATCH)
    assert "KEY_SESSION_END" in event.detail and "Crc32" in event.detail
    assert "0x2CB02A9E" in event.detail and "0x2CB02A9F" in event.detail
    assert event.frames_received == 10


def test_crc_mismatch_data_changed_in_flight() -> None:
    frames = timed(spec_frames())
    usage = frames[5]
    frames[5] = replace(usage, data=usage.data[:3] + bytes((usage.data[3] ^ 0x01,)) + usage.data[4:])
    event = rejection(feed_all(frames)[1], RejectReason.CRC_MISMATCH)
    assert "Crc32" in event.detail


def test_crc_covers_arrival_order() -> None:
    data = list(SPEC_DATA)
    frames = session_of(data)
    data[0], data[1] = data[1], data[0]
    swapped = session_of(data)
    swapped[-1] = frames[-1]  # END computed for the other order
    rejection(feed_all(swapped)[1], RejectReason.CRC_MISMATCH)


def test_missing_vin() -> None:
    data = [d for i, d in enumerate(SPEC_DATA) if i != 1]
    event = rejection(feed_all(session_of(data))[1], RejectReason.MISSING_VIN)
    assert "KEY_VIN" in event.detail and "part 1" in event.detail
    assert event.frames_received == 9


def test_missing_vehicle() -> None:
    data = [d for d in SPEC_DATA if d[0] != VEHICLE]
    event = rejection(feed_all(session_of(data))[1], RejectReason.MISSING_VEHICLE)
    assert "KEY_VEHICLE" in event.detail
    assert event.frames_received == 9


def test_orphan_history() -> None:
    data = list(SPEC_DATA) + [(HISTORY, encode_raw(HISTORY, {
        "ItemIndex": 5, "LastServiceKm": 1000, "LastServiceYear": 20, "LastServiceMonth": 1,
        "IntervalKm": 10, "IntervalMonths": 12}))]
    event = rejection(feed_all(session_of(data))[1], RejectReason.ORPHAN_HISTORY)
    assert "KEY_CBS_HISTORY" in event.detail and "ItemIndex" in event.detail
    assert "item 5" in event.detail
    assert event.frames_received == 11


VEHICLE_RAW = {"MileageKm": 48_371, "DataYear": 26, "DataMonth": 11, "DataDay": 25,
               "FuelLevelPct": 63, "BuildYear": 22, "BuildMonth": 3}
USAGE_RAW = {"AmbientAvg": 124, "AmbientMin": 66, "AmbientMax": 154, "HotSharePct": 8,
             "ColdSharePct": 11, "ShortTripPct": 35, "SevereDutyPct": 0, "AvgTripKm": 142}
STATUS_RAW = {"ItemIndex": 1, "CbsType": 0x03, "AvailabilityPct": 255, "RemainingKm": -524_288,
              "DueYear": 27, "DueMonth": 3, "ServiceCount": 1}
HISTORY_RAW = {"ItemIndex": 0, "LastServiceKm": 30_000, "LastServiceYear": 25,
               "LastServiceMonth": 11, "IntervalKm": 150, "IntervalMonths": 24}
CC_RAW = {"CcIndex": 0, "CcId": 0x0102, "CcStatus": 1, "CcMileageKm": 48_010}


def vin_frames(vin: bytes) -> list[tuple[int, bytes]]:
    parts = (vin[0:7], vin[7:14], vin[14:17] + b"\0\0\0\0")
    return [(VIN, bytes((part,)) + chars) for part, chars in enumerate(parts)]


def with_vin(vin: bytes) -> list[tuple[int, bytes]]:
    return vin_frames(vin) + list(SPEC_DATA[3:])


INVALID_VALUES = [
    # (name, data frames, words the detail must contain)
    ("vin-I", with_vin(b"WBA8E5107FK12345I"), ["KEY_VIN", "VinChars", "WBA8E5107FK12345I"]),
    ("vin-O", with_vin(b"OBA8E5107FK123456"), ["KEY_VIN", "VinChars"]),
    ("vin-Q", with_vin(b"WBA8E51Q7FK123456"), ["KEY_VIN", "VinChars"]),
    ("vin-lowercase", with_vin(b"wBA8E5107FK123456"), ["KEY_VIN", "VinChars"]),
    ("vin-nul", with_vin(b"WBA8E51\x0007FK12345"), ["KEY_VIN", "VinChars"]),
    ("vin-part-3", list(SPEC_DATA) + [(VIN, b"\x03ABCDEFG")], ["KEY_VIN", "VinPart", "part 3"]),
    ("vin-part-2-tail", list(SPEC_DATA[:2]) + [(VIN, b"\x02456\x00\x00\x00A")] + list(SPEC_DATA[3:]),
     ["KEY_VIN", "VinChars", "four 0x00"]),
    ("31-february", replaced(3, VEHICLE, VEHICLE_RAW | {"DataMonth": 2, "DataDay": 31}),
     ["KEY_VEHICLE", "DataDay", "2026-02-31"]),
    ("29-february-2027", replaced(3, VEHICLE, VEHICLE_RAW | {"DataYear": 27, "DataMonth": 2,
                                                             "DataDay": 29}),
     ["KEY_VEHICLE", "DataDay", "2027-02-29"]),
    ("day-0", replaced(3, VEHICLE, VEHICLE_RAW | {"DataDay": 0}), ["KEY_VEHICLE", "DataDay"]),
    ("data-month-0", replaced(3, VEHICLE, VEHICLE_RAW | {"DataMonth": 0}),
     ["KEY_VEHICLE", "DataMonth"]),
    ("data-month-13", replaced(3, VEHICLE, VEHICLE_RAW | {"DataMonth": 13}),
     ["KEY_VEHICLE", "DataMonth"]),
    ("build-month-13", replaced(3, VEHICLE, VEHICLE_RAW | {"BuildMonth": 13}),
     ["KEY_VEHICLE", "BuildMonth"]),
    ("fuel-101", replaced(3, VEHICLE, VEHICLE_RAW | {"FuelLevelPct": 101}),
     ["KEY_VEHICLE", "FuelLevelPct", "101"]),
    ("fuel-254", replaced(3, VEHICLE, VEHICLE_RAW | {"FuelLevelPct": 254}),
     ["KEY_VEHICLE", "FuelLevelPct"]),
    ("hot-share-101", replaced(4, USAGE, USAGE_RAW | {"HotSharePct": 101}),
     ["KEY_USAGE", "HotSharePct", "101"]),
    ("cold-share-127", replaced(4, USAGE, USAGE_RAW | {"ColdSharePct": 127}),
     ["KEY_USAGE", "ColdSharePct"]),
    ("short-trip-101", replaced(4, USAGE, USAGE_RAW | {"ShortTripPct": 101}),
     ["KEY_USAGE", "ShortTripPct"]),
    ("severe-duty-101", replaced(4, USAGE, USAGE_RAW | {"SevereDutyPct": 101}),
     ["KEY_USAGE", "SevereDutyPct"]),
    ("availability-251", replaced(6, STATUS, STATUS_RAW | {"AvailabilityPct": 251}),
     ["KEY_CBS_STATUS", "AvailabilityPct", "251"]),
    ("availability-252", replaced(6, STATUS, STATUS_RAW | {"AvailabilityPct": 252}),
     ["KEY_CBS_STATUS", "AvailabilityPct", "252"]),
    ("availability-254", replaced(6, STATUS, STATUS_RAW | {"AvailabilityPct": 254}),
     ["KEY_CBS_STATUS", "AvailabilityPct"]),
    ("due-month-13", replaced(6, STATUS, STATUS_RAW | {"DueMonth": 13}),
     ["KEY_CBS_STATUS", "DueMonth", "13"]),
    ("due-month-15", replaced(6, STATUS, STATUS_RAW | {"DueMonth": 15}),
     ["KEY_CBS_STATUS", "DueMonth"]),
    ("last-service-month-13", replaced(7, HISTORY, HISTORY_RAW | {"LastServiceMonth": 13}),
     ["KEY_CBS_HISTORY", "LastServiceMonth"]),
    ("cc-status-0", replaced(8, CHECK_CONTROL, CC_RAW | {"CcStatus": 0}),
     ["KEY_CHECK_CONTROL", "CcStatus", "0"]),
    ("cc-status-3", replaced(8, CHECK_CONTROL, CC_RAW | {"CcStatus": 3}),
     ["KEY_CHECK_CONTROL", "CcStatus", "3"]),
]


@pytest.mark.parametrize(("data", "words"), [r[1:] for r in INVALID_VALUES],
                         ids=[r[0] for r in INVALID_VALUES])
def test_invalid_value(data: list[tuple[int, bytes]], words: list[str]) -> None:
    frames = session_of(data)
    assembler, events = feed_all(frames)
    event = rejection(events, RejectReason.INVALID_VALUE)
    for word in words:
        assert word in event.detail
    assert event.frames_received == len(data)
    assert event.at == frames[-1].timestamp  # content is judged at END
    assert assembler.counters.stray_frames == 0


def test_invalid_key_slot() -> None:
    event = rejection(feed_all(session_of(list(SPEC_DATA), key_slot=10))[1],
                      RejectReason.INVALID_VALUE)
    assert "KEY_SESSION_START" in event.detail and "KeySlot" in event.detail


def test_invalid_value_names_the_data_frame_position() -> None:
    frames = session_of(replaced(8, CHECK_CONTROL, CC_RAW | {"CcStatus": 3}))
    event = rejection(feed_all(frames)[1], RejectReason.INVALID_VALUE)
    assert "data frame 9" in event.detail and str(frames[9]) in event.detail


# -- time and the reader -------------------------------------------------------------------

def test_timeout_driven_by_frame_timestamps() -> None:
    frames = timed(spec_frames())
    late = [*frames[:6], *(replace(f, timestamp=f.timestamp + 0.6) for f in frames[6:])]
    assembler, events = feed_all(late)
    event = rejection(events, RejectReason.TIMEOUT)
    assert "500 ms" in event.detail and "data frame 5 of 10" in event.detail
    assert event.frames_received == 5
    assert event.at == pytest.approx(frames[5].timestamp + 0.5)
    assert assembler.counters.stray_frames == 6  # the late frames and END


def test_timeout_driven_by_poll() -> None:
    frames = timed(spec_frames())
    assembler, events = feed_all(frames[:4])
    assert events == []
    last = frames[3].timestamp
    assert assembler.poll(last + 0.5) == []  # "no frame for 500 ms": strictly more
    event = rejection(assembler.poll(last + 0.501), RejectReason.TIMEOUT)
    assert event.frames_received == 3
    assert event.at == pytest.approx(last + 0.5)
    assert assembler.poll(last + 10) == []  # once only
    assert not assembler.in_session


def test_timeout_is_configurable() -> None:
    frames = timed(spec_frames(), gap_s=1.0)
    _, events = feed_all(frames, SessionAssembler(timeout_s=1.5))
    assert [type(e) for e in events] == [SessionAccepted]
    event = rejection(feed_all(frames, SessionAssembler(timeout_s=0.9))[1], RejectReason.TIMEOUT)
    assert "900 ms" in event.detail


def test_interrupted_then_the_new_session_is_accepted() -> None:
    first = timed(spec_frames())[:6]
    second = timed(frame_session(replace(EXAMPLE_SESSION, session_seq=8), list(SPEC_DATA)),
                   start_time=first[-1].timestamp + GAP_S)
    _, events = feed_all(first + second)
    assert len(events) == 2
    event = events[0]
    assert isinstance(event, SessionRejected) and event.reason == RejectReason.INTERRUPTED
    assert event.key_id == KEY_ID and event.frames_received == 5
    assert "KEY_SESSION_START" in event.detail
    assert event.at == second[0].timestamp
    assert isinstance(events[1], SessionAccepted)
    assert events[1].session == replace(EXAMPLE_SESSION, session_seq=8)


def test_key_removed() -> None:
    frames = timed(spec_frames())
    assembler, events = feed_all(frames[:4])
    assert events == []
    event = rejection(assembler.key_removed(frames[3].timestamp + 0.1), RejectReason.KEY_REMOVED)
    assert "KEY_REMOVED" in event.detail and "3 of 10" in event.detail
    assert event.frames_received == 3
    assert event.at == pytest.approx(frames[3].timestamp + 0.1)
    assert assembler.key_removed(frames[3].timestamp + 0.2) == []  # no session any more


def test_key_removed_after_quiet_period_reports_the_timeout() -> None:
    frames = timed(spec_frames())
    assembler, _ = feed_all(frames[:4])
    rejection(assembler.key_removed(frames[3].timestamp + 5), RejectReason.TIMEOUT)


def test_key_removed_after_a_complete_session_is_nothing() -> None:
    assembler, events = feed_all(timed(spec_frames()))
    assert [type(e) for e in events] == [SessionAccepted]
    assert assembler.key_removed(200.0) == []


# -- silent cases ----------------------------------------------------------------------------

def test_identical_repeats_are_dropped_silently() -> None:
    frames = timed(spec_frames())
    stream = [frames[0], frames[0], *frames[1:5], frames[4], frames[4], *frames[5:11], frames[1],
              frames[11]]
    assembler, events = feed_all(timed(stream))
    assert [type(e) for e in events] == [SessionAccepted]
    assert events[0].session == EXAMPLE_SESSION
    assert events[0].frames_received == 10  # END's count and CRC (spec values) still match
    assert assembler.counters.repeats_dropped == 4
    assert assembler.counters.frames == len(stream)


def test_stray_frames_are_counted() -> None:
    frames = timed(spec_frames())
    before = [CanFrame(VEHICLE, SPEC_DATA[3][1], 99.0), CanFrame(END, frames[-1].data, 99.1),
              CanFrame(0x6F8, bytes(8), 99.2)]
    inside = [CanFrame(fid, bytes(8), frames[5].timestamp) for fid in range(0x6F8, 0x6FF)]
    stream = before + frames[:6] + inside + frames[6:] + [frames[3]]
    assembler, events = feed_all(stream)
    assert [type(e) for e in events] == [SessionAccepted]
    assert events[0].session == EXAMPLE_SESSION
    assert assembler.counters.stray_frames == len(before) + len(inside) + 1
    assert assembler.counters.frames == len(stream)


def test_other_traffic_is_counted_and_ignored() -> None:
    frames = timed(spec_frames())
    noise = [CanFrame(fid, bytes(range(dlc)), frames[2].timestamp)
             for fid, dlc in ((0x000, 0), (0x123, 3), (0x6EF, 8), (0x700, 8), (0x7FF, 1))]
    # other traffic with an identifier of a key message's data bytes changes nothing either
    noise.append(CanFrame(0x6E0, frames[3].data, frames[2].timestamp))
    stream = frames[:3] + noise + frames[3:]
    assembler, events = feed_all(stream)
    assert [type(e) for e in events] == [SessionAccepted]
    assert events[0].session == EXAMPLE_SESSION
    assert assembler.counters.other_traffic == len(noise)
    assert assembler.counters.frames == len(frames)
    assert assembler.counters.stray_frames == 0


def test_counters_after_a_mix() -> None:
    frames = timed(spec_frames())
    assembler, _ = feed_all(frames)
    feed_all(timed(frame_session(EXAMPLE_SESSION, list(SPEC_DATA), version=2), 200.0), assembler)
    c = assembler.counters
    assert (c.accepted, c.rejected, c.stray_frames) == (1, 1, 11)
