"""Reading captures for ``cbs-agent decode``: raw serial bytes from a reader, or any CAN log
python-can reads (candump ``.log``, Vector ``.asc``, ``.blf``, ``.trc``, ``.csv``), or what
``candump`` prints on screen (``can0  6F0   [8]  00 11 22 ...``, with or without times of
``-ta``/``-tA``/``-tz`` and the ``-a`` ASCII column; parsed here,
:func:`parse_candump_screen_line`).

Times: a CAN log's frames keep their own times. An ``.asc`` file's are relative to its ``date``
(or ``Begin Triggerblock``) line, read in this machine's time zone; a file without one is
refused rather than dated 1970. Serial captures, and screen output without times, carry none:
their frames get ``serial_time``; relative screen times (``-tz``) count from it.

A capture yields the same :data:`~agent.readers.base.ReaderEvent` values as a live reader. A file
that breaks off or turns to garbage mid-way yields what was readable and then raises
:class:`CaptureError`, so the caller can still print what it decoded.

Size: every format is read as it goes, in constant memory. candump logs are read by
:mod:`agent.readers.candump_log`, which builds frames only for ``wanted_ids`` (the key
reader's, from its DBC) and counts the rest as other traffic. A capture on standard input
(:class:`StreamCapture`) is read as it comes for serial bytes and both candump forms; for the
formats python-can reads from a file (``.asc``: its frame lines are counted in a second pass;
``.blf``: its header's file size is checked against the file; ``.trc``, ``.csv``) it is
copied to a temporary file first.
"""

from __future__ import annotations

import codecs
import io
import locale
import logging
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import can

from agent.errors import CaptureCorruptError, CaptureError, CaptureUnreadableError
from agent.readers.base import ReaderCounters, ReaderEvent
from agent.readers.candump_log import CandumpLineError, CandumpLogScanner
from agent.readers.serial_reader import serial_frame_events
from protocols.can_frame import CanFrame
from protocols.serial_framing import SerialFrameDecoder

log = logging.getLogger(__name__)

CAN_LOG_FORMATS = {"candump": ".log", "asc": ".asc", "blf": ".blf", "trc": ".trc", "csv": ".csv"}
FORMATS = ("auto", "serial", *CAN_LOG_FORMATS)
#: Called now and then with (bytes read, bytes in the file) while a capture is read.
ProgressCallback = Callable[[int, int], None]
PROGRESS_EVERY_FRAMES = 2048
READ_CHUNK = 1 << 20
HEAD_BYTES = 512
_READERS = {"candump": can.CanutilsLogReader, "asc": can.ASCReader, "blf": can.BLFReader,
            "trc": can.TRCReader, "csv": can.CSVReader}


