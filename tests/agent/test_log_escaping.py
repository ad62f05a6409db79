"""A reader cannot forge log lines: what a device sends is escaped in every log format.

Before the fix a READER_FAULT frame's text went into the text log as it came: a ``\\n`` and a
fake ``readout ...`` line became a line of its own (which the log-as-receipt reading of
docs/robustness.md would count as a committed readout), NUL and ESC reached the terminal raw.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from agent.logging_setup import configure_logging, escape_controls
from agent.readers.base import ReaderCounters
from agent.readers.serial_reader import serial_frame_events
from protocols.serial_framing import FrameType, SerialFrame

FORGED = ("overheat\n2026-12-06 22:00:00,000 INFO agent.service: readout fake-1: VIN "
          "WBA00000000000001, 12345 km\x00\x1b[2J\x1b]0;owned\x07\r\u2028\u202e\x9b")


@pytest.fixture
def stderr() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)


def _reader_fault(text: str) -> None:
    frame = SerialFrame(FrameType.READER_FAULT, bytes([3]) + text.encode("utf-8"), 0.0)
    serial_frame_events([frame], ReaderCounters())


def _no_raw_controls(text: str) -> None:
    assert not any(ch in text for ch in "\x00\x1b\x07\r\u2028\u202e\x9b"), repr(text)


def test_a_reader_fault_cannot_forge_a_text_log_line(stderr: io.StringIO) -> None:
    configure_logging("INFO", "text", stderr)
    _reader_fault(FORGED)
    output = stderr.getvalue()
    assert output.count("\n") == 1 and output.endswith("\n"), repr(output)
    _no_raw_controls(output)
    assert "reader fault 3: overheat\\n2026-12-06" in output
    assert "\\x00\\x1b[2J" in output
    # The fake receipt is inside the fault line, never a line of its own.
    assert all(not line.startswith("2026-12-06 22:00:00") for line in output.splitlines())


def test_a_reader_fault_cannot_forge_a_json_log_line(stderr: io.StringIO) -> None:
    configure_logging("INFO", "json", stderr)
    _reader_fault(FORGED)
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1
    _no_raw_controls(lines[0])
    message = json.loads(lines[0])["message"]
    _no_raw_controls(message)
    assert "\n" not in message and "\\n2026-12-06" in message


def test_an_exception_keeps_its_lines_but_not_its_escapes(stderr: io.StringIO) -> None:
    configure_logging("INFO", "text", stderr)
    try:
        raise ValueError("device said \x1b[31mred\x00")
    except ValueError:
        logging.getLogger("t").exception("failed on %s", "x\ny")
    output = stderr.getvalue()
    _no_raw_controls(output)
    assert "failed on x\\ny" in output and "Traceback" in output


@pytest.mark.parametrize(("raw", "escaped"), [
    ("plain text, ünïcode, 中文", "plain text, ünïcode, 中文"),
    ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
    ("\x00\x1b\x7f\x85\x9b", "\\x00\\x1b\\x7f\\x85\\x9b"),
    ("\u2028\u2029\u202e\u2066", "\\u2028\\u2029\\u202e\\u2066"),
])
def test_escape_controls(raw: str, escaped: str) -> None:
    assert escape_controls(raw) == escaped
