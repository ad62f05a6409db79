"""DBC-driven decoding of key-reader frames into the domain values of :mod:`key_session`.

cantools does the bit work (the DBC is the single source of truth); this module adds the
protocol's meaning: sentinels (declared as VAL_ tables in the DBC) become ``None``, and values
outside their range become an :class:`InvalidSession` carrying the spec's reason code and a
detail that names the frame and the field.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Callable, Iterable
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple, NoReturn, cast

from cantools.database.can import Database, Message
from cantools.database.conversion import IdentityConversion
from cantools.database.namedsignalvalue import NamedSignalValue

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

KEY_SESSION_START = 0x6F0
KEY_VIN = 0x6F1
KEY_VEHICLE = 0x6F2
KEY_USAGE = 0x6F3
KEY_CBS_STATUS = 0x6F4
KEY_CBS_HISTORY = 0x6F5
KEY_CHECK_CONTROL = 0x6F6
KEY_DTC = 0x6F7
KEY_SESSION_END = 0x6FF

MESSAGE_NAMES = {
    KEY_SESSION_START: "KEY_SESSION_START",
    KEY_VIN: "KEY_VIN",
    KEY_VEHICLE: "KEY_VEHICLE",
    KEY_USAGE: "KEY_USAGE",
    KEY_CBS_STATUS: "KEY_CBS_STATUS",
    KEY_CBS_HISTORY: "KEY_CBS_HISTORY",
    KEY_CHECK_CONTROL: "KEY_CHECK_CONTROL",
    KEY_DTC: "KEY_DTC",
    KEY_SESSION_END: "KEY_SESSION_END",
}

SUPPORTED_PROTOCOL_VERSION = 1
VIN_PATTERN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
FRAME_BYTES = 8

Signals = dict[str, Any]


class InvalidSession(Exception):
    """Raised inside the codec for a session that cannot be accepted; the assembler turns it
    into a rejection event and never lets it escape."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DecodedFrame(NamedTuple):
    """A data frame of a session with its signals, decoded once on arrival.

    A named tuple rather than a frozen dataclass: the assembler makes one per data frame of a
    busy bus, and a tuple is built several times faster."""

    frame: CanFrame
    position: int  # 1-based position among the session's data frames
    signals: Signals

    @property
    def name(self) -> str:
        return MESSAGE_NAMES[self.frame.arbitration_id]

    def where(self, field: str | None = None) -> str:
        base = f"{self.name} (data frame {self.position}, {self.frame})"
        return f"{base} field {field}" if field else base


_Decode = Callable[[bytes], Signals]


