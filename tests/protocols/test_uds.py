"""UDS codecs: round-trip tables, and parsers that never raise on garbage beyond
MalformedResponseError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import uds
from protocols.dtc import DtcRecord
from protocols.errors import MalformedResponseError, ProtocolError

# (request, bytes)
REQUESTS = [
    (uds.tester_present_request(), "3E00"),
    (uds.read_did_request(uds.DID_VIN), "22F190"),
    (uds.read_did_request(uds.DID_MILEAGE), "221700"),
    (uds.read_dtcs_request(), "1902FF"),
    (uds.read_occurrences_request(0x03011F), "190603011F01"),
    (uds.clear_dtcs_request(), "14FFFFFF"),
]


@pytest.mark.parametrize(("request_bytes", "hex_text"), REQUESTS)
def test_requests(request_bytes: bytes, hex_text: str) -> None:
    assert request_bytes.hex().upper() == hex_text


def test_spec_example_dtc_list() -> None:
    answer = bytes.fromhex("5902FF03011F2F")
    parsed = uds.parse_dtcs(answer)
    assert parsed.availability_mask == 0xFF
    (dtc,) = parsed.dtcs
    assert (dtc.code_hex, dtc.sae, dtc.failure_type, dtc.status) == ("03011F", "P0301", 31, 47)
    assert (dtc.confirmed, dtc.pending, dtc.warning_lamp) == (True, True, False)


def test_text_did_trims_and_never_raises_on_bytes() -> None:
    assert uds.parse_text_did(0xF187, bytes.fromhex("62F187") + b"8631234   \x00\x00") == "8631234"
    assert uds.parse_text_did(0xF187, bytes.fromhex("62F187") + b"A\xffB") == "A?B"


def test_mileage() -> None:
    assert uds.parse_mileage(bytes.fromhex("62170000BD1C")) == 48412
    with pytest.raises(MalformedResponseError):
        uds.parse_mileage(bytes.fromhex("6217000001"))


def test_negative_responses() -> None:
    assert uds.negative_response(bytes.fromhex("7F2278")) == uds.NegativeResponse(0x22, 0x78)
    assert uds.negative_response(bytes.fromhex("62F190")) is None
    assert uds.answers(uds.read_did_request(0xF190), bytes.fromhex("7F2231"))
    assert not uds.answers(uds.read_did_request(0xF190), bytes.fromhex("7F1931"))
    with pytest.raises(MalformedResponseError, match="requestOutOfRange"):
        uds.parse_did(0xF190, bytes.fromhex("7F2231"))


def test_occurrences() -> None:
    assert uds.parse_occurrences(0x03011F, bytes.fromhex("590603011F2F0103")) == 3
    assert uds.parse_occurrences(0x03011F, bytes.fromhex("590603011F2F")) is None
    with pytest.raises(MalformedResponseError):
        uds.parse_occurrences(0x03011F, bytes.fromhex("590603011E2F0103"))


def test_builders_refuse_out_of_range() -> None:
    with pytest.raises(ProtocolError):
        uds.read_did_request(0x10000)
    with pytest.raises(ProtocolError):
        uds.read_occurrences_request(-1)


records = st.lists(st.builds(DtcRecord, st.integers(0, 0xFFFFFF), st.just(3),
                             st.integers(0, 0xFF)), max_size=200)


@given(records, st.integers(0, 0xFF))
def test_dtc_list_round_trip(dtcs: list[DtcRecord], mask: int) -> None:
    parsed = uds.parse_dtcs(uds.dtc_list_response(dtcs, mask))
    assert parsed == uds.DtcList(mask, tuple(dtcs))


@given(st.integers(0, 0xFFFFFF), st.integers(0, 0xFF), st.integers(0, 0xFF))
def test_occurrences_round_trip(code: int, status: int, count: int) -> None:
    record = DtcRecord(code, 3, status)
    request = uds.read_occurrences_request(code)
    answer = uds.occurrences_response(record, count)
    assert uds.answers(request, answer)
    assert uds.parse_occurrences(code, answer) == count


@given(st.integers(0, 0xFFFF), st.binary(max_size=40))
def test_did_round_trip(did: int, data: bytes) -> None:
    request = uds.read_did_request(did)
    answer = uds.positive_response(request, data)
    assert uds.answers(request, answer)
    assert uds.parse_did(did, answer) == data


@given(st.binary(max_size=64), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFF))
def test_parsers_never_raise_on_garbage(payload: bytes, did: int, code: int) -> None:
    uds.negative_response(payload)
    uds.answers(b"\x22", payload)
    for parse in (uds.parse_dtcs, uds.parse_tester_present, uds.parse_mileage, uds.parse_clear,
                  lambda p: uds.parse_did(did, p), lambda p: uds.parse_text_did(did, p),
                  lambda p: uds.parse_occurrences(code, p)):
        try:
            parse(payload)
        except MalformedResponseError:
            pass


def test_a_late_answer_to_another_request_is_not_an_answer() -> None:
    assert not uds.answers(uds.read_did_request(0xF189), bytes.fromhex("62F1873231"))
    assert uds.answers(uds.read_did_request(0xF189), bytes.fromhex("62F1893231"))
    assert not uds.answers(uds.read_occurrences_request(0x03011F),
                           bytes.fromhex("590603011E2F0103"))
    assert not uds.answers(uds.read_dtcs_request(), bytes.fromhex("5906"))
