"""Hostile captures: ``cbs-agent decode`` reads files from anywhere (a reader's raw serial
bytes, any CAN log python-can reads), so arbitrary bytes in a file of any format must end in
decoded payloads and at most a :class:`CaptureError` — never another exception.

Two kinds of input, per format: arbitrary bytes, and a *valid* capture of the spec's worked
example (written by python-can's own writers, plus an error frame, a 29-bit and a remote
frame) with a few mutations — bytes flipped, spans deleted or duplicated, the file cut short,
tokens a parser may choke on (``nan``, ``1e999``, huge numbers, NUL) inserted. Mutated valid
files reach deep into the parsers where random bytes never get.

The target is the whole offline path: :func:`read_capture` and then, as ``cbs-agent decode``
does, the session assembler and the payload pipeline (:func:`decode_files`), which must return
an exit code (0, 1 or 2) and never raise. CI runs a bounded number of examples;
``CBS_HYPOTHESIS_SCALE=100`` runs a hundred times more (see docs/robustness.md).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import can
import pytest
from fuzz_targets import EXAMPLE
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.domain.forecast import ForecastSettings
from agent.errors import CaptureError
from agent.pipeline import ReadoutPipeline
from agent.readers.base import KeyRemoved, ReaderCounters
from agent.readers.capture import read_capture
from agent.tools.decode import decode_files
from dbc import key_reader_database
from protocols.can_frame import CanFrame
from protocols.serial_framing import FrameType, encode_can_payload, encode_frame

SCALE = float(os.environ.get("CBS_HYPOTHESIS_SCALE", "1"))
FUZZ = settings(max_examples=max(1, round(60 * SCALE)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EXTENSIONS = {"serial": ".bin", "candump": ".log", "asc": ".asc", "trc": ".trc", "csv": ".csv",
              "blf": ".blf"}
FORMATS = list(EXTENSIONS)
END_EPOCH_S = 1_795_000_000.0
TOKENS = [b"nan", b"inf", b"-inf", b"1e999", b"-1", b"0x", b"99999999999999999999999",
          b"\x00", b"\xff\xfe", b"\r", b"\n", b" ", b";", b",", b"(", b")", b"#", b"R", b"x",
          b"Rx", b"Tx", b"d 8", b"FFFFFFFF", b"1FFFFFFF", b"date ", b"base hex",
          b"$FILEVERSION=2.1", b"LOGG", b"LOBJ"]


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cbs-fuzz-captures-") as directory:
        yield Path(directory)


@cache
def pipeline() -> ReadoutPipeline:
    return ReadoutPipeline(site="S1", reader="desk1", transport="can",
                           forecast=ForecastSettings(), history=None)


def _messages() -> list[can.Message]:
    t0 = END_EPOCH_S - 0.3
    messages = [can.Message(timestamp=t0 + 0.02 * i, arbitration_id=fid, data=data,
                            is_extended_id=False, channel=0)
                for i, (fid, data) in enumerate(EXAMPLE)]
    messages.insert(3, can.Message(timestamp=t0 + 0.045, arbitration_id=0x18DAF110,
                                   data=b"\x01\x02", is_extended_id=True, channel=0))
    messages.insert(5, can.Message(timestamp=t0 + 0.065, arbitration_id=0x123, is_remote_frame=True,
                                   dlc=2, is_extended_id=False, channel=0))
    messages.insert(7, can.Message(timestamp=t0 + 0.085, is_error_frame=True, channel=0))
    return messages


@cache
def valid_capture(fmt: str) -> bytes:
    """The spec example as a capture of ``fmt``, written by python-can (serial: by the framing
    encoder, as a reader sends it)."""
    if fmt == "serial":
        frames = [encode_frame(FrameType.KEY_PRESENT)]
        frames += [encode_frame(FrameType.CAN_FRAME, encode_can_payload(fid, data))
                   for fid, data in EXAMPLE]
        frames.append(encode_frame(FrameType.KEY_REMOVED))
        return b"".join(frames)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"seed{EXTENSIONS[fmt]}"
        writer = {"candump": can.CanutilsLogWriter, "asc": can.ASCWriter, "trc": can.TRCWriter,
                  "csv": can.CSVWriter, "blf": can.BLFWriter}[fmt](str(path))
        for message in _messages():
            writer.on_message_received(message)
        writer.stop()
        return path.read_bytes()


@st.composite
def mutated(draw: st.DrawFn, fmt: str) -> bytes:
    data = bytearray(valid_capture(fmt))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["set", "insert", "token", "delete", "duplicate", "cut"]))
        if op == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "duplicate":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))]
        elif op == "cut":
            del data[pos:]
    return bytes(data)


def captures(fmt: str) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(fmt), st.binary(max_size=2048))


def check_capture(directory: Path, fmt: str, data: bytes, name: str = "capture") -> None:
    """The invariants: read_capture raises nothing but CaptureError and yields sane events;
    the whole decode path returns an exit code."""
    path = directory / f"{name}{EXTENSIONS[fmt]}"
    path.write_bytes(data)
    for as_format in (fmt, "auto"):
        counters = ReaderCounters()
        try:
            for event in read_capture(path, as_format, counters, serial_time=END_EPOCH_S):
                if isinstance(event, CanFrame):
                    assert isinstance(event.arbitration_id, int)
                    assert isinstance(event.data, bytes) and len(event.data) <= 64
                    assert 0.0 <= event.timestamp < 1e12  # payload times must fit a datetime
                else:
                    assert isinstance(event, KeyRemoved)
        except CaptureError as exc:
            assert str(exc).startswith(str(path)), exc
    out, err = io.StringIO(), io.StringIO()
    assert decode_files([path], fmt, pipeline(), out, db=key_reader_database(), err=err) in (0, 1, 2)


def test_the_unmutated_captures_decode_to_the_spec_readout(workdir: Path) -> None:
    """The seeds are good: every format decodes the example to one readout, exit code 0."""
    for fmt in FORMATS:
        path = workdir / f"seed{EXTENSIONS[fmt]}"
        path.write_bytes(valid_capture(fmt))
        out, err = io.StringIO(), io.StringIO()
        assert decode_files([path], fmt, pipeline(), out, db=key_reader_database(), err=err) == 0, (fmt, err.getvalue())
        assert '"schema":"cbs.readout/1"' in out.getvalue().replace(" ", ""), (fmt, out.getvalue())


@FUZZ
@given(captures("serial"))
@example(valid_capture("serial")[:-3])
def test_fuzz_serial_capture(workdir: Path, data: bytes) -> None:
    check_capture(workdir, "serial", data)


@FUZZ
@given(captures("candump"))
@example(valid_capture("candump").replace(b"(", b"(1e999", 1))
@example(valid_capture("candump").replace(b"(", b"(nan", 1))
@example(valid_capture("candump").replace(b"(17949", b"(17917949", 1))  # year 58749: was a crash
def test_fuzz_candump_capture(workdir: Path, data: bytes) -> None:
    check_capture(workdir, "candump", data)


@FUZZ
@given(captures("asc"))
def test_fuzz_asc_capture(workdir: Path, data: bytes) -> None:
    check_capture(workdir, "asc", data)


@FUZZ
@given(captures("trc"))
def test_fuzz_trc_capture(workdir: Path, data: bytes) -> None:
    check_capture(workdir, "trc", data)


@FUZZ
@given(captures("csv"))
def test_fuzz_csv_capture(workdir: Path, data: bytes) -> None:
    check_capture(workdir, "csv", data)


@FUZZ
@given(captures("blf"))
@example(valid_capture("blf")[:200])
def test_fuzz_blf_capture(workdir: Path, data: bytes) -> None:
    check_capture(workdir, "blf", data)
