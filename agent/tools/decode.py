"""``cbs-agent decode``: offline decoding of captures into the payloads the agent would publish."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import TextIO

from cantools.database.can import Database

from agent.domain.models import to_json
from agent.errors import CaptureError, CaptureUnreadableError
from agent.pipeline import ReadoutPipeline
from agent.readers.base import KeyRemoved, ReaderCounters
from agent.readers.capture import CaptureSource, StreamCapture, read_capture
from protocols.can_frame import CanFrame
from protocols.session import SessionAccepted, SessionAssembler, SessionEvent

EXIT_NOTHING_READ = 1


class Progress:
    """How far ``decode`` is, on stderr: one line rewritten in place on a terminal, else a
    line every ``every_s`` (only when asked for with ``--progress``)."""

    def __init__(self, err: TextIO, *, interactive: bool, every_s: float | None = None) -> None:
        self.err = err
        self.interactive = interactive
        self.every_s = every_s if every_s is not None else (0.2 if interactive else 5.0)
        self._clock = time.monotonic
        self._last = -1e9
        self.name = ""
        self.sessions = 0
        self._shown = False

    def start(self, name: str) -> None:
        self.name, self.sessions, self._last = name, 0, -1e9

    def update(self, done: int, total: int) -> None:
        """``total`` is 0 for a stream, whose size is not known."""
        now = self._clock()
        if now - self._last < self.every_s and (done < total or not total):
            return
        self._last = now
        if total:
            line = (f"decode: {self.name} {100 * done // total:3d} % ({done / 1e6:.1f} of "
                    f"{total / 1e6:.1f} MB), {self.sessions} sessions")
        else:
            line = f"decode: {self.name} {done / 1e6:.1f} MB read, {self.sessions} sessions"
        if self.interactive:
            self.err.write("\r\x1b[K" + line)
        else:
            self.err.write(line + "\n")
        self.err.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown and self.interactive:
            self.err.write("\n")
            self.err.flush()
        self._shown = False


def decode_files(paths: Iterable[CaptureSource], fmt: str, pipeline: ReadoutPipeline,
                 out: TextIO, *, db: Database, timeout_s: float = 0.5, err: TextIO = sys.stderr,
                 progress: Progress | None = None,
                 labels: Mapping[CaptureSource, str] | None = None) -> int:
    """Print one payload per line for every session in the captures, in capture order.

    ``db`` is the key reader's DBC as wiring loaded it (shipped or configured): frames of
    other ids are passed over unbuilt. ``labels`` names files in messages (a
    :class:`StreamCapture` goes by its own name, ``-`` for stdin). Returns the exit code: 0
    when every file was read, 1 when one was truncated or corrupt (what came before is
    printed) or held no frames at all (empty, or not a capture), 2 when one could not be read.
    """
    code = 0
    key_ids = key_frame_ids(db)
    for path in paths:
        label = (labels or {}).get(path, str(path))
        assembler = SessionAssembler(timeout_s=timeout_s, db=db)
        counters = ReaderCounters()
        last_time = 0.0
        emitted = 0
        if progress is not None:
            progress.start(label)
        try:
            for event in read_capture(path, fmt, counters, serial_time=_capture_time(path),
                                      progress=None if progress is None else progress.update,
                                      wanted_ids=key_ids):
                if isinstance(event, CanFrame):
                    last_time = max(last_time, event.timestamp)
                    emitted += _emit(assembler.feed(event), pipeline, out)
                elif isinstance(event, KeyRemoved):
                    emitted += _emit(assembler.key_removed(event.at), pipeline, out)
                if progress is not None:
                    progress.sessions = emitted
        except CaptureError as exc:
            _emit(assembler.poll(last_time + timeout_s * 2 + 1), pipeline, out)
            if progress is not None:
                progress.finish()
            print(f"cbs-agent decode: {str(exc).replace(str(path), label, 1)}", file=err)
            code = max(code, 2 if isinstance(exc, CaptureUnreadableError) and counters.frames == 0 else 1)
            continue
        # A session the capture leaves open would time out on a live reader: say so.
        emitted += _emit(assembler.poll(last_time + timeout_s * 2 + 1), pipeline, out)
        if progress is not None:
            progress.finish()
        if emitted == 0 and counters.frames == 0 and not counters.dropped \
                and not counters.bus_errors:
            what = ("is empty" if _is_empty(path) else
                    f"holds no frames of a key reader or CAN bus ({counters.ignored_bytes} bytes "
                    "ignored): is it a capture?")
            print(f"cbs-agent decode: {label}: {what}", file=err)
            code = max(code, EXIT_NOTHING_READ)
    return code


def key_frame_ids(db: Database) -> frozenset[int]:
    """The 11-bit ids of the key reader's messages, as its DBC names them: the only frames
    a session is made of (the session assembler counts any other as other traffic)."""
    return frozenset(message.frame_id for message in db.messages
                     if not message.is_extended_frame)


def _is_empty(path: CaptureSource) -> bool:
    if isinstance(path, StreamCapture):
        return path.bytes_read == 0
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _emit(events: list[SessionEvent], pipeline: ReadoutPipeline, out: TextIO) -> int:
    for event in events:
        if isinstance(event, SessionAccepted):
            readout = pipeline.readout(event)
            out.write(to_json(readout) + "\n")
            pipeline.remember(event.session, readout)
        else:
            out.write(to_json(pipeline.rejection(event)) + "\n")
    if events:
        out.flush()
    return len(events)


def _capture_time(path: CaptureSource) -> float:
    """When a capture without timestamps of its own (raw serial bytes) was taken, as well as
    we know: the file's modification time, so that decoding it again gives the same
    ``read_at`` and the same readout ids (docs/integrators.md). Now, for a stream and what
    has none."""
    if isinstance(path, StreamCapture):
        return time.time()
    try:
        return path.stat().st_mtime
    except (OSError, ValueError):
        return time.time()
