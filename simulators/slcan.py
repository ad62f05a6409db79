"""The SLCAN (Lawicel) ASCII protocol of USB-CAN adapters, sans-IO.

Frames travel as lines ending in CR: ``tIIILDD..`` (11-bit id), ``TIIIIIIIILDD..``
(29-bit), ``r``/``R`` for remote frames, each optionally followed by a 4-hex-digit
millisecond timestamp (``Z1``). The host configures the adapter with one-letter commands;
the adapter answers CR for OK and BEL (0x07) for an error. :class:`SlcanAdapter` is the
adapter's command interpreter as python-can's ``slcan`` interface (can/interfaces/slcan.py)
drives it: on open ``C``, ``Sn``, an empty line (no data bitrate), ``O``, and ``O`` again;
on shutdown ``C``; ``V`` and ``N`` for version and serial number.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

OK = b"\r"
ERROR = b"\a"
MAX_LINE = 64  # longer than any valid command: a runaway line is dropped, not buffered

BITRATE_COMMANDS = {
    "S0": 10_000, "S1": 20_000, "S2": 50_000, "S3": 100_000, "S4": 125_000,
    "S5": 250_000, "S6": 500_000, "S7": 750_000, "S8": 1_000_000,
    "S9": 83_300,  # python-can's extension
}


@dataclass(frozen=True, slots=True)
class SlcanFrame:
    """One frame of a line. A remote frame has no data; its ``data`` is ``dlc`` zero bytes so
    that ``len(data)`` is always the DLC."""

    arbitration_id: int
    data: bytes
    extended: bool = False
    remote: bool = False
    timestamp_ms: int | None = None


def encode_frame_line(frame: SlcanFrame) -> bytes:
    """The line (with its CR) that carries ``frame``. Raises ValueError for an id or data
    length the frame type cannot carry."""
    limit = 0x1FFFFFFF if frame.extended else 0x7FF
    if not 0 <= frame.arbitration_id <= limit:
        raise ValueError(f"id 0x{frame.arbitration_id:X} does not fit a "
                         f"{'29' if frame.extended else '11'}-bit identifier")
    if len(frame.data) > 8:
        raise ValueError(f"{len(frame.data)} data bytes; classic CAN carries at most 8")
    if frame.remote:
        letter = "R" if frame.extended else "r"
    else:
        letter = "T" if frame.extended else "t"
    ident = f"{frame.arbitration_id:08X}" if frame.extended else f"{frame.arbitration_id:03X}"
    body = "" if frame.remote else frame.data.hex().upper()
    line = f"{letter}{ident}{len(frame.data)}{body}"
    if frame.timestamp_ms is not None:
        line += f"{frame.timestamp_ms % 60_000:04X}"
    return line.encode("ascii") + OK


def decode_frame_line(line: bytes, *, timestamps: bool = False) -> SlcanFrame | None:
    """The frame of one line (CR optional), or None when it is not a well-formed frame."""
    text = line.rstrip(b"\r").decode("ascii", errors="replace")
    if not text or text[0] not in "tTrR":
        return None
    extended = text[0] in "TR"
    remote = text[0] in "rR"
    id_len = 8 if extended else 3
    if not all(ch in string.hexdigits for ch in text[1:2 + id_len]):  # int() takes " 6F", "+6F"
        return None
    try:
        arbitration_id = int(text[1:1 + id_len], 16)
        dlc = int(text[1 + id_len], 16)
    except (ValueError, IndexError):
        return None
    if dlc > 8 or len(text[1:1 + id_len]) != id_len:
        return None
    rest = text[2 + id_len:]
    data_len = 0 if remote else 2 * dlc
    try:
        data = bytes.fromhex(rest[:data_len]) if not remote else bytes(dlc)
    except ValueError:
        return None
    if len(rest) < data_len:
        return None
    tail = rest[data_len:]
    timestamp = None
    if timestamps:
        if len(tail) != 4:
            return None
        try:
            timestamp = int(tail, 16)
        except ValueError:
            return None
    elif tail:
        return None
    if arbitration_id > (0x1FFFFFFF if extended else 0x7FF):
        return None
    return SlcanFrame(arbitration_id, data, extended, remote, timestamp)


class LineSplitter:
    """Cuts the host's byte stream into command lines at CR (LF is ignored)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.overflows = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines = []
        for byte in data:
            if byte == 0x0D:
                lines.append(bytes(self._buffer))
                self._buffer.clear()
            elif byte != 0x0A:
                if len(self._buffer) >= MAX_LINE:
                    self._buffer.clear()
                    self.overflows += 1
                self._buffer.append(byte)
        return lines


class SlcanAdapter:
    """An SLCAN adapter's command state. Feed it host lines; it returns the answers.

    ``bitrate`` is None until the host sets one (the adapter then runs at whatever the bus
    runs at) and ``"custom"`` after an ``s`` (BTR) command.
    """

    def __init__(self, *, hardware_version: int = 10, software_version: int = 13,
                 serial_number: str = "CBS1", timestamps: bool = False) -> None:
        self.is_open = False
        self.listen_only = False
        self.bitrate: int | str | None = None
        self.timestamps = timestamps
        self.hardware_version = hardware_version
        self.software_version = software_version
        self.serial_number = serial_number
        self.host_frames: list[SlcanFrame] = []  # frames the host asked to transmit
        self.opened_count = 0

    def handle(self, line: bytes) -> bytes:
        text = line.decode("ascii", errors="replace")
        if not text:
            return OK  # python-can sends an empty command for "no CAN FD data bitrate"
        command = text[0]
        if command == "O" or command == "L":
            if self.is_open:
                return ERROR
            self.is_open = True
            self.listen_only = command == "L"
            self.opened_count += 1
            return OK
        if command == "C":
            self.is_open = False  # lenient: python-can closes before it configures
            return OK
        if command == "S":
            if self.is_open or text not in BITRATE_COMMANDS:
                return ERROR
            self.bitrate = BITRATE_COMMANDS[text]
            return OK
        if command == "s":
            if self.is_open or len(text) != 5:
                return ERROR
            self.bitrate = "custom"
            return OK
        if command == "Y":  # CAN FD data bitrate (CANable 2.0 firmware): accepted, unused
            return ERROR if self.is_open else OK
        if command == "V":
            return f"V{self.hardware_version:02d}{self.software_version:02d}".encode() + OK
        if command == "v":
            return f"v{self.software_version:02d}00".encode() + OK
        if command == "N":
            return f"N{self.serial_number}".encode() + OK
        if command == "F":
            return b"F00" + OK
        if command == "Z":
            if text not in ("Z0", "Z1"):
                return ERROR
            self.timestamps = text == "Z1"
            return OK
        if command in "MmXUWQPA":
            return OK
        if command in "tTrR":
            frame = decode_frame_line(line)
            if frame is None or not self.is_open or self.listen_only:
                return ERROR
            self.host_frames.append(frame)
            return (b"Z" if frame.extended else b"z") + OK
        return ERROR
