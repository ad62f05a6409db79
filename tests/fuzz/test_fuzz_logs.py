"""Whatever a device sends, a log line stays one line without control characters, in the text
and the JSON format (defect: a reader's fault text once forged log lines)."""

from __future__ import annotations

import io
import json
import logging
import os
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.logging_setup import EscapingFormatter, JsonLineFormatter, escape_controls
from agent.readers.base import ReaderCounters
from agent.readers.serial_reader import serial_frame_events
from protocols.serial_framing import FrameType, SerialFrame

SCALE = float(os.environ.get("CBS_HYPOTHESIS_SCALE", "1"))
FUZZ = settings(max_examples=max(1, round(300 * SCALE)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
LINE_BREAKS = {"\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"}


def _clean(line: str) -> None:
    assert not any(unicodedata.category(ch) == "Cc" for ch in line), repr(line)
    assert not LINE_BREAKS & set(line), repr(line)


@FUZZ
@given(st.text())
def test_escaped_text_has_no_controls_and_no_line_breaks(text: str) -> None:
    escaped = escape_controls(text)
    _clean(escaped)
    assert escaped.splitlines() == [escaped] or escaped == ""


@FUZZ
@given(st.binary(max_size=249), st.sampled_from(["text", "json"]))
def test_a_reader_fault_frame_is_one_clean_log_line(payload: bytes, fmt: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter() if fmt == "json"
                         else EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("agent.readers.serial_reader")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # HELLO's firmware text is logged at INFO
    try:
        serial_frame_events([SerialFrame(FrameType.READER_FAULT, payload, 0.0),
                             SerialFrame(FrameType.HELLO, payload, 0.0)], ReaderCounters())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    for line in stream.getvalue().splitlines():
        _clean(line)
        if fmt == "json":
            _clean(json.loads(line)["message"])