def _compiled_decoder(message: Message, decode_choices: bool) -> _Decode:
    """A decoder for ``message`` that returns exactly what ``message.decode(data,
    decode_choices)`` returns for 8 data bytes, without cantools' per-call overhead.

    cantools still does the bit work: the bit layouts are compiled from the DBC's signals by
    cantools' own format builder (bitstruct), unpacked as ``Message.decode`` unpacks them, and
    each signal is scaled and mapped to its choice (``NamedSignalValue``) with the same
    arithmetic as cantools' conversions. Identity signals without choices (most of them)
    cost nothing after the unpack. Messages this does not cover (multiplexed, containers,
    other lengths, float signals, or an older cantools) use ``message.decode``.
    """
    def fallback(data: bytes) -> Signals:
        return cast(Signals, message.decode(data, decode_choices=decode_choices))

    try:
        from cantools.database.utils import create_encode_decode_formats
    except ImportError:  # pragma: no cover - cantools without the public format builder
        return fallback
    if (message.length != FRAME_BYTES or message.is_container or message.is_multiplexed()
            or any(signal.is_float for signal in message.signals)):
        return fallback
    formats = create_encode_decode_formats(message.signals, message.length)
    unpack_big = formats.big_endian.unpack
    unpack_little = formats.little_endian.unpack
    steps: list[tuple[str, Any, bool, float, float]] = []
    for signal in message.signals:
        conversion = signal.conversion
        if isinstance(conversion, IdentityConversion):
            continue
        choices = conversion.choices if decode_choices and conversion.choices else None
        linear = not (conversion.scale == 1 and conversion.offset == 0)
        if choices is None and not linear:
            continue
        steps.append((signal.name, choices, linear, conversion.scale, conversion.offset))
    # Sentinel signals (a choice, scale 1, offset 0: most of the key's) need only the lookup.
    choice_only = tuple((name, choices) for name, choices, linear, _, _ in steps
                        if choices is not None and not linear)
    plan = tuple(step for step in steps if step[2])

    # A message of one byte order only (all but KEY_DTC) skips the other, empty unpack.
    has_big = any(signal.byte_order == "big_endian" for signal in message.signals)
    has_little = any(signal.byte_order == "little_endian" for signal in message.signals)

    def decode(data: bytes) -> Signals:
        signals: Signals
        if not has_big:
            signals = unpack_little(data[::-1])
        else:
            signals = unpack_big(data)
            if has_little:
                signals.update(unpack_little(data[::-1]))
        for name, choices in choice_only:
            choice = choices.get(signals[name])
            if choice is not None:
                signals[name] = choice
        for name, choices, _, scale, offset in plan:  # scaled signals, some with choices
            raw = signals[name]
            if choices is not None:
                choice = choices.get(raw)
                if choice is not None:
                    signals[name] = choice
                    continue
            signals[name] = raw * scale + offset
        return signals

    return decode


class MessageDecoders:
    """The key-reader messages of one DBC, each with a compiled decoder (see
    :func:`message_decoders`). ``data[frame_id](data)`` decodes a data frame with choices,
    ``plain[frame_id](data)`` without (START and END). Raises KeyError for an id the DBC lacks."""

    __slots__ = ("data", "plain")

    def __init__(self, db: Database) -> None:
        self.data: dict[int, _Decode] = {}
        self.plain: dict[int, _Decode] = {}
        for frame_id in MESSAGE_NAMES:
            try:
                message = db.get_message_by_frame_id(frame_id)
            except KeyError:
                continue
            self.data[frame_id] = _compiled_decoder(message, decode_choices=True)
            self.plain[frame_id] = _compiled_decoder(message, decode_choices=False)


@lru_cache(maxsize=8)
def message_decoders(db: Database) -> MessageDecoders:
    """The compiled decoders of ``db`` (cached per database object)."""
    return MessageDecoders(db)


#: The signal that tells a message's frames of one session apart (none: one frame per session).
SLOT_SIGNALS: dict[int, str | None] = {
    KEY_VIN: "VinPart", KEY_VEHICLE: None, KEY_USAGE: None, KEY_CBS_STATUS: "ItemIndex",
    KEY_CBS_HISTORY: "ItemIndex", KEY_CHECK_CONTROL: "CcIndex", KEY_DTC: "DtcIndex",
}


def _raw(value: Any) -> Any:
    return value.value if isinstance(value, NamedSignalValue) else value


def _available(value: Any) -> Any:
    """A sentinel (a DBC choice on that signal) means not available."""
    return None if isinstance(value, NamedSignalValue) else value


def _invalid(frame: DecodedFrame, field: str, message: str) -> NoReturn:
    """Raise ``invalid_value`` naming the frame and field. Callers test first and format the
    message only on failure: an f-string per check per frame would cost more than the check."""
    raise InvalidSession("invalid_value", f"{frame.where(field)}: {message}")


def _month(value: Any, frame: DecodedFrame, field: str) -> int | None:
    month = _available(value)
    if month is None:
        return None
    if not 1 <= month <= 12:
        _invalid(frame, field, f"month {month} is not 1-12")
    return int(month)


def _percentage(value: int, frame: DecodedFrame, field: str) -> int:
    if value > 100:
        _invalid(frame, field, f"{value} % is above 100")
    return int(value)


