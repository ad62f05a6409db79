"""candump log lines (``candump -L``, python-can's ``.log``) read fast, keeping only the
frames that are wanted: sans-IO (text in, :class:`CanFrame` out), for ``cbs-agent decode``.

python-can's ``CanutilsLogReader`` builds a ``can.Message`` for every line. On a busy bus
three frames in four are other ECUs' traffic that ``decode`` throws away, and building their
messages was most of the time ``decode`` spent (docs/performance.md, section 8). The scanner
here reads the text a block of lines at a time:

* A block whose every line has the plain form that candump and python-can write,
  ``(1700000000.000100) can0 6F0#0011223344556677`` (an optional `` R``/`` T`` after it; ids of
  three upper-case hex digits, hex data, a time of at most 11 integer digits), is
  checked with one regular expression over the whole block; a second one finds the lines of
  the wanted ids, and only those are turned into frames. The others are only counted.
* Any other block (29-bit ids, CAN FD ``##``, remote frames, error frames, blank lines, lower
  case, odd spacing, garbage) is read line by line by :func:`parse_candump_log_line`, which
  does what python-can's reader does with a line, step by step, so that ``decode`` accepts,
  drops and refuses exactly the lines it did when it read through python-can.

The wanted ids come from the caller (``decode`` takes them from the key reader's DBC).
Memory is one block and one partial line: a line longer than :data:`MAX_LINE_CHARS` (no
candump line is longer than ~300 characters) is refused rather than gathered without end.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from typing import NamedTuple

from protocols.can_frame import CanFrame

#: python-can's flags (can/io/canutils.py): an id with both is an error frame.
CAN_ERR_FLAG = 0x20000000
CAN_ERR_BUSERROR = 0x00000080
#: A payload's time must fit a datetime: 9999-12-31T23:59:59Z (found by the capture fuzzer).
LAST_TIMESTAMP_S = 253_402_300_799.0
MAX_LINE_CHARS = 65536

BUS_ERROR = "bus_error"
OTHER_TRAFFIC = "other_traffic"

# The plain form, a whole block of it. An 11-digit time stays below LAST_TIMESTAMP_S, so a
# block that matches needs no time check; three hex digits are an 11-bit id (python-can:
# "longer than 3 is extended"), never an error frame.
_PLAIN_BLOCK = re.compile(  # possessive: each part ends where the next one's characters begin
    r"(?:\([0-9]{1,11}+(?:\.[0-9]{1,9}+)?+\) [A-Za-z0-9_.-]{1,64}+ [0-9A-F]{3}#[0-9A-Fa-f]*+"
    r"(?: [RT])?+\n)*+")


class CandumpLineError(ValueError):
    """A line python-can's reader would fail on, or a frame with a time that is not one.
    ``messages`` is how many records were read up to it (those python-can's reader yielded;
    with the frame of a bad time, as ``decode`` has always counted), ``cause`` the error."""

    def __init__(self, messages: int, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.messages = messages
        self.cause = cause


class CandumpRecord(NamedTuple):
    """One non-blank line: ``kind`` is None for an 11-bit data frame (then ``arbitration_id``,
    ``data`` and ``timestamp`` are its own), else BUS_ERROR or OTHER_TRAFFIC (29-bit, remote
    or CAN FD: not the key reader's)."""

    kind: str | None
    arbitration_id: int = 0
    data: bytes = b""
    timestamp: float = 0.0


def parse_candump_log_line(line: str) -> CandumpRecord | None:
    """One line as python-can 4.x's ``CanutilsLogReader`` reads it (None for a blank line).
    Raises what that reader raises on the line (ValueError, IndexError). The time is not
    checked here (see :func:`is_a_time`)."""
    temp = line.strip()
    if not temp:
        return None
    if temp[-2:].lower() in (" r", " t"):
        timestamp_string, _channel, frame, _rx = temp.split()
    else:
        timestamp_string, _channel, frame = temp.split()
    timestamp = float(timestamp_string[1:-1])
    can_id_string, data = frame.split("#", maxsplit=1)
    is_extended = len(can_id_string) > 3
    can_id = int(can_id_string, 16)
    is_fd = False
    if data and data[0] == "#":
        is_fd = True
        int(data[1])  # the FD flags: python-can reads them, a bad one fails the line
        data = data[2:]
    is_remote = bool(data) and data[0].lower() == "r"
    if is_remote:
        if len(data) > 1:
            int(data[1:])  # the DLC of a remote frame
        payload = b""
    else:
        collected = bytearray()
        for i in range(0, len(data), 2):
            collected.append(int(data[i:i + 2], 16))
        payload = bytes(collected)
    if can_id & CAN_ERR_FLAG and can_id & CAN_ERR_BUSERROR:
        return CandumpRecord(BUS_ERROR)
    if is_extended or is_remote or is_fd:
        return CandumpRecord(OTHER_TRAFFIC)
    return CandumpRecord(None, can_id & 0x1FFFFFFF, payload, timestamp)


def is_a_time(timestamp: float) -> bool:
    """A data frame's time must be one a payload can carry (``decode`` refuses the capture
    at a frame whose time is not, of any id). NaN is not."""
    return 0.0 <= timestamp <= LAST_TIMESTAMP_S


def _odd_hex_bytes(data: str) -> bytes:
    return bytes(int(data[i:i + 2], 16) for i in range(0, len(data), 2))


def _wanted_lines(wanted_ids: Collection[int] | None) -> re.Pattern[str]:
    """The lines of a plain block to build frames of: those of the wanted 11-bit ids (any
    11-bit id when None)."""
    if wanted_ids is None:
        ids = "[0-9A-F]{3}"
    else:
        # An id that matches no three-digit form (none at all) must match no line.
        ids = "|".join(f"{ident:03X}" for ident in sorted(wanted_ids) if 0 <= ident <= 0xFFF)
        ids = ids or "(?!)"
    return re.compile(rf"^\(([0-9]+(?:\.[0-9]*)?)\) [^ ]+ ({ids})#([0-9A-Fa-f]*)", re.MULTILINE)


class CandumpLogScanner:
    """Feed text as it comes (any split); get the wanted frames. Counts what it passes over:
    ``messages`` records in all (blank lines are none), ``other_traffic`` (unwanted ids,
    29-bit, remote, FD) and ``bus_errors``; ``frames`` were delivered."""

    def __init__(self, wanted_ids: Collection[int] | None = None) -> None:
        self._wanted = None if wanted_ids is None else frozenset(wanted_ids)
        self._wanted_lines = _wanted_lines(self._wanted)
        self._pending = ""
        self.messages = 0
        self.frames = 0
        self.other_traffic = 0
        self.bus_errors = 0

    def feed(self, text: str) -> Iterator[CanFrame]:
        """The frames of the complete lines in ``text`` (after what came before); the last
        line waits for its end. ``text`` is as a file opened in text mode reads it (lines end
        with ``\n``, as python-can's reader sees them). Raises CandumpLineError at a line python-can would fail
        on, after the frames before it."""
        end = text.rfind("\n")
        if end < 0:
            self._pending += text
            if len(self._pending) > MAX_LINE_CHARS:
                self._refuse_long_line()
            return
        block = self._pending + text[:end + 1] if self._pending else text[:end + 1]
        self._pending = text[end + 1:]
        if _PLAIN_BLOCK.fullmatch(block) is not None:
            yield from self._plain(block)
        else:
            yield from self._lines(block)
        if len(self._pending) > MAX_LINE_CHARS:
            self._refuse_long_line()

    def finish(self) -> Iterator[CanFrame]:
        """The frame of a last line without a line end."""
        rest, self._pending = self._pending, ""
        if rest:
            yield from self._lines(rest)

    def _plain(self, block: str) -> Iterator[CanFrame]:
        lines = block.count("\n")
        found = 0
        frame = CanFrame
        fromhex = bytes.fromhex
        for match in self._wanted_lines.finditer(block):
            stamp, ident, data = match.groups()
            found += 1
            # python-can reads an odd last digit as a byte of its own; fromhex refuses it
            payload = fromhex(data) if not len(data) & 1 else _odd_hex_bytes(data)
            yield frame(int(ident, 16), payload, float(stamp))
        self.messages += lines
        self.frames += found
        self.other_traffic += lines - found

    def _lines(self, block: str) -> Iterator[CanFrame]:
        wanted = self._wanted
        for line in block.split("\n"):  # text-mode reads end lines with \n only
            if len(line) > MAX_LINE_CHARS:
                self._refuse_long_line()
            try:
                record = parse_candump_log_line(line)
            except Exception as exc:  # what python-can's reader raises on the line
                raise CandumpLineError(self.messages, exc) from exc
            if record is None:
                continue
            self.messages += 1
            if record.kind is None and not is_a_time(record.timestamp):
                raise CandumpLineError(self.messages, ValueError(
                    f"timestamp {record.timestamp!r} is not a time"))
            if record.kind == BUS_ERROR:
                self.bus_errors += 1
            elif record.kind is not None or (wanted is not None
                                             and record.arbitration_id not in wanted):
                self.other_traffic += 1
            else:
                self.frames += 1
                yield CanFrame(record.arbitration_id, record.data, record.timestamp)

    def _refuse_long_line(self) -> None:
        self._pending = ""
        raise CandumpLineError(self.messages, ValueError(
            f"a line longer than {MAX_LINE_CHARS} characters is not a candump line"))
