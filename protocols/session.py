"""Session assembly (protocol section 1, "Session rules"): a stream of CAN frames in, accepted
key sessions or rejections out.

One assembler serves both transports: the serial reader feeds it the CAN_FRAME payloads and
tells it about KEY_REMOVED; the CAN reader feeds it bus frames. It is sans-IO: time comes only
from the frames' timestamps and from :meth:`SessionAssembler.poll`, so a capture replays
exactly as it was read live.

Readings of the spec that it implements (see docs/protocol-notes.md):

* An identical repeat of a data frame (same message, index and bytes) is dropped silently: it
  does not count towards FrameCount and is not part of the CRC-32, because the reader sent it
  once. The same holds for an identical repeat of START.
* ``duplicate_frame`` and ``unsupported_version`` reject at once; the rest of that session's
  frames then count as stray. Every other rule is checked when END arrives, in the order
  seq, frame count, CRC-32, then content (values, VIN, vehicle, history).
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass
from functools import partial

from cantools.database.can import Database
from cantools.database.namedsignalvalue import NamedSignalValue

from dbc import key_reader_database
from protocols.can_frame import (
    DATA_FRAME_IDS,
    KEY_READER_FIRST_ID,
    KEY_READER_LAST_ID,
    SESSION_END_ID,
    SESSION_START_ID,
    CanFrame,
)
from protocols.key_messages import (
    FRAME_BYTES,
    MESSAGE_NAMES,
    SLOT_SIGNALS,
    SUPPORTED_PROTOCOL_VERSION,
    DecodedFrame,
    InvalidSession,
    Signals,
    build_key_session,
    message_decoders,
)
from protocols.key_session import KeySession
from protocols.values import fast_init

DEFAULT_TIMEOUT_S = 0.5

# DecodedFrame((frame, position, signals)) without the named tuple's Python-level __new__.
_decoded_frame = partial(tuple.__new__, DecodedFrame)


class RejectReason(enum.StrEnum):
    UNSUPPORTED_VERSION = "unsupported_version"
    SEQ_MISMATCH = "seq_mismatch"
    FRAME_COUNT_MISMATCH = "frame_count_mismatch"
    CRC_MISMATCH = "crc_mismatch"
    MISSING_VIN = "missing_vin"
    MISSING_VEHICLE = "missing_vehicle"
    DUPLICATE_FRAME = "duplicate_frame"
    ORPHAN_HISTORY = "orphan_history"
    INVALID_VALUE = "invalid_value"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    KEY_REMOVED = "key_removed"


@fast_init
@dataclass(frozen=True, slots=True)
class SessionAccepted:
    session: KeySession
    completed_at: float  # timestamp of the END frame
    frames_received: int
    crc32: int  # the CRC-32 over every data frame, as computed and as the END frame confirmed


@fast_init
@dataclass(frozen=True, slots=True)
class SessionRejected:
    reason: RejectReason
    detail: str
    key_id: int | None
    frames_received: int
    at: float


SessionEvent = SessionAccepted | SessionRejected


@dataclass(slots=True)
class AssemblerCounters:
    """Monotonic counters, published in ``status``."""

    frames: int = 0  # key-reader frames fed
    other_traffic: int = 0  # frames outside 0x6F0-0x6FF (shared bus), ignored
    stray_frames: int = 0  # key-reader frames outside a session, or unknown key-reader ids
    repeats_dropped: int = 0  # identical repeats dropped silently
    accepted: int = 0
    rejected: int = 0


class _OpenSession:
    __slots__ = ("start_data", "start", "frames", "crc", "last_at", "preview", "previewed")

    def __init__(self, start_data: bytes, start: Signals, at: float) -> None:
        self.start_data = start_data
        self.start = start
        # The data frames so far, in arrival order, by slot: (frame id << 8 | index), the
        # message and index that make a frame unique in a session (see _on_data).
        self.frames: dict[int, DecodedFrame] = {}
        self.crc = 0
        self.last_at = at
        # The session its frames make, built once they are all in (SessionAssembler.preview);
        # END then accepts this very value. None: not built, or they do not make one.
        self.preview: KeySession | None = None
        self.previewed = False


class SessionAssembler:
    """Turns CAN frames into :class:`SessionAccepted` / :class:`SessionRejected` events.

    Never raises on any frame sequence. Memory is bounded: a session holds at most one frame
    per (message, index) slot, at most 256 + 1 + 1 + 16 + 16 + 256 + 256 = 802 of them (VinPart
    is a u8 until END checks it; item indexes are 4 bits).
    """

    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S, db: Database | None = None) -> None:
        self.timeout_s = timeout_s
        self._db = db if db is not None else key_reader_database()
        # One compiled decoder per message, built once (the hot path of a busy reader).
        decoders = message_decoders(self._db)
        self._decode_data = decoders.data
        self._decode_plain = decoders.plain
        # Per data-frame id: its decoder and the signal that names its slot (feed's fast path).
        self._data_plan = {frame_id: (decode, SLOT_SIGNALS[frame_id])
                           for frame_id, decode in decoders.data.items()
                           if frame_id in DATA_FRAME_IDS}
        self._open: _OpenSession | None = None
        self.counters = AssemblerCounters()

    @property
    def in_session(self) -> bool:
        return self._open is not None

    def preview(self) -> KeySession | None:
        """The session the open session's data frames make, once FrameCount of them are in
        and before its END frame: what END will accept if its seq, count and CRC-32 agree.

        Why: on the wire the END frame comes a frame's time after the last data frame (about
        1.3 ms at 115200 baud), and the work a readout needs that depends only on the
        session's content (its forecast, reading the vehicle's history) can run in that gap
        instead of after END. Built once per session; END accepts the same object, so a
        caller can tell by identity that what it prepared is what was read. None while
        frames are missing, when they are too many, or when they do not make a session (END
        then rejects it as it would have). Emits no event and changes no rule."""
        session = self._open
        if session is None or len(session.frames) != session.start["FrameCount"]:
            return None
        if not session.previewed:
            session.previewed = True
            try:
                session.preview = build_key_session(session.start, session.frames.values())
            except InvalidSession:
                pass  # END rejects it with the reason
        return session.preview

    def feed(self, frame: CanFrame) -> list[SessionEvent]:
        """Take one frame; return the events it caused (zero, one or two)."""
        frame_id = frame.arbitration_id
        counters = self.counters
        if not KEY_READER_FIRST_ID <= frame_id <= KEY_READER_LAST_ID:
            counters.other_traffic += 1
            return []
        counters.frames += 1
        timestamp = frame.timestamp
        session = self._open
        # Fast path, most frames of a read: a new 8-byte data frame of an open session in time.
        # The same steps as _on_data, inlined (a method call per frame is a tenth of a decode).
        plan = self._data_plan.get(frame_id)
        if (plan is not None and session is not None
                and timestamp - session.last_at <= self.timeout_s and len(frame.data) == FRAME_BYTES):
            data = frame.data
            decode, index_name = plan
            signals = decode(data)
            index = 0 if index_name is None else signals[index_name]
            if index.__class__ is NamedSignalValue:
                index = index.value
            frames = session.frames
            slot = frame_id << 8 | index
            if slot not in frames:
                frames[slot] = _decoded_frame((frame, len(frames) + 1, signals))
                session.crc = zlib.crc32(data, session.crc)
                if timestamp > session.last_at:
                    session.last_at = timestamp
                return []
        events: list[SessionEvent] = []
        if session is not None and timestamp - session.last_at > self.timeout_s:
            events.append(self._timed_out(session))  # what poll(timestamp) does
            session = None
        if frame_id in DATA_FRAME_IDS:
            if session is None:
                counters.stray_frames += 1
                return events
            self._on_data(session, frame, events)
        elif frame_id == SESSION_START_ID:
            self._on_start(frame, events)
        elif session is None:
            counters.stray_frames += 1
            return events
        elif frame_id == SESSION_END_ID:
            self._on_end(frame, events)
        else:
            counters.stray_frames += 1  # reserved id 0x6F8-0x6FE: not part of version 1
        session = self._open
        if session is not None and timestamp > session.last_at:
            session.last_at = timestamp
        return events

    def heard(self, at: float) -> None:
        """The line may not have been silent before ``at``: the frames about to be fed (stamped
        ``at``) were waiting to be read, and arrived at some moment since the read before them.
        An open session's silence is then counted from ``at``, not from its last frame.

        Why: a reader stamps frames when they are read. A host busy for longer than the
        timeout (a batch of readouts at saturation) would otherwise find a gap between a
        session's frames that was its own delay, not the reader's, and reject a session whose
        frames were all there. The timeout still ends a session whose frames stop: then the
        host waits and reads nothing, and :meth:`poll` counts the silence. A session with
        frames missing is still rejected at END (count, CRC-32); only the timeout's evidence,
        which the host does not have here, is not used."""
        session = self._open
        if session is not None and at > session.last_at:
            session.last_at = at

    def poll(self, now: float) -> list[SessionEvent]:
        """Apply the timeout rule at time ``now``; call it when the reader has been quiet."""
        session = self._open
        if session is not None and now - session.last_at > self.timeout_s:
            return [self._timed_out(session)]
        return []

    def _timed_out(self, session: _OpenSession) -> SessionRejected:
        return self._reject(RejectReason.TIMEOUT,
                            f"no frame for {self.timeout_s * 1000:.0f} ms after data frame "
                            f"{len(session.frames)} of {session.start['FrameCount']}",
                            session.last_at + self.timeout_s)

    def key_removed(self, at: float) -> list[SessionEvent]:
        """The serial reader reported KEY_REMOVED: an open session is rejected."""
        events = self.poll(at)
        if self._open is not None:
            events.append(self._reject(
                RejectReason.KEY_REMOVED,
                f"KEY_REMOVED after {len(self._open.frames)} of "
                f"{self._open.start['FrameCount']} data frames, before KEY_SESSION_END", at))
        return events

    def reset(self) -> None:
        """Forget an open session without an event (the reader itself went away)."""
        self._open = None

    # -- frame handlers -------------------------------------------------------------------

    def _on_start(self, frame: CanFrame, events: list[SessionEvent]) -> None:
        if len(frame.data) != 8:
            self.counters.stray_frames += 1
            return
        if self._open is not None:
            if frame.data == self._open.start_data:
                self.counters.repeats_dropped += 1
                return
            events.append(self._reject(
                RejectReason.INTERRUPTED,
                f"new KEY_SESSION_START ({frame}) after {len(self._open.frames)} of "
                f"{self._open.start['FrameCount']} data frames", frame.timestamp))
        start = self._decode_plain[frame.arbitration_id](frame.data)
        self._open = _OpenSession(frame.data, start, frame.timestamp)
        if start["ProtocolVersion"] != SUPPORTED_PROTOCOL_VERSION:
            events.append(self._reject(
                RejectReason.UNSUPPORTED_VERSION,
                f"KEY_SESSION_START ({frame}) field ProtocolVersion: {start['ProtocolVersion']}, "
                f"only {SUPPORTED_PROTOCOL_VERSION} is supported", frame.timestamp))

    def _on_data(self, session: _OpenSession, frame: CanFrame,
                 events: list[SessionEvent]) -> None:
        data = frame.data
        frame_id = frame.arbitration_id
        if len(data) != FRAME_BYTES:  # every key-reader message is 8 bytes (the DBC)
            events.append(self._reject(
                RejectReason.INVALID_VALUE,
                f"{MESSAGE_NAMES[frame_id]} ({frame}) has {len(data)} data bytes, 8 expected",
                frame.timestamp))
            return
        signals = self._decode_data[frame_id](data)
        index_name = SLOT_SIGNALS[frame_id]  # the signal that tells its frames apart
        index = 0 if index_name is None else signals[index_name]
        if isinstance(index, NamedSignalValue):
            index = index.value
        slot = frame_id << 8 | index
        first = session.frames.get(slot)
        if first is not None:
            seen = first.frame.data
            if seen == data:
                self.counters.repeats_dropped += 1
                return
            decoded = DecodedFrame(frame, len(session.frames) + 1, signals)
            events.append(self._reject(
                RejectReason.DUPLICATE_FRAME,
                f"{decoded.where()} repeats index {index} with different content "
                f"(first {seen.hex().upper()})", frame.timestamp))
            return
        frames = session.frames
        frames[slot] = _decoded_frame((frame, len(frames) + 1, signals))
        session.crc = zlib.crc32(data, session.crc)

    def _on_end(self, frame: CanFrame, events: list[SessionEvent]) -> None:
        session = self._open
        assert session is not None
        at = frame.timestamp
        if len(frame.data) != 8:
            events.append(self._reject(RejectReason.INVALID_VALUE,
                                       f"KEY_SESSION_END ({frame}) has {len(frame.data)} data bytes, 8 expected", at))
            return
        end = self._decode_plain[frame.arbitration_id](frame.data)
        start = session.start
        received = len(session.frames)
        if end["SessionSeq"] != start["SessionSeq"]:
            events.append(self._reject(
                RejectReason.SEQ_MISMATCH,
                f"KEY_SESSION_END ({frame}) field SessionSeq: {end['SessionSeq']}, "
                f"KEY_SESSION_START said {start['SessionSeq']}", at))
        elif end["FrameCount"] != start["FrameCount"] or received != start["FrameCount"]:
            events.append(self._reject(
                RejectReason.FRAME_COUNT_MISMATCH,
                f"KEY_SESSION_END ({frame}) field FrameCount: END says {end['FrameCount']}, "
                f"START said {start['FrameCount']}, {received} data frames received", at))
        elif end["Crc32"] != session.crc:
            events.append(self._reject(
                RejectReason.CRC_MISMATCH,
                f"KEY_SESSION_END ({frame}) field Crc32: 0x{end['Crc32']:08X}, "
                f"computed 0x{session.crc:08X} over {received} data frames", at))
        else:
            try:
                key_session = (session.preview if session.preview is not None
                               else build_key_session(start, session.frames.values()))
            except InvalidSession as exc:
                events.append(self._reject(RejectReason(exc.reason), exc.detail, at))
            else:
                self._open = None
                self.counters.accepted += 1
                events.append(SessionAccepted(key_session, at, received, session.crc))

    def _reject(self, reason: RejectReason, detail: str, at: float) -> SessionRejected:
        session = self._open
        assert session is not None
        self._open = None
        self.counters.rejected += 1
        return SessionRejected(reason, detail, session.start["KeyId"], len(session.frames), at)
