"""Reading captures for ``cbs-agent decode``: raw serial bytes from a reader, or any CAN log
python-can reads (candump ``.log``, Vector ``.asc``, ``.blf``, ``.trc``, ``.csv``).

A capture yields the same :data:`~agent.readers.base.ReaderEvent` values as a live reader. A file
that breaks off or turns to garbage mid-way yields what was readable and then raises
:class:`CaptureError`, so the caller can still print what it decoded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import can

from agent.errors import CaptureCorruptError, CaptureUnreadableError
from agent.readers.base import ReaderCounters, ReaderEvent
from agent.readers.serial_reader import serial_frame_events
from protocols.can_frame import CanFrame
from protocols.serial_framing import SerialFrameDecoder

log = logging.getLogger(__name__)

CAN_LOG_FORMATS = {"candump": ".log", "asc": ".asc", "blf": ".blf", "trc": ".trc", "csv": ".csv"}
FORMATS = ("auto", "serial", *CAN_LOG_FORMATS)
_READERS = {"candump": can.CanutilsLogReader, "asc": can.ASCReader, "blf": can.BLFReader,
            "trc": can.TRCReader, "csv": can.CSVReader}


def detect_format(path: Path) -> str:
    """The format of ``path`` by its extension, else by a look at its first bytes."""
    suffix = path.suffix.lower()
    for name, ext in CAN_LOG_FORMATS.items():
        if suffix == ext:
            return name
    try:
        head = path.read_bytes()[:64]
    except OSError as exc:
        raise CaptureUnreadableError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return "candump" if head.lstrip().startswith(b"(") else "serial"


def read_capture(path: Path, fmt: str, counters: ReaderCounters, *,
                 serial_time: float) -> Iterator[ReaderEvent]:
    """Events of the capture at ``path``. Serial captures carry no time: every frame gets
    ``serial_time`` (the time of decoding)."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "serial":
        yield from _read_serial(path, counters, serial_time)
    elif fmt in _READERS:
        yield from _read_can_log(path, fmt, counters)
    else:
        raise CaptureUnreadableError(f"{path}: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def _read_serial(path: Path, counters: ReaderCounters, now: float) -> Iterator[ReaderEvent]:
    decoder = SerialFrameDecoder()
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CaptureUnreadableError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        while chunk := handle.read(65536):
            yield from serial_frame_events(decoder.feed(chunk, now), counters)
    counters.bad_frames += decoder.bad_frames
    counters.ignored_bytes += decoder.ignored_bytes + decoder.buffered
    if decoder.buffered:
        raise CaptureCorruptError(f"{path}: truncated: the last {decoder.buffered} bytes are an incomplete frame")


class _ParseComplaints(logging.Handler):
    """Collects what python-can's readers log instead of raising: the text readers (ASC, TRC)
    skip a line they cannot parse with a warning, and a capture with such lines is corrupt."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _read_can_log(path: Path, fmt: str, counters: ReaderCounters) -> Iterator[ReaderEvent]:
    complaints = _ParseComplaints()
    can_logger = logging.getLogger("can")
    can_logger.addHandler(complaints)
    try:
        yield from _iterate_can_log(path, fmt, counters)
    finally:
        can_logger.removeHandler(complaints)
    if complaints.messages:
        raise CaptureCorruptError(f"{path}: corrupt {fmt} capture: {len(complaints.messages)} record(s) "
                           f"could not be read, the first: {complaints.messages[0]}")


# 9999-12-31T23:59:59Z: a payload's time must fit a datetime (found by the capture fuzzer).
_LAST_TIMESTAMP_S = 253_402_300_799.0


def _iterate_can_log(path: Path, fmt: str, counters: ReaderCounters) -> Iterator[ReaderEvent]:
    try:
        reader = _READERS[fmt](str(path))
    except OSError as exc:
        raise CaptureUnreadableError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except Exception as exc:  # python-can readers raise what their parsers raise
        raise CaptureCorruptError(f"{path}: not a readable {fmt} capture: {exc}") from exc
    count = 0
    try:
        for message in reader:
            count += 1
            if message.is_error_frame:
                counters.bus_errors += 1
                continue
            if message.is_extended_id or message.is_remote_frame or message.is_fd:
                counters.dropped["other_traffic"] = counters.dropped.get("other_traffic", 0) + 1
                continue
            if not 0.0 <= message.timestamp <= _LAST_TIMESTAMP_S:  # NaN fails this too
                raise ValueError(f"timestamp {message.timestamp!r} is not a time")
            counters.frames += 1
            yield CanFrame(message.arbitration_id, bytes(message.data), message.timestamp)
    except Exception as exc:  # a corrupt record mid-file: keep what came before
        raise CaptureCorruptError(f"{path}: corrupt {fmt} capture after message {count}: "
                           f"{type(exc).__name__}: {exc}") from exc
    finally:
        stop = getattr(reader, "stop", None)
        if stop is not None:
            stop()
    if fmt == "asc":
        _check_asc_lines(path, count)
    declared = getattr(reader, "file_size", None)  # BLF headers carry the file's size
    if fmt == "blf" and declared:
        actual = path.stat().st_size
        if actual < declared:
            raise CaptureCorruptError(f"{path}: truncated blf capture: {actual} of {declared} bytes "
                               f"(read {count} messages)")


_ASC_FRAME_LINE = re.compile(rb"^\s*\d+\.\d+\s+\d+\s+[0-9A-Fa-f]+x?\s+(?:Rx|Tx)")


def _check_asc_lines(path: Path, messages: int) -> None:
    """python-can's ASC reader passes over a frame line it cannot parse without a word (an ASC
    file holds many kinds of events); count the frame lines so a corrupt one is noticed."""
    lines = sum(1 for line in path.read_bytes().splitlines() if _ASC_FRAME_LINE.match(line))
    if lines > messages:
        raise CaptureCorruptError(f"{path}: corrupt asc capture: {lines - messages} of {lines} frame "
                           f"lines could not be read")
