"""Every input path the outside world reaches, as a target that takes bytes: what
bench/fuzz_long.py runs for hours and what tests/fuzz/corpus/ holds, one file per input that
once found a bug (``test_fuzz_corpus.py`` replays them all in the normal suite).

=============  ===================================================================  =========
target         the bytes are                                                          may raise
=============  ===================================================================  =========
serial         a script of operations on the serial framing decoder (fuzz_targets)    nothing
session        a script of CAN frames for the session assembler (fuzz_targets)        nothing
slcan          what a USB-CAN adapter sends ``fastslcan``, cut at the first bytes'    nothing
               positions; checked against the simulator's reference decoder
capture        byte 0 picks the format (serial, candump, asc, trc, csv, blf), the     CaptureError
               rest is the file given to ``cbs-agent decode``
config_text    a TOML configuration file (UTF-8, errors replaced)                     ConfigError
config_env     ``NAME=value`` lines: ``CBS_*`` variables (names folded onto options)  ConfigError
log_line       a READER_FAULT / HELLO payload, logged in both formats                 nothing
=============  ===================================================================  =========

"May raise" is checked inside each target; anything else escaping is a finding.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import tempfile
import unicodedata
from collections.abc import Callable
from functools import cache
from pathlib import Path

import fuzz_targets
import pytest
from test_fuzz_captures import FORMATS, check_capture, valid_capture
from test_fuzz_config import BASE, OPTIONS, load_only_config_errors, to_toml
from test_fuzz_slcan import _feed, _frames, _parser, _reference

from agent.logging_setup import EscapingFormatter, JsonLineFormatter
from agent.readers.base import ReaderCounters
from agent.readers.serial_reader import serial_frame_events
from protocols.serial_framing import FrameType, SerialFrame

CORPUS = Path(__file__).resolve().parent / "corpus"


@cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cbs-fuzz-inputs-"))


def slcan_target(data: bytes) -> None:
    cuts = list(data[:4])
    stream = data[4:]
    bus = _parser()
    _feed(bus, stream, [c * 16 % (len(stream) + 1) for c in cuts])
    assert _frames(bus) == _reference(stream)


def capture_target(data: bytes) -> None:
    if not data:
        return
    check_capture(_workdir(), FORMATS[data[0] % len(FORMATS)], data[1:], name="target")


def config_text_target(data: bytes) -> None:
    path = _workdir() / "target.toml"
    path.write_text(data.decode("utf-8", "replace"), encoding="utf-8", errors="surrogatepass")
    with _no_cbs_environment():
        load_only_config_errors(path)


_ENV_NAMES = sorted({"CBS_" + "__".join(path[:n]).upper() for path in OPTIONS
                     for n in range(1, len(path) + 1)})


def config_env_target(data: bytes) -> None:
    variables: dict[str, str] = {}
    for line in data.split(b"\n")[:8]:
        name, _, value = line.partition(b"=")
        if not name:
            continue
        variables[_ENV_NAMES[sum(name) % len(_ENV_NAMES)]] = (
            value.replace(b"\x00", b"").decode("utf-8", "replace"))
    with _no_cbs_environment() as patch:
        for name, value in variables.items():
            patch.setenv(name, value)
        load_only_config_errors(None, **BASE)


def log_line_target(data: bytes) -> None:
    stream = io.StringIO()
    logger = logging.getLogger("agent.readers.serial_reader")
    level = logger.level
    logger.setLevel(logging.INFO)
    handlers = [logging.StreamHandler(stream), logging.StreamHandler(stream)]
    handlers[0].setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    handlers[1].setFormatter(JsonLineFormatter())
    for handler in handlers:
        logger.addHandler(handler)
    try:
        serial_frame_events([SerialFrame(FrameType.READER_FAULT, data[:249], 0.0),
                             SerialFrame(FrameType.HELLO, data[:249], 0.0)], ReaderCounters())
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)
    for line in stream.getvalue().split("\n")[:-1]:
        _one_clean_line(line)
        if line.startswith("{"):
            _one_clean_line(json.loads(line)["message"])


def _one_clean_line(line: str) -> None:
    assert not any(unicodedata.category(ch) == "Cc" for ch in line), repr(line)
    assert line.splitlines() in ([line], []), repr(line)


class _no_cbs_environment:  # noqa: N801 (used like a function)
    """The machine's own CBS_* variables stay out of a target's load."""

    def __enter__(self) -> pytest.MonkeyPatch:
        self._patch = pytest.MonkeyPatch()
        for name in list(os.environ):
            if name.upper().startswith("CBS_"):
                self._patch.delenv(name)
        return self._patch

    def __exit__(self, *exc_info: object) -> None:
        self._patch.undo()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "serial": fuzz_targets.serial_target,
    "session": fuzz_targets.session_target,
    "slcan": slcan_target,
    "capture": capture_target,
    "config_text": config_text_target,
    "config_env": config_env_target,
    "log_line": log_line_target,
}


@cache
def seeds(target: str) -> list[bytes]:
    """Valid inputs of each target: the long run mutates them to reach deep states."""
    if target == "serial":
        return [bytes((3, 3)), bytes((1, 0x04, 20)) + bytes(range(20))]
    if target == "session":
        return [bytes((3, 3)), bytes((1, 0, 1, 1, 7, 3))]
    if target == "slcan":
        return [b"\x00\x01\x02\x03t6F08" + b"11" * 8 + b"\rT18DAF1102" + b"ab" * 2 + b"\r"
                b"r6F02\rt6F0800000000000000001234\r"]
    if target == "capture":
        return [bytes((FORMATS.index(fmt),)) + valid_capture(fmt) for fmt in FORMATS]
    if target == "config_text":
        return [to_toml({**BASE, "mqtt": {"status_interval_s": 30, "keepalive_s": 30},
                         "forecast": {"horizon_days": 30}}).encode()]
    if target == "config_env":
        return [b"CBS_MQTT={\"keepalive_s\": 30}\nCBS_BAUDRATE=9600"]
    return [b"\x03overheat", b"\x01cbs-sim 1.0.0"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few byte-level edits: set, insert, delete, duplicate, cut, nest, splice tokens."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(out))
        op = rng.randrange(7)
        if op == 0 and pos < len(out):
            out[pos] = rng.randrange(256)
        elif op == 1:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2:
            del out[pos:pos + rng.randint(1, 32)]
        elif op == 3:
            out[pos:pos] = out[pos:pos + rng.randint(1, 32)]
        elif op == 4:
            del out[pos:]
        elif op == 5:
            depth = rng.choice([2, 40, 400, 4000])
            out[pos:pos] = b"[" * depth + b"]" * depth
        else:
            out[pos:pos] = rng.choice([b"nan", b"1e999", b"-1", b"\x00", b"\r", b"\n", b"\x1b[2J",
                                       b"99999999999999999999", b"\"", b"{", b"=", b"0x"])
    return bytes(out)


def corpus_files() -> list[tuple[str, Path]]:
    """(target, file) of every input kept under tests/fuzz/corpus/<target>/."""
    return sorted((directory.name, path) for directory in CORPUS.iterdir()
                  if directory.is_dir() and directory.name in TARGETS
                  for path in directory.iterdir() if path.is_file()) if CORPUS.is_dir() else []
