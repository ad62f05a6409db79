"""UDS (ISO 14229-1) requests and responses of the vehicle test, without I/O.

Each service has a builder (``*_request``) that returns the request's bytes and a parser
(``parse_*``) that takes the ECU's whole answer (the ISO-TP payload). A parser either returns
the value or raises :class:`~protocols.errors.MalformedResponseError`; it never raises
anything else, whatever the bytes. A negative response (``7F sid nrc``) is recognised first by
:func:`negative_response`: the caller decides what an NRC means (0x78 keep waiting, 0x21 ask
again, ...), and the parsers reject it like any answer of the wrong form.

Services (shared/spec/diagnostics.md, "What the tester asks"):

    3E 00            TesterPresent                 -> 7E 00
    22 hi lo         ReadDataByIdentifier          -> 62 hi lo data...
    19 02 mask       ReadDTCInformation, by status -> 59 02 availability (dtc3 status)*
    19 06 dtc3 01    ReadDTCInformation, ext. data -> 59 06 dtc3 status 01 count
    14 FF FF FF      ClearDiagnosticInformation    -> 54
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from protocols.dtc import DtcRecord
from protocols.errors import MalformedResponseError, ProtocolError

NEGATIVE_RESPONSE: Final = 0x7F
POSITIVE_OFFSET: Final = 0x40

SID_CLEAR_DTC: Final = 0x14
SID_READ_DTC: Final = 0x19
SID_READ_DID: Final = 0x22
SID_TESTER_PRESENT: Final = 0x3E

REPORT_DTC_BY_STATUS_MASK: Final = 0x02
REPORT_DTC_EXT_DATA: Final = 0x06
OCCURRENCE_RECORD: Final = 0x01
ALL_DTC_GROUPS: Final = 0xFFFFFF

# Identifiers read by the test.
DID_VIN: Final = 0xF190
DID_SPARE_PART: Final = 0xF187
DID_SOFTWARE: Final = 0xF189
DID_HARDWARE: Final = 0xF191
DID_SERIAL: Final = 0xF18C
DID_MILEAGE: Final = 0x1700  # this project's KOMBI layout: u24 big-endian km

# Negative response codes the tester acts on.
NRC_GENERAL_REJECT: Final = 0x10
NRC_SERVICE_NOT_SUPPORTED: Final = 0x11
NRC_SUBFUNCTION_NOT_SUPPORTED: Final = 0x12
NRC_INCORRECT_LENGTH: Final = 0x13
NRC_BUSY_REPEAT: Final = 0x21
NRC_CONDITIONS_NOT_CORRECT: Final = 0x22
NRC_REQUEST_OUT_OF_RANGE: Final = 0x31
NRC_RESPONSE_PENDING: Final = 0x78
#: "Not supported here": the field is null, the ECU is not failed (the spec's NRC column).
NRC_NOT_SUPPORTED: Final = frozenset({NRC_SERVICE_NOT_SUPPORTED, NRC_SUBFUNCTION_NOT_SUPPORTED,
                                      NRC_REQUEST_OUT_OF_RANGE})

NRC_NAMES: Final = {
    0x10: "generalReject", 0x11: "serviceNotSupported", 0x12: "subFunctionNotSupported",
    0x13: "incorrectMessageLengthOrInvalidFormat", 0x14: "responseTooLong",
    0x21: "busyRepeatRequest", 0x22: "conditionsNotCorrect", 0x24: "requestSequenceError",
    0x31: "requestOutOfRange", 0x33: "securityAccessDenied", 0x72: "generalProgrammingFailure",
    0x78: "requestCorrectlyReceived-ResponsePending", 0x7E: "subFunctionNotSupportedInActiveSession",
    0x7F: "serviceNotSupportedInActiveSession",
}

TEXT_FIELD_MAX: Final = 20
VIN_LENGTH: Final = 17


@dataclass(frozen=True, slots=True)
class NegativeResponse:
    """``7F service nrc``."""

    service: int
    nrc: int

    @property
    def name(self) -> str:
        return NRC_NAMES.get(self.nrc, f"NRC 0x{self.nrc:02X}")


@dataclass(frozen=True, slots=True)
class DtcList:
    """The answer to ``19 02``: the ECU's status availability mask and its records in order."""

    availability_mask: int
    dtcs: tuple[DtcRecord, ...]


