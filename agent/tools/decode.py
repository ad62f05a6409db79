"""``cbs-agent decode``: offline decoding of captures into the payloads the agent would publish."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from cantools.database.can import Database

from agent.domain.models import to_json
from agent.errors import CaptureError, CaptureUnreadableError
from agent.pipeline import ReadoutPipeline
from agent.readers.base import KeyRemoved, ReaderCounters
from agent.readers.capture import read_capture
from protocols.can_frame import CanFrame
from protocols.session import SessionAccepted, SessionAssembler, SessionEvent


def decode_files(paths: Iterable[Path], fmt: str, pipeline: ReadoutPipeline, out: TextIO, *,
                 db: Database, timeout_s: float = 0.5, err: TextIO = sys.stderr) -> int:
    """Print one payload per line for every session in the captures, in capture order.

    ``db`` is the key reader's DBC as wiring loaded it (shipped or configured).
    Returns the exit code: 0 when every file was read, 1 when one was truncated or corrupt
    (what came before is printed), 2 when one could not be read at all.
    """
    code = 0
    for path in paths:
        assembler = SessionAssembler(timeout_s=timeout_s, db=db)
        counters = ReaderCounters()
        last_time = 0.0
        try:
            for event in read_capture(path, fmt, counters, serial_time=time.time()):
                if isinstance(event, CanFrame):
                    last_time = max(last_time, event.timestamp)
                    _emit(assembler.feed(event), pipeline, out)
                elif isinstance(event, KeyRemoved):
                    _emit(assembler.key_removed(event.at), pipeline, out)
        except CaptureError as exc:
            _emit(assembler.poll(last_time + timeout_s * 2 + 1), pipeline, out)
            print(f"cbs-agent decode: {exc}", file=err)
            code = max(code, 2 if isinstance(exc, CaptureUnreadableError) and counters.frames == 0 else 1)
            continue
        # A session the capture leaves open would time out on a live reader: say so.
        _emit(assembler.poll(last_time + timeout_s * 2 + 1), pipeline, out)
    return code


def _emit(events: list[SessionEvent], pipeline: ReadoutPipeline, out: TextIO) -> None:
    for event in events:
        if isinstance(event, SessionAccepted):
            readout = pipeline.readout(event)
            out.write(to_json(readout) + "\n")
            pipeline.remember(event.session, readout)
        else:
            out.write(to_json(pipeline.rejection(event)) + "\n")
    out.flush()
