"""Hypothesis properties of the protocol layer: serial framing, the DBC codec, session assembly.

Serial streams and garbage. Without byte stuffing, garbage that starts a candidate (0x02, a
valid LEN) right before a real frame swallows that frame's first bytes until the candidate's
declared length has arrived; only then does its CRC fail and scanning resume. At the end of a
stream nothing more arrives, so such a candidate is resolved only by the decoder's stale
timeout. The properties below therefore say two things, both exactly:

* stream timed as on the wire (each chunk stamped with the arrival time of its last byte at
  115200 baud 8N1), then the reader goes quiet: after the stale timeout has given up every
  pending candidate, every intact frame has been found, in order;
* no timeout at all (every chunk at the same instant): the frames found are the first k real
  frames, and each one not (yet) found lies in the bytes the decoder still buffers.

Extra frames found inside garbage are allowed (garbage is arbitrary bytes); what is not
covered is garbage that, together with the start of a real frame, happens to form a frame
with a valid CRC-16 and ETX (about 2^-24 per false start; no receiver can tell it apart).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date
from itertools import pairwise

from hypothesis import event, given
from hypothesis import strategies as st
from samples import EXAMPLE_SESSION, spec_frames
from spec_layout import SPEC_FIELDS, field_ranges, pack_spec, unpack_spec, used_mask
from strategies import OTHER_TRAFFIC_IDS, data_frame_count, key_sessions, protocols_settings

from dbc import key_reader_database
from protocols.can_frame import CanFrame
from protocols.encoder import data_frame_payloads, encode_raw, encode_session, frame_session
from protocols.key_session import (
    CheckControlMessage,
    CheckControlStatus,
    KeySession,
    ServiceHistory,
    ServiceItem,
    StoredDtc,
    UsageData,
    VehicleData,
)
from protocols.serial_framing import MAX_FRAME_BYTES, SerialFrame, SerialFrameDecoder, encode_frame
from protocols.session import SessionAccepted, SessionAssembler, SessionRejected

BYTE_TIME_S = 10 / 115_200  # one byte at 8N1
# one frame per (message, index) slot: VIN part (u8), vehicle, usage, item (u4) status and
# history, check control (u8), DTC (u8)
MAX_SESSION_SLOTS = 256 + 1 + 1 + 16 + 16 + 256 + 256

# -- serial framing --------------------------------------------------------------------------

frame_types = st.integers(0, 255)
small_payloads = st.binary(max_size=24)
serial_frames = st.tuples(frame_types, st.binary(max_size=249) | small_payloads)


@st.composite
def truncated_frames(draw: st.DrawFn) -> bytes:
    """The start of a real-looking frame, cut short: a false start with a plausible LEN."""
    frame = encode_frame(draw(frame_types), draw(st.binary(max_size=60)))
    return frame[:draw(st.integers(1, len(frame) - 1))]


@st.composite
def corrupted_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(encode_frame(draw(frame_types), draw(small_payloads)))
    frame[draw(st.integers(1, len(frame) - 1))] ^= draw(st.integers(1, 255))
    return bytes(frame)


garbage_pieces = st.one_of(
    st.binary(max_size=30),
    st.binary(max_size=30).map(lambda b: b"\x02" + b),
    st.tuples(st.integers(1, 250), st.binary(max_size=8)).map(lambda t: bytes((2, t[0])) + t[1]),
    st.lists(st.sampled_from(b"\x02\x03\x01\xfa\x00"), max_size=12).map(bytes),
    truncated_frames(),
    corrupted_frames(),
)
garbage = st.lists(garbage_pieces, max_size=4).map(b"".join)


@st.composite
def framed_streams(draw: st.DrawFn, garbage: st.SearchStrategy[bytes] = garbage):
    """(frames, start offset of each, the stream, the stream cut into chunks)."""
    frames = draw(st.lists(serial_frames, max_size=6))
    parts: list[bytes] = []
    starts: list[int] = []
    offset = 0
    for frame_type, payload in frames:
        junk = draw(garbage)
        starts.append(offset + len(junk))
        encoded = encode_frame(frame_type, payload)
        parts += [junk, encoded]
        offset += len(junk) + len(encoded)
    parts.append(draw(garbage))
    stream = b"".join(parts)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=24))))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in pairwise(bounds)]
    return frames, starts, stream, chunks


def matched_prefix(expected: list[tuple[int, bytes]], found: list[SerialFrame]) -> int:
    """How many of ``expected`` appear in ``found`` as an ordered subsequence (greedy)."""
    k = 0
    for frame in found:
        if k < len(expected) and (frame.frame_type, frame.payload) == expected[k]:
            k += 1
    return k


def check_accounting(decoder: SerialFrameDecoder, fed: int, found: list[SerialFrame]) -> None:
    """Every byte fed is in a frame, counted as ignored, or still buffered."""
    in_frames = sum(len(f.payload) + 6 for f in found)
    assert decoder.frames == len(found)
    assert in_frames + decoder.ignored_bytes + decoder.buffered == fed


@protocols_settings(200)
@given(framed_streams())
def test_serial_frames_survive_any_split_and_garbage(case) -> None:
    frames, _, stream, chunks = case
    decoder = SerialFrameDecoder()
    found: list[SerialFrame] = []
    received = 0
    for chunk in chunks:
        received += len(chunk)
        found += decoder.feed(chunk, now=received * BYTE_TIME_S)
        assert decoder.buffered < MAX_FRAME_BYTES
    # The reader goes quiet: each feed after the stale timeout gives up one pending candidate.
    now = received * BYTE_TIME_S
    before_quiet = len(found)
    for _ in range(len(stream) + 1):
        if decoder.buffered <= 1:  # a lone trailing 0x02 waits for its LEN; it hides nothing
            break
        now += 2 * decoder.stale_after_s
        found += decoder.feed(b"", now)
    assert decoder.buffered <= 1
    event(f"frames found only after the quiet period: {len(found) > before_quiet}")
    event(f"candidates given up: {min(decoder.bad_frames, 3)}+")
    assert matched_prefix(frames, found) == len(frames), "an intact frame was lost"
    check_accounting(decoder, len(stream), found)


@protocols_settings(200)
@given(framed_streams())
def test_without_timeout_only_the_buffered_tail_is_pending(case) -> None:
    frames, starts, stream, chunks = case
    decoder = SerialFrameDecoder()
    found = [f for chunk in chunks for f in decoder.feed(chunk, now=0.0)]
    k = matched_prefix(frames, found)
    tail_start = len(stream) - decoder.buffered
    event(f"real frames still pending: {len(frames) - k > 0}")
    assert all(start >= tail_start for start in starts[k:]), "a frame outside the buffer was lost"
    check_accounting(decoder, len(stream), found)


@protocols_settings(100)
@given(framed_streams(garbage=st.binary(max_size=40).map(lambda b: b.replace(b"\x02", b"\x00"))))
def test_garbage_without_stx_is_skipped_exactly(case) -> None:
    frames, _, stream, chunks = case
    decoder = SerialFrameDecoder()
    found = [f for chunk in chunks for f in decoder.feed(chunk, now=0.0)]
    assert [(f.frame_type, f.payload) for f in found] == frames
    assert decoder.bad_frames == 0 and decoder.buffered == 0
    assert decoder.ignored_bytes == len(stream) - sum(len(p) + 6 for _, p in frames)


stx_heavy_bytes = st.lists(st.sampled_from(b"\x02\x03\x01\xfa\xff\x00"), max_size=600).map(bytes)


@protocols_settings(200)
@given(st.lists(st.tuples(st.binary(max_size=600) | stx_heavy_bytes,
                          st.floats(-1.0, 1.0, allow_nan=False)), max_size=30),
       st.booleans())
def test_decoder_buffer_stays_bounded(chunks: list[tuple[bytes, float]], flush: bool) -> None:
    decoder = SerialFrameDecoder()
    found: list[SerialFrame] = []
    now = fed = 0
    for chunk, dt in chunks:  # time may even go backwards
        now += dt
        fed += len(chunk)
        found += decoder.feed(chunk, now)
        assert decoder.buffered <= MAX_FRAME_BYTES + len(chunk)  # the documented bound
        assert decoder.buffered < MAX_FRAME_BYTES  # what the scan actually keeps
        check_accounting(decoder, fed, found)
    for frame in found:  # never invents a frame
        assert encode_frame(frame.frame_type, frame.payload) in b"".join(c for c, _ in chunks)
    if flush:
        decoder.flush()
        assert decoder.buffered == 0
        check_accounting(decoder, fed, found)


# -- the DBC codec over the full range of every field -------------------------------------------

MESSAGE_IDS = sorted(SPEC_FIELDS)


@st.composite
def raw_messages(draw: st.DrawFn) -> tuple[int, dict[str, int]]:
    frame_id = draw(st.sampled_from(MESSAGE_IDS))
    return frame_id, {name: draw(st.integers(lo, hi))
                      for name, (lo, hi) in field_ranges(frame_id).items()}


@protocols_settings(300)
@given(raw_messages())
def test_raw_round_trip_matches_the_spec_layout(message: tuple[int, dict[str, int]]) -> None:
    frame_id, raw = message
    data = encode_raw(frame_id, raw)
    assert data == pack_spec(frame_id, raw)
    decoded = key_reader_database().decode_message(frame_id, data, decode_choices=False,
                                                   scaling=False)
    assert decoded == raw
    assert encode_raw(frame_id, decoded) == data


@protocols_settings(200)
@given(st.sampled_from(MESSAGE_IDS), st.binary(min_size=8, max_size=8))
def test_any_8_bytes_decode_as_the_spec_says(frame_id: int, data: bytes) -> None:
    decoded = key_reader_database().decode_message(frame_id, data, decode_choices=False,
                                                   scaling=False)
    assert decoded == unpack_spec(frame_id, data)
    # re-encoding keeps every field and clears the reserved bits
    assert encode_raw(frame_id, decoded) == bytes(b & m for b, m in zip(data, used_mask(frame_id)))


# -- key sessions ----------------------------------------------------------------------------

def assemble(frames: list[CanFrame]) -> list:
    assembler = SessionAssembler()
    return [e for f in frames for e in assembler.feed(f)]


def accepted_sessions(events: list) -> list[KeySession]:
    return [e.session for e in events if isinstance(e, SessionAccepted)]


@protocols_settings(80)
@given(key_sessions(), st.floats(0, 2e9), st.floats(0, 0.4))
def test_key_session_round_trip(session: KeySession, start_time: float, gap_s: float) -> None:
    frames = encode_session(session, start_time=start_time, frame_gap_s=gap_s)
    assert len(frames) == data_frame_count(session) + 2
    assembler = SessionAssembler()
    events = [e for f in frames for e in assembler.feed(f)]
    assert len(events) == 1 and isinstance(events[0], SessionAccepted), events
    assert events[0].session == session
    assert events[0].frames_received == data_frame_count(session)


@protocols_settings(60)
@given(key_sessions(), st.floats(0, 2e9),
       st.lists(st.floats(0, 5.0), min_size=1, max_size=300), st.data())
def test_frames_that_waited_for_the_host_are_not_a_silent_line(
        session: KeySession, start_time: float, gaps: list[float], data: st.DataObject) -> None:
    """A session read in pieces, each piece stamped when the host read it, the host away for
    any time between pieces (a busy loop): told before each piece that its frames waited
    (``heard``), the assembler accepts the session; not told, it rejects it as ``timeout``
    exactly when a wait was longer than the timeout."""
    frames = encode_session(session)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(frames) - 1), max_size=len(gaps)))))
    pieces = [frames[a:b] for a, b in pairwise([0, *cuts, len(frames)])]
    stamps = [start_time]  # each piece a millisecond after the one before, plus the host's wait
    for n in range(1, len(pieces)):
        stamps.append(stamps[-1] + 1e-3 + gaps[(n - 1) % len(gaps)])
    stamped = [[CanFrame(f.arbitration_id, f.data, at) for f in piece]
               for piece, at in zip(pieces, stamps, strict=True)]
    told, untold = SessionAssembler(), SessionAssembler()
    told_events, untold_events = [], []
    for piece in stamped:
        told.heard(piece[0].timestamp)
        told_events += [e for f in piece for e in told.feed(f)]
        untold_events += [e for f in piece for e in untold.feed(f)]
    assert accepted_sessions(told_events) == [session] and len(told_events) == 1
    late = any(b - a > untold.timeout_s for a, b in pairwise(stamps))
    if late:
        assert [e.reason for e in untold_events if isinstance(e, SessionRejected)][:1] == ["timeout"]
    else:
        assert accepted_sessions(untold_events) == [session]


def test_heard_counts_the_silence_from_then_and_never_back() -> None:
    frames = encode_session(EXAMPLE_SESSION, start_time=100.0, frame_gap_s=0.001)
    assembler = SessionAssembler()
    for frame in frames[:3]:
        assert assembler.feed(frame) == []
    assembler.heard(frames[2].timestamp + 2.0)  # the host came back two seconds later
    assert assembler.poll(frames[2].timestamp + 2.4) == []  # 0.4 s of silence since then
    assembler.heard(frames[2].timestamp + 1.0)  # an earlier moment changes nothing
    rejected = assembler.poll(frames[2].timestamp + 2.6)
    assert [e.reason for e in rejected] == ["timeout"]
    assembler.heard(500.0)  # no session open: nothing to do
    assert not assembler.in_session


@protocols_settings(10)
@given(key_sessions(max_check_controls=255, max_dtcs=255))
def test_key_session_round_trip_large(session: KeySession) -> None:
    frames = encode_session(session)
    assert accepted_sessions(assemble(frames)) == [session]


def test_largest_session_round_trip() -> None:
    """255 data frames, every index range at its top, every field at its maximum."""
    history = ServiceHistory(0xFFFFFE, 2127, 12, 102_300, 127)
    session = KeySession(
        session_seq=255, key_id=0xFFFFFFFF, key_slot=9, vin="ZZZZZZZZZZZZZZZZZ",
        vehicle=VehicleData(0xFFFFFF, date(2127, 12, 31), 100, 2127, 12),
        usage=UsageData(87.0, 87.0, 87.0, 100, 100, 100, 100, 409.5),
        services=tuple(ServiceItem(i, 0xFF, 250, 524_287, 2127, 12, 31, history)
                       for i in range(16)),
        check_controls=tuple(CheckControlMessage(255 - i, 0xFFFF, CheckControlStatus.STORED,
                                                 0xFFFFFF) for i in reversed(range(109))),
        dtcs=tuple(StoredDtc(255 - i, 0xFFFFFF, 0xFF, 0xFF, 0xFFFF) for i in reversed(range(109))))
    assert data_frame_count(session) == 255
    frames = encode_session(session)
    assert frames[0].data[2] == 255 and frames[-1].data[1] == 255
    assert accepted_sessions(assemble(frames)) == [session]


@protocols_settings(60)
@given(key_sessions(max_check_controls=3, max_dtcs=3), st.randoms(use_true_random=False),
       st.sampled_from(["valid", "bad_crc", "short_count"]))
def test_the_preview_is_the_session_END_accepts(session: KeySession, rng: random.Random,
                                                 case: str) -> None:
    """``preview()`` is None until FrameCount data frames are in (any order), then exactly the
    session END accepts, as the same object; it never changes a rule: a bad CRC-32 or a wrong
    FrameCount is still rejected at END, and the preview then stands for nothing."""
    data = data_frame_payloads(session)
    rng.shuffle(data)  # the CRC-32 is over arrival order, and frame_session computes it so
    overrides = {"frame_count": len(data) - 1} if case == "short_count" else {}
    frames = frame_session(session, data, **overrides)
    if case == "bad_crc":
        end = frames[-1]
        frames[-1] = CanFrame(end.arbitration_id, end.data[:2] + bytes([end.data[2] ^ 1])
                              + end.data[3:], end.timestamp)
    assembler = SessionAssembler()
    previews = []
    for frame in frames[:-1]:
        assert assembler.feed(frame) == []
        previews.append(assembler.preview())
    assert previews[0] is None  # START alone
    if case == "short_count":
        assert previews[-1] is None  # one data frame more than START announced
    else:
        assert all(p is None for p in previews[:-1]) and previews[-1] == session
    events = assembler.feed(frames[-1])
    assert len(events) == 1 and assembler.preview() is None
    if case == "valid":
        assert isinstance(events[0], SessionAccepted) and events[0].session is previews[-1]
    else:
        assert isinstance(events[0], SessionRejected)
        assert events[0].reason == ("crc_mismatch" if case == "bad_crc" else "frame_count_mismatch")


@st.composite
def mixed_traffic(draw: st.DrawFn):
    """Valid sessions with shuffled data frames, identical repeats inside them, other traffic
    anywhere and stray key-reader frames between sessions; plus what should be counted."""
    sessions = draw(st.lists(key_sessions(max_check_controls=3, max_dtcs=3), min_size=1,
                             max_size=3))
    stream: list[tuple[int, bytes]] = []
    counts = {"other": 0, "stray": 0, "repeats": 0}
    any_dlc = st.integers(0, 8).flatmap(lambda n: st.binary(min_size=n, max_size=n))

    def other_traffic() -> list[tuple[int, bytes]]:
        frames = draw(st.lists(st.tuples(OTHER_TRAFFIC_IDS, any_dlc), max_size=2))
        counts["other"] += len(frames)
        return frames

    for session in sessions:
        strays = draw(st.lists(st.tuples(st.integers(0x6F1, 0x6FF), any_dlc), max_size=2))
        counts["stray"] += len(strays)
        stream += strays + other_traffic()
        data = draw(st.permutations(data_frame_payloads(session)))
        framed = [(f.arbitration_id, f.data) for f in frame_session(session, data)]
        body = framed[:-1]
        for _ in range(draw(st.integers(0, 3))):  # identical repeats of START or a data frame
            i = draw(st.integers(0, len(body) - 1))
            j = draw(st.integers(i + 1, len(body)))
            body.insert(j, body[i])
            counts["repeats"] += 1
        for _ in range(draw(st.integers(0, 3))):
            j = draw(st.integers(1, len(body)))
            for frame in other_traffic():
                body.insert(j, frame)
        stream += body + [framed[-1]]
    # Key-reader frames at most 0.4 s apart (the timeout is 0.5 s). Other traffic does not
    # count as a frame of the session, so it gets its own time and never advances the clock.
    gaps = draw(st.lists(st.floats(0, 0.4), min_size=len(stream), max_size=len(stream)))
    t = 0.0
    frames = []
    for (frame_id, data), gap in zip(stream, gaps):
        if 0x6F0 <= frame_id <= 0x6FF:
            t += gap
            frames.append(CanFrame(frame_id, data, t))
        else:
            frames.append(CanFrame(frame_id, data, t + gap))
    return sessions, frames, counts


@protocols_settings(50)
@given(mixed_traffic())
def test_sessions_survive_shuffling_repeats_and_other_traffic(case) -> None:
    sessions, frames, counts = case
    assembler = SessionAssembler()
    events = [e for f in frames for e in assembler.feed(f)]
    assert not [e for e in events if isinstance(e, SessionRejected)], events
    assert accepted_sessions(events) == sessions
    c = assembler.counters
    assert (c.other_traffic, c.stray_frames, c.repeats_dropped) == (
        counts["other"], counts["stray"], counts["repeats"])
    assert c.accepted == len(sessions) and c.rejected == 0


# -- the assembler never raises --------------------------------------------------------------

timestamps = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 5)
near_ids = st.integers(0x6E8, 0x707) | st.sampled_from([0x6F0, 0x6FF]) | st.integers(0, 0x7FF)
arbitrary_frames = st.builds(CanFrame, near_ids,
                             st.integers(0, 8).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
                             timestamps)


@st.composite
def example_fragments(draw: st.DrawFn) -> CanFrame:
    """A frame of the worked example, maybe with one byte changed or cut short."""
    frame = draw(st.sampled_from(spec_frames()))
    data = bytearray(frame.data)
    if draw(st.booleans()):
        data[draw(st.integers(0, 7))] ^= draw(st.integers(1, 255))
    if draw(st.integers(0, 9)) == 0:
        data = data[:draw(st.integers(0, 7))]
    return CanFrame(frame.arbitration_id, bytes(data), draw(timestamps))


actions = st.one_of(
    st.tuples(st.just("feed"), arbitrary_frames | example_fragments()),
    st.tuples(st.just("feed-example"), st.floats(0, 1e6)),
    st.tuples(st.just("poll"), timestamps),
    st.tuples(st.just("key_removed"), timestamps),
)


def example_at(t: float) -> Iterator[CanFrame]:
    for frame in spec_frames():
        yield CanFrame(frame.arbitration_id, frame.data, t)


@protocols_settings(300)
@given(st.lists(actions, max_size=60))
def test_assembler_never_raises_and_stays_consistent(script) -> None:
    assembler = SessionAssembler()
    fed = 0
    accepted = rejected = 0
    for action, arg in script:
        if action == "feed":
            events = assembler.feed(arg)
            fed += 1
        elif action == "feed-example":
            was_open = assembler.in_session
            events = [e for f in example_at(arg) for e in assembler.feed(f)]
            fed += 12
            if not was_open:  # a clean, complete session: accepted whatever came before
                assert accepted_sessions(events) == [EXAMPLE_SESSION]
        elif action == "poll":
            events = assembler.poll(arg)
        else:
            events = assembler.key_removed(arg)
        for outcome in events:
            assert isinstance(outcome, SessionAccepted | SessionRejected)
            if isinstance(outcome, SessionRejected):
                assert outcome.key_id is not None and outcome.detail
        accepted += sum(isinstance(e, SessionAccepted) for e in events)
        rejected += sum(isinstance(e, SessionRejected) for e in events)
        c = assembler.counters
        assert (c.accepted, c.rejected) == (accepted, rejected)
        assert c.frames + c.other_traffic == fed
        open_session = assembler._open  # white box: the memory bound
        if open_session is not None:
            assert len(open_session.frames) <= MAX_SESSION_SLOTS
        preview = assembler.preview()  # never raises, and only with every data frame in
        assert preview is None or (open_session is not None and len(open_session.frames)
                                   == open_session.start["FrameCount"])


def test_shuffled_example_sessions_are_accepted() -> None:
    """A deterministic spot check of the shuffle property on the worked example."""
    rng = random.Random(1)
    data = data_frame_payloads(EXAMPLE_SESSION)
    for _ in range(20):
        rng.shuffle(data)
        frames = frame_session(EXAMPLE_SESSION, list(data))
        assert accepted_sessions(assemble(frames)) == [
            EXAMPLE_SESSION]