# -- requests -------------------------------------------------------------------------------


def tester_present_request() -> bytes:
    return bytes((SID_TESTER_PRESENT, 0x00))


def read_did_request(did: int) -> bytes:
    _check_range("DID", did, 0xFFFF)
    return bytes((SID_READ_DID, did >> 8, did & 0xFF))


def read_dtcs_request(status_mask: int = 0xFF) -> bytes:
    _check_range("status mask", status_mask, 0xFF)
    return bytes((SID_READ_DTC, REPORT_DTC_BY_STATUS_MASK, status_mask))


def read_occurrences_request(code: int, record: int = OCCURRENCE_RECORD) -> bytes:
    _check_range("DTC", code, 0xFFFFFF)
    _check_range("record number", record, 0xFF)
    return bytes((SID_READ_DTC, REPORT_DTC_EXT_DATA)) + code.to_bytes(3, "big") + bytes((record,))


def clear_dtcs_request(group: int = ALL_DTC_GROUPS) -> bytes:
    _check_range("DTC group", group, 0xFFFFFF)
    return bytes((SID_CLEAR_DTC,)) + group.to_bytes(3, "big")


def _check_range(what: str, value: int, top: int) -> None:
    if not 0 <= value <= top:
        raise ProtocolError(f"{what} {value!r} out of range 0..0x{top:X}")


# -- responses ------------------------------------------------------------------------------


def negative_response(payload: bytes | bytearray) -> NegativeResponse | None:
    """The NRC if ``payload`` is a negative response (``7F sid nrc``), else None."""
    if len(payload) >= 3 and payload[0] == NEGATIVE_RESPONSE:
        return NegativeResponse(payload[1], payload[2])
    return None


def answers(request: bytes, payload: bytes | bytearray) -> bool:
    """True if ``payload`` is an answer to ``request`` at all: its positive response SID, or
    a negative response naming its service. Anything else (a late answer to an earlier
    request) is not for this request."""
    if not request or not payload:
        return False
    if payload[0] == NEGATIVE_RESPONSE:
        return len(payload) >= 3 and payload[1] == request[0]
    if payload[0] != (request[0] + POSITIVE_OFFSET) & 0xFF:
        return False
    echo = _echo_length(request)
    return bytes(payload[1:1 + echo]) == bytes(request[1:1 + echo])


def _echo_length(request: bytes | bytearray) -> int:
    """How many bytes after the SID a positive answer repeats: the DID (22), the
    sub-function (3E, 19) and, for 19 06, the DTC too."""
    sid = request[0]
    if sid == SID_READ_DTC and len(request) >= 2 and request[1] == REPORT_DTC_EXT_DATA:
        return 4
    return {SID_TESTER_PRESENT: 1, SID_READ_DID: 2, SID_READ_DTC: 1}.get(sid, 0)


def parse_tester_present(payload: bytes | bytearray) -> None:
    _expect(payload, bytes((SID_TESTER_PRESENT + POSITIVE_OFFSET, 0x00)), "TesterPresent")


def parse_did(did: int, payload: bytes | bytearray) -> bytes:
    """The data record of ``62 hi lo data``."""
    _expect(payload, bytes((SID_READ_DID + POSITIVE_OFFSET, (did >> 8) & 0xFF, did & 0xFF)),
            f"ReadDataByIdentifier {did:04X}")
    return bytes(payload[3:])


def decode_text(data: bytes | bytearray) -> str:
    """An identification string: ASCII, trailing spaces and NULs trimmed; bytes outside
    printable ASCII become ``?`` (never an exception)."""
    text = bytes(data).rstrip(b" \x00")
    return "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in text)


def parse_text_did(did: int, payload: bytes | bytearray) -> str:
    return decode_text(parse_did(did, payload))