class StreamCapture:
    """A capture on a stream that cannot seek (standard input): its first bytes are read at
    once, to tell its format, the rest as it is decoded, never all of it at once."""

    def __init__(self, stream: BinaryIO, name: str = "-") -> None:
        self.name = name
        self._stream = stream
        head = b""
        while len(head) < HEAD_BYTES:  # a pipe may hand over fewer bytes per read
            more = stream.read(HEAD_BYTES - len(head))
            if not more:
                break
            head += more
        self.head = head
        self.bytes_read = len(head)
        self._started = False

    def __str__(self) -> str:
        return self.name

    def chunks(self, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The stream's bytes from its start; once only."""
        if self._started:
            raise CaptureUnreadableError(f"{self.name}: a stream can be read only once")
        self._started = True
        if self.head:
            yield self.head
        read = getattr(self._stream, "read1", self._stream.read)  # what has come, not `size`
        while chunk := read(size):
            self.bytes_read += len(chunk)
            yield chunk


#: Where a capture comes from: a file, or standard input.
CaptureSource = Path | StreamCapture


def detect_format(path: CaptureSource) -> str:
    """The format of ``path`` by its extension, else by a look at its first bytes."""
    if isinstance(path, StreamCapture):
        return detect_format_of(path.head)
    suffix = path.suffix.lower()
    for name, ext in CAN_LOG_FORMATS.items():
        if suffix == ext:
            return name
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        raise CaptureUnreadableError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return detect_format_of(head)


def detect_format_of(head: bytes) -> str:
    """The format of a capture from its first bytes (for stdin, and files without a known
    extension): candump log or screen output, Vector ASC, BLF, else raw serial bytes."""
    text = head.lstrip()
    first_line = text.split(b"\n", 1)[0].decode("ascii", "replace")
    if text.startswith(b"LOGG"):
        return "blf"
    if _SCREEN_LINE.match(first_line):
        return "candump"
    if text.startswith(b"("):
        return "candump"
    if re.match(rb"(?i)(date|base\s+(hex|dec))\s", text):
        return "asc"
    return "serial"


def read_capture(path: CaptureSource, fmt: str, counters: ReaderCounters, *,
                 serial_time: float,
                 progress: ProgressCallback | None = None,
                 wanted_ids: Collection[int] | None = None) -> Iterator[ReaderEvent]:
    """Events of the capture at ``path``. Serial captures carry no time: every frame gets
    ``serial_time`` (the time of decoding). ``progress`` is called now and then with the
    bytes read so far and the file's size (0 for a stream). CAN frames of 11-bit ids not
    in ``wanted_ids`` (when given) are counted as other traffic, not yielded."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "serial":
        yield from _read_serial(path, counters, serial_time, progress)
    elif fmt == "candump" and _is_screen_output(path):
        yield from _read_candump_screen(path, counters, serial_time, progress, wanted_ids)
    elif fmt == "candump":
        yield from _read_candump_log(path, counters, progress, wanted_ids)
    elif fmt in _READERS and isinstance(path, StreamCapture):
        yield from _read_spooled(path, fmt, counters, progress, wanted_ids)
    elif fmt in _READERS:
        yield from _read_can_log(path, fmt, counters, progress, wanted_ids)
    else:
        raise CaptureUnreadableError(f"{path}: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def _size(path: CaptureSource) -> int:
    if isinstance(path, StreamCapture):
        return 0
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _chunks(path: CaptureSource, size: int) -> Iterator[bytes]:
    if isinstance(path, StreamCapture):
        yield from path.chunks(size)
        return
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CaptureUnreadableError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        while chunk := handle.read(size):
            yield chunk


def _text_chunks(path: CaptureSource, encoding: str, errors: str = "strict") -> Iterator[str]:
    """The capture's text as a file opened in text mode reads it (universal newlines: lines
    end with ``\n``), a block at a time; raises UnicodeDecodeError where it is not text."""
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder(encoding)(errors),
                                           translate=True)
    for chunk in _chunks(path, READ_CHUNK):
        if text := decoder.decode(chunk):
            yield text
    if text := decoder.decode(b"", final=True):
        yield text


def _text_lines(path: CaptureSource, encoding: str, errors: str) -> Iterator[str]:
    """The capture's lines, each with its ``\n`` (the last one may have none)."""
    pending = ""
    for text in _text_chunks(path, encoding, errors):
        lines = (pending + text).split("\n")
        pending = lines.pop()
        for line in lines:
            yield line + "\n"
    if pending:
        yield pending


def _read_serial(path: CaptureSource, counters: ReaderCounters, now: float,
                 progress: ProgressCallback | None) -> Iterator[ReaderEvent]:
    decoder = SerialFrameDecoder()
    total = _size(path)
    done = 0
    for chunk in _chunks(path, 65536):
        done += len(chunk)
        yield from serial_frame_events(decoder.feed(chunk, now), counters)
        if progress is not None:
            progress(done, total)
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


def _read_candump_log(path: CaptureSource, counters: ReaderCounters,
                      progress: ProgressCallback | None,
                      wanted_ids: Collection[int] | None) -> Iterator[ReaderEvent]:
    """A candump log, read as python-can's reader reads it (same text encoding, same lines
    accepted and refused), but building frames only for the wanted ids."""
    scanner = CandumpLogScanner(wanted_ids)
    total = _size(path)
    done = 0
    try:
        for text in _text_chunks(path, locale.getpreferredencoding(False)):
            done += len(text)
            yield from scanner.feed(text)
            _add_counts(counters, scanner)
            if progress is not None:
                progress(done, total)
        yield from scanner.finish()
    except CandumpLineError as exc:
        raise CaptureCorruptError(f"{path}: corrupt candump capture after message "
                                  f"{exc.messages}: {exc}") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise CaptureCorruptError(f"{path}: corrupt candump capture after message "
                                  f"{scanner.messages}: {type(exc).__name__}: {exc}") from exc
    finally:
        _add_counts(counters, scanner)
    if progress is not None:
        progress(done, total)


def _add_counts(counters: ReaderCounters, scanner: CandumpLogScanner) -> None:
    """Move what the scanner counted since the last call into ``counters``."""
    counters.frames += scanner.frames
    counters.bus_errors += scanner.bus_errors
    if scanner.other_traffic:
        counters.dropped["other_traffic"] = (counters.dropped.get("other_traffic", 0)
                                             + scanner.other_traffic)
    scanner.frames = scanner.bus_errors = scanner.other_traffic = 0


