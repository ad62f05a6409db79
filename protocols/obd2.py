"""Generic OBD-II (ISO 15031-5 over ISO 15765-4) requests and responses, without I/O.

Builders return the request bytes (the ISO-TP payload); parsers take one ECU's answer and
return the value or raise :class:`~protocols.errors.MalformedResponseError`, never anything
else. Functional requests go out as single frames on 0x7DF (:func:`functional_frame`).

    01 pid           current data           -> 41 pid A B C D ...
      01 00/20/../A0   supported PIDs: 4-byte bitmap, MSB first = pid+1; the last bit says
                       whether the next bitmap exists
      01 01            monitor status: A bit 7 MIL on, A & 0x7F confirmed DTCs
      01 31            km since codes cleared, u16
      01 A6            odometer, u32 in 0.1 km
    03 / 07 / 0A     stored / pending / permanent DTCs -> 43|47|4A count (hi lo)*
    09 02            VIN                    -> 49 02 01 + 17 ASCII
    04               clear DTCs             -> 44
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from protocols.dtc import OBD_DTC_MODES, DtcRecord
from protocols.errors import MalformedResponseError, ProtocolError
from protocols.uds import NEGATIVE_RESPONSE, decode_text

FUNCTIONAL_ID: Final = 0x7DF
FIRST_REQUEST_ID: Final = 0x7E0
FIRST_RESPONSE_ID: Final = 0x7E8
MAX_ECUS: Final = 8
PADDING: Final = 0xCC

MODE_CURRENT_DATA: Final = 0x01
MODE_CLEAR: Final = 0x04
MODE_VEHICLE_INFO: Final = 0x09
POSITIVE_OFFSET: Final = 0x40

PID_MONITOR_STATUS: Final = 0x01
PID_DISTANCE_SINCE_CLEAR: Final = 0x31
PID_ODOMETER: Final = 0xA6
SUPPORT_PIDS: Final = tuple(range(0x00, 0xC0, 0x20))  # 00, 20, ... A0
INFO_VIN: Final = 0x02


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    mil_on: bool
    confirmed_dtcs: int


def request_id(responder: int) -> int:
    """The physical request id of the ECU that answers on ``responder`` (0x7E8 -> 0x7E0)."""
    return responder - FIRST_RESPONSE_ID + FIRST_REQUEST_ID


# -- requests -------------------------------------------------------------------------------


def current_data_request(pid: int) -> bytes:
    _check_byte("PID", pid)
    return bytes((MODE_CURRENT_DATA, pid))


def dtcs_request(mode: int) -> bytes:
    if mode not in OBD_DTC_MODES:
        raise ProtocolError(f"mode {mode:#x} does not report DTCs")
    return bytes((mode,))


def vehicle_info_request(info_type: int = INFO_VIN) -> bytes:
    _check_byte("info type", info_type)
    return bytes((MODE_VEHICLE_INFO, info_type))


def clear_request() -> bytes:
    return bytes((MODE_CLEAR,))


def functional_frame(payload: bytes) -> bytes:
    """The 8 data bytes of a single frame carrying ``payload`` (at most 7 bytes), padded."""
    if not 1 <= len(payload) <= 7:
        raise ProtocolError(f"a single frame carries 1 to 7 bytes, not {len(payload)}")
    return (bytes((len(payload),)) + payload).ljust(8, bytes((PADDING,)))


def _check_byte(what: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ProtocolError(f"{what} {value!r} out of range 0..0xFF")


# -- responses ------------------------------------------------------------------------------


def parse_current_data(pid: int, payload: bytes | bytearray, length: int) -> bytes:
    """The ``length`` data bytes of ``41 pid ...``."""
    _expect(payload, bytes((MODE_CURRENT_DATA + POSITIVE_OFFSET, pid)), f"01 {pid:02X}")
    data = bytes(payload[2:])
    if len(data) < length:
        raise MalformedResponseError(f"01 {pid:02X}: {len(data)} data bytes, expected {length}")
    return data[:length]


def parse_supported_pids(base: int, payload: bytes | bytearray) -> frozenset[int]:
    """The PIDs ``base+1`` .. ``base+32`` the ECU supports (the last one, ``base+32``, is the
    next bitmap's PID when it is supported)."""
    bitmap = int.from_bytes(parse_current_data(base, payload, 4), "big")
    return frozenset(base + 1 + bit for bit in range(32) if bitmap & (1 << (31 - bit)))


def parse_monitor_status(payload: bytes | bytearray) -> MonitorStatus:
    a = parse_current_data(PID_MONITOR_STATUS, payload, 4)[0]
    return MonitorStatus(bool(a & 0x80), a & 0x7F)


def parse_distance_since_clear(payload: bytes | bytearray) -> int:
    return int.from_bytes(parse_current_data(PID_DISTANCE_SINCE_CLEAR, payload, 2), "big")


def parse_odometer_km(payload: bytes | bytearray) -> int:
    """The odometer in whole km (the PID counts 0.1 km)."""
    return int.from_bytes(parse_current_data(PID_ODOMETER, payload, 4), "big") // 10


def parse_dtcs(mode: int, payload: bytes | bytearray) -> tuple[DtcRecord, ...]:
    """``4m count`` then 2 bytes per DTC (ISO 15765-4 puts the count first on CAN)."""
    _expect(payload, bytes(((mode + POSITIVE_OFFSET) & 0xFF,)), f"{mode:02X}")
    if len(payload) < 2:
        raise MalformedResponseError(f"{mode:02X}: no DTC count")
    count = payload[1]
    body = bytes(payload[2:])
    if len(body) < 2 * count:
        raise MalformedResponseError(f"{mode:02X}: {count} DTCs announced, {len(body) // 2} sent")
    return tuple(DtcRecord(int.from_bytes(body[2 * i:2 * i + 2], "big"), 2, None, mode)
                 for i in range(count))


def parse_vin(payload: bytes | bytearray) -> str:
    """``49 02 01`` + 17 ASCII (trailing NULs and spaces trimmed)."""
    _expect(payload, bytes((MODE_VEHICLE_INFO + POSITIVE_OFFSET, INFO_VIN)), "09 02")
    if len(payload) < 3:
        raise MalformedResponseError("09 02: no item count")
    return decode_text(payload[3:])


def parse_clear(payload: bytes | bytearray) -> None:
    _expect(payload, bytes((MODE_CLEAR + POSITIVE_OFFSET,)), "04")


def _expect(payload: bytes | bytearray, head: bytes, what: str) -> None:
    if not isinstance(payload, bytes | bytearray):
        raise MalformedResponseError(f"{what}: not bytes")
    if len(payload) >= 1 and payload[0] == NEGATIVE_RESPONSE:
        nrc = payload[2] if len(payload) >= 3 else None
        raise MalformedResponseError(f"{what}: negative response "
                                     f"{'' if nrc is None else f'0x{nrc:02X}'}".rstrip())
    if bytes(payload[:len(head)]) != head:
        raise MalformedResponseError(f"{what}: answer {bytes(payload[:8]).hex().upper()} "
                                     f"does not start {head.hex().upper()}")


# -- the ECU's side (simulators) ------------------------------------------------------------


def supported_bitmap(supported: Iterable[int], base: int) -> bytes:
    """The 4-byte bitmap of ``01 base`` for the PIDs in ``supported``."""
    bitmap = 0
    for pid in supported:
        if base < pid <= base + 32:
            bitmap |= 1 << (31 - (pid - base - 1))
    return bitmap.to_bytes(4, "big")


def dtcs_response(mode: int, codes: Iterable[int]) -> bytes:
    listed = list(codes)
    out = bytearray(((mode + POSITIVE_OFFSET) & 0xFF, len(listed) & 0xFF))
    for code in listed:
        out += (code & 0xFFFF).to_bytes(2, "big")
    return bytes(out)


def vin_response(vin: str) -> bytes:
    return bytes((MODE_VEHICLE_INFO + POSITIVE_OFFSET, INFO_VIN, 0x01)) + vin.encode("ascii")