_VIN_CHARS = tuple(f"VinChar{i}" for i in range(7))


def _vin_part(frame: DecodedFrame) -> tuple[int, str]:
    s = frame.signals
    part = _raw(s["VinPart"])
    if part not in (0, 1, 2):
        _invalid(frame, "VinPart", f"part {part} is not 0, 1 or 2")
    chars = bytes([s[name] for name in _VIN_CHARS])
    if part == 2:
        if chars[3:] != b"\0\0\0\0":
            _invalid(frame, "VinChars", f"part 2 must end in four 0x00, got {chars[3:].hex().upper()}")
        chars = chars[:3]
    return part, chars.decode("latin-1")


def _vehicle(frame: DecodedFrame) -> VehicleData:
    s = frame.signals
    year, month, day = s["DataYear"], s["DataMonth"], s["DataDay"]
    if not 1 <= month <= 12:
        _invalid(frame, "DataMonth", f"month {month} is not 1-12")
    if not 1 <= day <= monthrange(year, month)[1]:
        _invalid(frame, "DataDay", f"{year}-{month:02d}-{day:02d} is not a date")
    fuel = _available(s["FuelLevelPct"])
    if fuel is not None:
        fuel = _percentage(fuel, frame, "FuelLevelPct")
    return VehicleData(s["MileageKm"], date(year, month, day), fuel,  # in field order
                       s["BuildYear"], _month(s["BuildMonth"], frame, "BuildMonth"))


def _usage(frame: DecodedFrame) -> UsageData:
    s = frame.signals
    return UsageData(
        ambient_avg_c=_available(s["AmbientAvg"]),
        ambient_min_c=_available(s["AmbientMin"]),
        ambient_max_c=_available(s["AmbientMax"]),
        hot_share_pct=_percentage(s["HotSharePct"], frame, "HotSharePct"),
        cold_share_pct=_percentage(s["ColdSharePct"], frame, "ColdSharePct"),
        short_trip_pct=_percentage(s["ShortTripPct"], frame, "ShortTripPct"),
        severe_duty_pct=_percentage(s["SevereDutyPct"], frame, "SevereDutyPct"),
        avg_trip_km=round(s["AvgTripKm"], 1),
    )


# The service-item builder (in build_key_session) and _history run for every item of every
# key read: the helpers above are inlined there (same checks, same order, same messages).

def _history(frame: DecodedFrame) -> ServiceHistory:
    s = frame.signals
    last_km = s["LastServiceKm"]
    if isinstance(last_km, NamedSignalValue):
        last_km = None
    month = s["LastServiceMonth"]
    if isinstance(month, NamedSignalValue):
        month = None
    elif 1 <= month <= 12:
        month = int(month)
    else:
        _invalid(frame, "LastServiceMonth", f"month {month} is not 1-12")
    interval_km = s["IntervalKm"]
    if isinstance(interval_km, NamedSignalValue):
        interval_km = None
    interval_months = s["IntervalMonths"]
    if isinstance(interval_months, NamedSignalValue):
        interval_months = None
    return ServiceHistory(last_km, s["LastServiceYear"], month, interval_km, interval_months)


_CC_STATUS = {1: CheckControlStatus.ACTIVE, 2: CheckControlStatus.STORED}


def _check_control(frame: DecodedFrame) -> CheckControlMessage:
    s = frame.signals
    status = _raw(s["CcStatus"])
    if status not in _CC_STATUS:
        _invalid(frame, "CcStatus", f"status {status} is neither 1 (active) nor 2 (stored)")
    return CheckControlMessage(s["CcIndex"], s["CcId"], _CC_STATUS[status], s["CcMileageKm"])


def _dtc(frame: DecodedFrame) -> StoredDtc:
    s = frame.signals
    return StoredDtc(s["DtcIndex"], s["DtcCode"], s["DtcStatus"], s["EcuAddress"], s["Occurrences"])