def _read_spooled(stream: StreamCapture, fmt: str, counters: ReaderCounters,
                  progress: ProgressCallback | None,
                  wanted_ids: Collection[int] | None) -> Iterator[ReaderEvent]:
    """A format python-can reads from a file only: the stream is copied to one first, and
    messages name the stream."""
    with tempfile.TemporaryDirectory(prefix="cbs-decode-") as directory:
        copy = Path(directory) / f"stdin{CAN_LOG_FORMATS[fmt]}"
        with copy.open("wb") as handle:
            for chunk in stream.chunks():
                handle.write(chunk)
        try:
            yield from _read_can_log(copy, fmt, counters, progress, wanted_ids)
        except CaptureError as exc:
            raise type(exc)(str(exc).replace(str(copy), stream.name)) from exc


def _read_can_log(path: Path, fmt: str, counters: ReaderCounters,
                  progress: ProgressCallback | None,
                  wanted_ids: Collection[int] | None = None) -> Iterator[ReaderEvent]:
    complaints = _ParseComplaints()
    can_logger = logging.getLogger("can")
    can_logger.addHandler(complaints)
    try:
        yield from _iterate_can_log(path, fmt, counters, progress, wanted_ids)
    finally:
        can_logger.removeHandler(complaints)
    if complaints.messages:
        raise CaptureCorruptError(f"{path}: corrupt {fmt} capture: {len(complaints.messages)} record(s) "
                           f"could not be read, the first: {complaints.messages[0]}")


# 9999-12-31T23:59:59Z: a payload's time must fit a datetime (found by the capture fuzzer).
_LAST_TIMESTAMP_S = 253_402_300_799.0


def _iterate_can_log(path: Path, fmt: str, counters: ReaderCounters,
                     progress: ProgressCallback | None,
                     wanted_ids: Collection[int] | None) -> Iterator[ReaderEvent]:
    options = {"relative_timestamp": False} if fmt == "asc" else {}
    try:
        reader = _READERS[fmt](str(path), **options)
    except OSError as exc:
        raise CaptureUnreadableError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except Exception as exc:  # python-can readers raise what their parsers raise
        raise CaptureCorruptError(f"{path}: not a readable {fmt} capture: {exc}") from exc
    count = 0
    total = _size(path) if progress is not None else 0
    try:
        for message in reader:
            count += 1
            if fmt == "asc" and count == 1 and getattr(reader, "date", None) is None:
                raise CaptureUnreadableError(
                    f"{path}: the asc capture has no 'date' line, so when its frames were "
                    "read is unknown (its times count from that line); add one, e.g. "
                    "'date Fri Nov 27 09:15:02.123 am 2026'")
            if progress is not None and count % PROGRESS_EVERY_FRAMES == 0:
                progress(_position(reader), total)
            if message.is_error_frame:
                counters.bus_errors += 1
                continue
            if message.is_extended_id or message.is_remote_frame or message.is_fd:
                counters.dropped["other_traffic"] = counters.dropped.get("other_traffic", 0) + 1
                continue
            if not 0.0 <= message.timestamp <= _LAST_TIMESTAMP_S:  # NaN fails this too
                raise ValueError(f"timestamp {message.timestamp!r} is not a time")
            if wanted_ids is not None and message.arbitration_id not in wanted_ids:
                counters.dropped["other_traffic"] = counters.dropped.get("other_traffic", 0) + 1
                continue
            counters.frames += 1
            yield CanFrame(message.arbitration_id, bytes(message.data), message.timestamp)
    except CaptureUnreadableError:
        raise
    except Exception as exc:  # a corrupt record mid-file: keep what came before
        raise CaptureCorruptError(f"{path}: corrupt {fmt} capture after message {count}: "
                           f"{type(exc).__name__}: {exc}") from exc
    finally:
        stop = getattr(reader, "stop", None)
        if stop is not None:
            stop()
    if progress is not None:
        progress(total, total)
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
    with path.open("rb") as handle:  # a line at a time: an .asc file may be of any size
        lines = sum(1 for line in handle if _ASC_FRAME_LINE.match(line))
    if lines > messages:
        raise CaptureCorruptError(f"{path}: corrupt asc capture: {lines - messages} of {lines} frame "
                           f"lines could not be read")


def _position(reader: object) -> int:
    """How far python-can's reader has read its file (the descriptor's offset: ahead of the
    parser by at most a buffer, good enough for progress)."""
    handle = getattr(reader, "file", None)
    try:
        return os.lseek(handle.fileno(), 0, os.SEEK_CUR) if handle is not None else 0
    except (OSError, ValueError, AttributeError):
        return 0