def parse_mileage(payload: bytes | bytearray) -> int:
    """``62 17 00`` + u24 big-endian km."""
    data = parse_did(DID_MILEAGE, payload)
    if len(data) != 3:
        raise MalformedResponseError(f"mileage record of {len(data)} bytes, expected 3")
    return int.from_bytes(data, "big")


def parse_dtcs(payload: bytes | bytearray) -> DtcList:
    """``59 02 availability`` then 4-byte records (DTC high byte first, status)."""
    _expect(payload, bytes((SID_READ_DTC + POSITIVE_OFFSET, REPORT_DTC_BY_STATUS_MASK)),
            "ReadDTCInformation 02")
    if len(payload) < 3:
        raise MalformedResponseError("ReadDTCInformation 02 without availability mask")
    body = bytes(payload[3:])
    if len(body) % 4:
        raise MalformedResponseError(f"DTC records of {len(body)} bytes, not a multiple of 4")
    records = tuple(DtcRecord(int.from_bytes(body[i:i + 3], "big"), 3, body[i + 3])
                    for i in range(0, len(body), 4))
    return DtcList(payload[2], records)


def parse_occurrences(code: int, payload: bytes | bytearray,
                      record: int = OCCURRENCE_RECORD) -> int | None:
    """The occurrence counter of ``59 06 dtc3 status 01 count``; None when the ECU answered
    without the record (it has no data for it)."""
    head = bytes((SID_READ_DTC + POSITIVE_OFFSET, REPORT_DTC_EXT_DATA)) + code.to_bytes(3, "big")
    _expect(payload, head, f"ReadDTCInformation 06 {code:06X}")
    rest = bytes(payload[len(head):])
    if len(rest) < 1:
        raise MalformedResponseError("ReadDTCInformation 06 without status")
    if len(rest) == 1:
        return None
    if rest[1] != record or len(rest) < 3:
        raise MalformedResponseError(f"ReadDTCInformation 06 without record {record:02X} count")
    return rest[2]


def parse_clear(payload: bytes | bytearray) -> None:
    _expect(payload, bytes((SID_CLEAR_DTC + POSITIVE_OFFSET,)), "ClearDiagnosticInformation")


def _expect(payload: bytes | bytearray, head: bytes, what: str) -> None:
    if not isinstance(payload, bytes | bytearray):
        raise MalformedResponseError(f"{what}: not bytes")
    negative = negative_response(payload)
    if negative is not None:
        raise MalformedResponseError(f"{what}: negative response {negative.name}")
    if bytes(payload[:len(head)]) != head:
        raise MalformedResponseError(f"{what}: answer {bytes(payload[:8]).hex().upper()} "
                                     f"does not start {head.hex().upper()}")


# -- the ECU's side (simulators) ------------------------------------------------------------


def positive_response(request: bytes | bytearray, data: bytes = b"") -> bytes:
    """The positive answer to ``request`` echoing what the service echoes, then ``data``."""
    if not request:
        raise ProtocolError("empty request")
    echo = _echo_length(request)
    if request[0] == SID_READ_DTC and echo == 4:
        echo = 1  # 19 06: the DTC follows in the data, with its status
    return bytes(((request[0] + POSITIVE_OFFSET) & 0xFF,)) + bytes(request[1:1 + echo]) + data


def negative_response_bytes(service: int, nrc: int) -> bytes:
    return bytes((NEGATIVE_RESPONSE, service & 0xFF, nrc & 0xFF))


def dtc_list_response(records: Sequence[DtcRecord], availability_mask: int = 0xFF) -> bytes:
    out = bytearray((SID_READ_DTC + POSITIVE_OFFSET, REPORT_DTC_BY_STATUS_MASK, availability_mask))
    for record in records:
        out += record.code.to_bytes(3, "big") + bytes((record.status or 0,))
    return bytes(out)


def occurrences_response(record: DtcRecord, count: int | None) -> bytes:
    out = bytes((SID_READ_DTC + POSITIVE_OFFSET, REPORT_DTC_EXT_DATA)) + record.code.to_bytes(3, "big")
    out += bytes((record.status or 0,))
    if count is not None:
        out += bytes((OCCURRENCE_RECORD, min(count, 0xFF)))
    return out