def build_key_session(start: Signals, frames: Iterable[DecodedFrame]) -> KeySession:
    """The domain value of a session whose framing, count and CRC already checked out.

    Raises :class:`InvalidSession` with ``invalid_value``, ``missing_vin``,
    ``missing_vehicle`` or ``orphan_history``.
    """
    slot = start["KeySlot"]
    if slot > 9:
        raise InvalidSession("invalid_value", f"KEY_SESSION_START field KeySlot: {slot} is not 0-9")
    vin_parts: dict[int, str] = {}
    vehicle: VehicleData | None = None
    usage: UsageData | None = None
    items: dict[int, DecodedFrame] = {}
    histories: dict[int, tuple[DecodedFrame, ServiceHistory]] = {}
    check_controls: list[CheckControlMessage] = []
    dtcs: list[StoredDtc] = []
    for frame in frames:  # most frequent first
        frame_id = frame[0].arbitration_id
        if frame_id == KEY_CBS_STATUS:
            items[frame[2]["ItemIndex"]] = frame  # one frame per index: the assembler's slots
        elif frame_id == KEY_CBS_HISTORY:
            histories[frame[2]["ItemIndex"]] = (frame, _history(frame))
        elif frame_id == KEY_VIN:
            part, text = _vin_part(frame)
            vin_parts[part] = text
        elif frame_id == KEY_DTC:
            dtcs.append(_dtc(frame))
        elif frame_id == KEY_CHECK_CONTROL:
            check_controls.append(_check_control(frame))
        elif frame_id == KEY_VEHICLE:
            vehicle = _vehicle(frame)
        elif frame_id == KEY_USAGE:
            usage = _usage(frame)
    missing = [str(p) for p in (0, 1, 2) if p not in vin_parts]
    if missing:
        raise InvalidSession("missing_vin", f"KEY_VIN part {', '.join(missing)} not received")
    vin = "".join(vin_parts[p] for p in (0, 1, 2))
    if not VIN_PATTERN.fullmatch(vin):
        raise InvalidSession(
            "invalid_value", f"KEY_VIN field VinChars: {vin!r} is not 17 characters of A-HJ-NPR-Z0-9")
    if vehicle is None:
        raise InvalidSession("missing_vehicle", "no KEY_VEHICLE frame in the session")
    for index, (frame, _) in histories.items():
        if index not in items:
            raise InvalidSession("orphan_history",
                                 f"{frame.where('ItemIndex')}: no KEY_CBS_STATUS for item {index}")
    services = []
    for index in sorted(items):  # _service_item, inlined: it runs for every item of every read
        frame = items[index]
        s = frame[2]
        availability = s["AvailabilityPct"]
        if availability.__class__ is NamedSignalValue:
            availability = None
        elif availability > 250:
            _invalid(frame, "AvailabilityPct", f"{availability} is reserved (251-254)")
        code = s["CbsType"]
        if code.__class__ is NamedSignalValue:
            code = code.value
        remaining = s["RemainingKm"]
        if remaining.__class__ is NamedSignalValue:
            remaining = None
        month = s["DueMonth"]
        if month.__class__ is NamedSignalValue:
            month = None
        elif not 1 <= month <= 12:
            _invalid(frame, "DueMonth", f"month {month} is not 1-12")
        history = histories.get(index)
        services.append(ServiceItem(index, code, availability, remaining, s["DueYear"], month,
                                    s["ServiceCount"], None if history is None else history[1]))
    return KeySession(
        start["SessionSeq"], start["KeyId"], slot, vin, vehicle, usage, tuple(services),
        tuple(sorted(check_controls, key=_by_index)) if check_controls else (),
        tuple(sorted(dtcs, key=_by_index)) if dtcs else ())


def _by_index(entry: CheckControlMessage | StoredDtc) -> int:
    return entry.index