# -- candump's screen output ---------------------------------------------------------------------

# ` (1795770902.123456)  can0  6F0   [8]  00 11 22 33 44 55 66 77` (-ta), the same with
# `(2026-11-27 09:15:02.123456)` (-tA) or no time at all; `[08]` for CAN FD lengths.
_SCREEN_LINE = re.compile(
    r"^\s*(?:\((?P<time>[^)]*)\)\s+)?(?P<channel>[A-Za-z][\w.-]*)\s+(?P<id>[0-9A-Fa-f]{1,8})\s+"
    r"\[(?P<length>\d{1,2})\]\s*(?P<rest>.*)$")
_SCREEN_DATA = re.compile(r"(?:[0-9A-Fa-f]{2}(?:\s+|$))*")
_ASCII_TAIL = re.compile(r"\s+'.*'$")
# `-tz` (since the first frame) and `-td` (since the previous one) print small numbers; an
# epoch time (-ta) is larger than this (2001-09-09).
_RELATIVE_BELOW_S = 1e9


def _is_screen_output(path: CaptureSource) -> bool:
    if isinstance(path, StreamCapture):
        head = path.head
    else:
        try:
            with path.open("rb") as handle:
                head = handle.read(HEAD_BYTES)
        except OSError:
            return False  # the log reader says why
    first = head.lstrip().split(b"\n", 1)[0].decode("ascii", "replace")
    return _SCREEN_LINE.match(first) is not None


def parse_candump_screen_line(line: str) -> tuple[float | None, int, bytes, bool] | None:
    """``(time or None, id, data, standard)`` of one line of candump's screen output, or None
    when the line is not one. ``standard`` is False for 29-bit ids, remote and FD frames.
    Raises ValueError for a line that looks like one but is inconsistent."""
    match = _SCREEN_LINE.match(line)
    if match is None:
        return None
    stamp = match.group("time")
    moment: float | None = None
    if stamp is not None:
        stamp = stamp.strip()
        try:
            moment = float(stamp)
        except ValueError:
            moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if not 0.0 <= moment <= _LAST_TIMESTAMP_S:
            raise ValueError(f"time {stamp!r} is not a time")
    ident = match.group("id")
    length = int(match.group("length"))
    rest = _ASCII_TAIL.sub("", match.group("rest").strip())  # candump -a
    if "remote request" in rest:
        return moment, int(ident, 16), b"", False
    if not _SCREEN_DATA.fullmatch(rest):
        raise ValueError(f"data {rest!r} is not hex bytes")
    data = bytes.fromhex(rest)
    if len(data) != length:
        raise ValueError(f"[{length}] but {len(data)} data bytes")
    standard = len(ident) <= 3 and length <= 8 and len(match.group("length")) == 1
    return moment, int(ident, 16), data, standard


def _read_candump_screen(path: CaptureSource, counters: ReaderCounters, now: float,
                         progress: ProgressCallback | None,
                         wanted_ids: Collection[int] | None) -> Iterator[ReaderEvent]:
    total = _size(path)
    done = 0
    last_offset = 0.0
    for number, line in enumerate(_text_lines(path, "utf-8", "replace"), 1):
        done += len(line)
        if progress is not None and number % PROGRESS_EVERY_FRAMES == 0:
            progress(done, total)
        if not line.strip():
            continue
        try:
            parsed = parse_candump_screen_line(line)
            if parsed is None:
                raise ValueError("not a line of candump's output")
        except ValueError as exc:
            raise CaptureCorruptError(f"{path}: corrupt candump output at line {number}: "
                                      f"{exc}") from exc
        moment, ident, data, standard = parsed
        if moment is not None and moment < _RELATIVE_BELOW_S:
            # -tz's times since the first frame, counted from the time of decoding. -td's
            # times since the previous frame cannot be told from them until one goes
            # backwards; then the capture is refused rather than misread.
            if moment < last_offset:
                raise CaptureCorruptError(
                    f"{path}: relative times go backwards at line {number} (candump -td?): "
                    "record with -ta, -tA or -tz")
            last_offset = moment
            moment = now + moment
        if not standard or (wanted_ids is not None and ident not in wanted_ids):
            counters.dropped["other_traffic"] = counters.dropped.get("other_traffic", 0) + 1
            continue
        counters.frames += 1
        yield CanFrame(ident, data, now if moment is None else moment)
    if progress is not None:
        progress(total, total)
