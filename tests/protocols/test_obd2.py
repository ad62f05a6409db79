"""OBD-II codecs: round trips, the spec's bit layouts, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import obd2
from protocols.dtc import OBD_PENDING, OBD_PERMANENT, OBD_STORED
from protocols.errors import MalformedResponseError, ProtocolError


def test_requests_and_functional_frame() -> None:
    assert obd2.current_data_request(0x00) == b"\x01\x00"
    assert obd2.dtcs_request(OBD_STORED) == b"\x03"
    assert obd2.vehicle_info_request() == b"\x09\x02"
    assert obd2.clear_request() == b"\x04"
    assert obd2.functional_frame(b"\x01\x00").hex().upper() == "020100CCCCCCCCCC"
    with pytest.raises(ProtocolError):
        obd2.functional_frame(b"")
    with pytest.raises(ProtocolError):
        obd2.dtcs_request(0x01)


def test_supported_bitmap_msb_first() -> None:
    # 0xBE1FA813: the classic example; PID 01 is the MSB, 0x20 (next bitmap) the LSB.
    pids = obd2.parse_supported_pids(0x00, bytes.fromhex("4100BE1FA813"))
    assert 0x01 in pids and 0x02 not in pids and 0x20 in pids and 0x1E not in pids


def test_monitor_distance_odometer() -> None:
    status = obd2.parse_monitor_status(bytes.fromhex("410183076504"))
    assert status == obd2.MonitorStatus(True, 3)
    assert obd2.parse_distance_since_clear(bytes.fromhex("41310102")) == 258
    assert obd2.parse_odometer_km(bytes.fromhex("41A60007632D")) == 48414  # 484141 * 0.1 km


def test_dtcs_and_vin() -> None:
    (dtc,) = obd2.parse_dtcs(OBD_STORED, bytes.fromhex("43010301"))
    assert (dtc.code_hex, dtc.sae, dtc.failure_type, dtc.status) == ("0301", "P0301", None, None)
    assert dtc.confirmed and not dtc.pending and not dtc.permanent
    (pending,) = obd2.parse_dtcs(OBD_PENDING, bytes.fromhex("4701C123"))
    assert pending.pending and not pending.confirmed and pending.sae == "U0123"
    (permanent,) = obd2.parse_dtcs(OBD_PERMANENT, bytes.fromhex("4A010420"))
    assert permanent.permanent and permanent.confirmed
    assert obd2.parse_vin(obd2.vin_response("WBA8E5107FK123456")) == "WBA8E5107FK123456"
    with pytest.raises(MalformedResponseError):
        obd2.parse_dtcs(OBD_STORED, bytes.fromhex("430203"))


@given(st.sets(st.integers(1, 0xC0)), st.sampled_from(obd2.SUPPORT_PIDS))
def test_bitmap_round_trip(pids: set[int], base: int) -> None:
    answer = bytes((0x41, base)) + obd2.supported_bitmap(pids, base)
    assert obd2.parse_supported_pids(base, answer) == {p for p in pids if base < p <= base + 32}


@given(st.sampled_from([OBD_STORED, OBD_PENDING, OBD_PERMANENT]),
       st.lists(st.integers(0, 0xFFFF), max_size=100))
def test_dtcs_round_trip(mode: int, codes: list[int]) -> None:
    parsed = obd2.parse_dtcs(mode, obd2.dtcs_response(mode, codes))
    assert [d.code for d in parsed] == codes
    assert all(d.obd_mode == mode and d.width == 2 for d in parsed)


@given(st.binary(max_size=64))
def test_parsers_never_raise_on_garbage(payload: bytes) -> None:
    for parse in (lambda p: obd2.parse_supported_pids(0x20, p), obd2.parse_monitor_status,
                  obd2.parse_distance_since_clear, obd2.parse_odometer_km, obd2.parse_vin,
                  obd2.parse_clear, lambda p: obd2.parse_dtcs(OBD_PENDING, p)):
        try:
            parse(payload)
        except MalformedResponseError:
            pass
