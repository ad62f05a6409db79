"""The ISO-TP reference frames: segment -> parse -> reassemble gives the payload back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.dtc import DtcRecord, sae_reading
from protocols.isotp_frames import (
    FrameKind,
    Reassembler,
    flow_control,
    pad,
    parse_frame,
    segment,
    stmin_seconds,
)
from protocols.key_session import StoredDtc


@given(st.binary(min_size=1, max_size=4095), st.one_of(st.none(), st.integers(0, 0xFF)))
def test_round_trip(payload: bytes, address: int | None) -> None:
    frames = segment(payload, address=address)
    assert all(len(f) <= 8 for f in frames)
    assembler = Reassembler()
    out = None
    for data in frames:
        frame = parse_frame(pad(data), extended=address is not None)
        assert frame is not None and frame.address == address
        out = assembler.feed(frame)
    assert out == payload


def test_extended_single_frame_carries_six() -> None:
    assert len(segment(b"123456", address=0x12)) == 1
    assert len(segment(b"1234567", address=0x12)) == 2
    assert segment(b"\x3e\x00", address=0x12) == [bytes.fromhex("12023E00")]


def test_flow_control_and_stmin() -> None:
    fc = parse_frame(flow_control(0, 8, 0xF3, address=0x12), extended=True)
    assert fc is not None and fc.kind == FrameKind.FLOW_CONTROL
    assert (fc.block_size, fc.stmin) == (8, 0xF3)
    assert stmin_seconds(0xF3) == 0.0003 and stmin_seconds(127) == 0.127
    assert stmin_seconds(0x80) == 0.127


def test_wrong_sequence_ends_the_message() -> None:
    frames = segment(bytes(range(20)))
    assembler = Reassembler()
    assembler.feed(parse_frame(frames[0]))  # type: ignore[arg-type]
    assert assembler.feed(parse_frame(frames[2])) is None  # type: ignore[arg-type]
    assert assembler.errors == 1 and not assembler.receiving


@given(st.binary(max_size=8), st.booleans())
def test_parse_never_raises(data: bytes, extended: bool) -> None:
    frame = parse_frame(data, extended=extended)
    if frame is not None:
        Reassembler().feed(frame)


@given(st.integers(0, 0xFFFFFF), st.integers(0, 0xFF))
def test_key_dtc_and_vehicle_dtc_are_one_form(code: int, status: int) -> None:
    stored = StoredDtc(0, code, status, 0x12, 1)
    record = stored.record()
    assert (record.code_hex, record.sae, record.failure_type, record.confirmed) == (
        stored.code_hex, stored.sae, stored.failure_type, stored.confirmed)
    assert record.sae == sae_reading(code >> 8)
    assert DtcRecord(code & 0xFFFF, 2).code_hex == f"{code & 0xFFFF:04X}"
