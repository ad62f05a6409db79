"""Fault injection: what can go wrong between a key and the agent, and what the agent must
then report.

Faults come in two kinds. A *decisive* fault decides the outcome of the session it hits
(``crc_mismatch`` makes the agent reject it with that reason, ``interrupted`` makes it
reject one session and accept the retry, ...); a read gets at most one. A *neutral* fault
must not change the outcome (noise between serial frames, identical repeats, data frames in
another order with the CRC computed over that order); any number may combine with a
decisive one.

:func:`inject` turns a clean session and a :class:`FaultChoice` into the *wire events* of
one key read (CAN frames, possibly marked for a serial bit error, KEY_REMOVED, and pauses)
together with each attempted session and its *declared* outcome, reasoned from the
protocol. :mod:`simulators.playback` then renders the events for a transport and checks the
declaration against the reference :class:`~protocols.session.SessionAssembler` fed exactly
what will be sent; the two must agree, so the ground truth is both reasoned and computed.

Each decisive fault's declared outcome (see :data:`CATALOGUE`):

==================== ======================================================================
truncated            END never comes; the reader stays quiet -> ``timeout``
key_removed          serial: KEY_REMOVED before END -> ``key_removed``
crc_mismatch         END carries a wrong CRC-32 -> ``crc_mismatch``
wire_reordered       two data frames swapped on the wire after the reader computed the CRC
                     -> ``crc_mismatch``
seq_mismatch         END's SessionSeq differs from START's -> ``seq_mismatch``
unsupported_version  START's ProtocolVersion is not 1 -> ``unsupported_version``
missing_vin          one to three VIN parts not sent (count and CRC match) -> ``missing_vin``
missing_vehicle      no KEY_VEHICLE -> ``missing_vehicle``
orphan_history       history for an item without status -> ``orphan_history``
invalid_value        one field out of range, a bad VIN character, an impossible date, ...
                     -> ``invalid_value``
duplicate_frame      a data frame repeated with other content -> ``duplicate_frame``
interrupted          a new START before END (the reader restarts the read): the first
                     session -> ``interrupted``, the complete retry -> readout
bit_flip             serial: one CAN_FRAME frame corrupted (CRC-16 drops it): a data frame
                     -> ``frame_count_mismatch``, END -> ``timeout``
dropped              CAN: a data frame lost -> ``frame_count_mismatch``, END lost ->
                     ``timeout``
bus_off              CAN: the bus stops inside a session for longer than the timeout ->
                     ``timeout`` (the rest of the session then counts as stray)
==================== ======================================================================

Neutral: ``noise`` (serial: random bytes between frames), ``duplicated`` (identical repeats
of frames, dropped by the agent), ``reordered`` (data frames in another order, CRC-32 over
that order). START is never lost or corrupted, so every session the reader starts yields
exactly one outcome.
"""

from __future__ import annotations

import enum
import random
from calendar import monthrange
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from cantools.database.can import Database

from protocols.can_frame import SESSION_END_ID, SESSION_START_ID, CanFrame
from protocols.encoder import (
    data_frame_payloads,
    encode_raw,
    end_payload,
    frame_session,
    session_crc32,
)
from protocols.key_messages import (
    KEY_CBS_HISTORY,
    KEY_CBS_STATUS,
    KEY_CHECK_CONTROL,
    KEY_USAGE,
    KEY_VEHICLE,
    KEY_VIN,
)
from protocols.key_session import KeySession
from protocols.session import RejectReason
from simulators.errors import FaultSpecError


class Transport(enum.StrEnum):
    SERIAL = "serial"
    CAN = "can"


class Fault(enum.StrEnum):
    NOISE = "noise"
    BIT_FLIP = "bit_flip"
    TRUNCATED = "truncated"
    KEY_REMOVED = "key_removed"
    CRC_MISMATCH = "crc_mismatch"
    DUPLICATED = "duplicated"
    REORDERED = "reordered"
    WIRE_REORDERED = "wire_reordered"
    SEQ_MISMATCH = "seq_mismatch"
    UNSUPPORTED_VERSION = "unsupported_version"
    MISSING_VIN = "missing_vin"
    MISSING_VEHICLE = "missing_vehicle"
    ORPHAN_HISTORY = "orphan_history"
    INVALID_VALUE = "invalid_value"
    DUPLICATE_FRAME = "duplicate_frame"
    INTERRUPTED = "interrupted"
    DROPPED = "dropped"
    BUS_OFF = "bus_off"


_BOTH = frozenset(Transport)
_SERIAL = frozenset({Transport.SERIAL})
_CAN = frozenset({Transport.CAN})


@dataclass(frozen=True, slots=True)
class FaultInfo:
    fault: Fault
    transports: frozenset[Transport]
    decisive: bool
    outcome: str
    summary: str


CATALOGUE: dict[Fault, FaultInfo] = {i.fault: i for i in (
    FaultInfo(Fault.NOISE, _SERIAL, False, "readout", "random bytes between serial frames"),
    FaultInfo(Fault.BIT_FLIP, _SERIAL, True, "frame_count_mismatch (data frame) or timeout (END)",
              "1-2 bit errors in one CAN_FRAME serial frame; CRC-16 drops it"),
    FaultInfo(Fault.TRUNCATED, _BOTH, True, "timeout", "END never comes; the reader goes quiet"),
    FaultInfo(Fault.KEY_REMOVED, _SERIAL, True, "key_removed", "KEY_REMOVED before END"),
    FaultInfo(Fault.CRC_MISMATCH, _BOTH, True, "crc_mismatch", "wrong CRC-32 in END"),
    FaultInfo(Fault.DUPLICATED, _BOTH, False, "readout", "identical repeats of 1-3 frames"),
    FaultInfo(Fault.REORDERED, _BOTH, False, "readout",
              "data frames in another order, END's CRC-32 computed over that order"),
    FaultInfo(Fault.WIRE_REORDERED, _BOTH, True, "crc_mismatch",
              "two data frames swapped after the reader computed the CRC-32"),
    FaultInfo(Fault.SEQ_MISMATCH, _BOTH, True, "seq_mismatch", "END's SessionSeq differs"),
    FaultInfo(Fault.UNSUPPORTED_VERSION, _BOTH, True, "unsupported_version",
              "START's ProtocolVersion is not 1"),
    FaultInfo(Fault.MISSING_VIN, _BOTH, True, "missing_vin", "1-3 VIN parts not sent"),
    FaultInfo(Fault.MISSING_VEHICLE, _BOTH, True, "missing_vehicle", "KEY_VEHICLE not sent"),
    FaultInfo(Fault.ORPHAN_HISTORY, _BOTH, True, "orphan_history",
              "history for an item without KEY_CBS_STATUS"),
    FaultInfo(Fault.INVALID_VALUE, _BOTH, True, "invalid_value",
              "a field out of range, a bad VIN character or an impossible date"),
    FaultInfo(Fault.DUPLICATE_FRAME, _BOTH, True, "duplicate_frame",
              "a data frame repeated with different content"),
    FaultInfo(Fault.INTERRUPTED, _BOTH, True, "interrupted, then readout of the retry",
              "a new START before END; the reader restarts the read"),
    FaultInfo(Fault.DROPPED, _CAN, True, "frame_count_mismatch (data frame) or timeout (END)",
              "one data frame or END lost on the bus"),
    FaultInfo(Fault.BUS_OFF, _CAN, True, "timeout",
              "the bus stops inside a session for longer than the timeout"),
)}


def faults_for(transport: Transport) -> list[Fault]:
    return [f for f, info in CATALOGUE.items() if transport in info.transports]


# -- rates and selection ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FaultChoice:
    """The faults one read gets: at most one decisive, any neutral ones."""

    decisive: Fault | None = None
    neutral: frozenset[Fault] = frozenset()

    @property
    def names(self) -> tuple[str, ...]:
        chosen = sorted(self.neutral)
        if self.decisive is not None:
            chosen.insert(0, self.decisive)
        return tuple(str(f) for f in chosen)


CLEAN = FaultChoice()


@dataclass(frozen=True)
class FaultRates:
    """Per-read probabilities of each fault on one transport.

    Neutral faults are drawn independently. Decisive faults exclude each other: one uniform
    draw picks at most one, each with its rate; if their rates sum above 1 they are scaled
    down proportionally.
    """

    transport: Transport
    rates: Mapping[Fault, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, transport: Transport, spec: str | None = None, *,
              default_rate: float | None = None) -> FaultRates:
        """``spec`` is ``NAME=RATE,...``; ``default_rate`` applies to every fault of the
        transport not named in ``spec``. Raises :class:`FaultSpecError`."""
        allowed = faults_for(transport)
        rates: dict[Fault, float] = {}
        if default_rate is not None:
            _check_rate("--fault-rate", default_rate)
            rates = {f: default_rate for f in allowed}
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            try:
                fault = Fault(name)
            except ValueError:
                raise FaultSpecError(
                    f"unknown fault {name!r}; the {transport} simulator knows "
                    f"{', '.join(allowed)}") from None
            if fault not in allowed:
                raise FaultSpecError(f"fault {name!r} does not exist on the {transport} transport "
                                     f"(only {', '.join(sorted(CATALOGUE[fault].transports))})")
            if not sep:
                raise FaultSpecError(f"fault {name!r} needs a rate: {name}=0.1")
            try:
                rate = float(value)
            except ValueError:
                raise FaultSpecError(f"rate of {name!r} is not a number: {value!r}") from None
            _check_rate(name, rate)
            rates[fault] = rate
        return cls(transport, {f: r for f, r in rates.items() if r > 0})

    def __bool__(self) -> bool:
        return bool(self.rates)

    def choose(self, rng: random.Random) -> FaultChoice:
        """Draw the faults of one read. Always consumes the same number of random values for
        a given set of rates, so reads stay reproducible."""
        decisive = [(f, r) for f, r in sorted(self.rates.items()) if CATALOGUE[f].decisive]
        neutral = [(f, r) for f, r in sorted(self.rates.items()) if not CATALOGUE[f].decisive]
        total = sum(r for _, r in decisive)
        scale = max(1.0, total)
        draw = rng.random() * scale
        chosen: Fault | None = None
        for fault, rate in decisive:
            if draw < rate:
                chosen = fault
                break
            draw -= rate
        picked = frozenset(f for f, r in neutral if rng.random() < r)
        return FaultChoice(chosen, picked)


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise FaultSpecError(f"rate of {name} must be between 0 and 1, got {rate}")


# -- wire events and declared outcomes ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameOut:
    """A CAN frame the reader puts on the wire; ``corrupt``: it reaches the serial line with
    a bit error (the agent's CRC-16 check drops it)."""

    frame: CanFrame
    corrupt: bool = False


@dataclass(frozen=True, slots=True)
class KeyRemovedOut:
    """The serial reader reports KEY_REMOVED here."""


@dataclass(frozen=True, slots=True)
class QuietOut:
    """Silence long enough for an open session to time out; ``bus_off``: the whole bus is
    silent (no background traffic either)."""

    bus_off: bool = False


WireEvent = FrameOut | KeyRemovedOut | QuietOut


@dataclass(frozen=True, slots=True)
class Expected:
    """The outcome the agent must report for one attempted session."""

    outcome: Literal["readout", "rejected"]
    reason: RejectReason | None = None

    @classmethod
    def readout(cls) -> Expected:
        return cls("readout")

    @classmethod
    def rejected(cls, reason: RejectReason) -> Expected:
        return cls("rejected", reason)

    def __str__(self) -> str:
        return self.outcome if self.reason is None else f"rejected/{self.reason}"


@dataclass(frozen=True, slots=True)
class SessionAttempt:
    """One START the reader sends: the session it meant (``session_seq`` = START's seq),
    the faults it suffered and the outcome declared for it."""

    session: KeySession
    faults: tuple[str, ...]
    expected: Expected


@dataclass(frozen=True, slots=True)
class FaultedRead:
    events: tuple[WireEvent, ...]
    attempts: tuple[SessionAttempt, ...]
    seqs_used: int
    note: str = ""  # which variant of the fault was applied, for logs


def inject(session: KeySession, choice: FaultChoice, rng: random.Random, *, first_seq: int,
           db: Database) -> FaultedRead:
    """The wire events of one key read of ``session`` with the faults of ``choice``.

    The session is re-stamped with ``first_seq`` (the reader's rolling counter); a retry
    after ``interrupted`` uses the next value. Raises nothing for any valid session.
    """
    return _Injector(session, choice, rng, first_seq & 0xFF, db).run()


_R = RejectReason


class _Injector:
    def __init__(self, session: KeySession, choice: FaultChoice, rng: random.Random,
                 seq: int, db: Database) -> None:
        self.session = replace(session, session_seq=seq)
        self.choice = choice
        self.rng = rng
        self.db = db
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def run(self) -> FaultedRead:
        rng, s, decisive = self.rng, self.session, self.choice.decisive
        data = data_frame_payloads(s, db=self.db)
        start_overrides: dict[str, int] = {}
        expected = Expected.readout()
        content: dict[Fault, Callable[[list[tuple[int, bytes]]], RejectReason]] = {
            Fault.MISSING_VIN: self._missing_vin,
            Fault.MISSING_VEHICLE: self._missing_vehicle,
            Fault.ORPHAN_HISTORY: self._orphan_history,
            Fault.DUPLICATE_FRAME: self._duplicate_frame,
        }
        if decisive in content:
            expected = Expected.rejected(content[decisive](data))
        elif decisive is Fault.INVALID_VALUE:
            start_overrides = self._invalid_value(data)
            expected = Expected.rejected(_R.INVALID_VALUE)
        if Fault.REORDERED in self.choice.neutral and len(data) > 1:
            original = list(data)
            for _ in range(8):
                rng.shuffle(data)
                if data != original:
                    break
        if decisive is Fault.UNSUPPORTED_VERSION:
            version = rng.choice((0, 2, 2, 3, 0x10, 0xFF, rng.randint(2, 0xFF)))
            start_overrides["version"] = version
            self.note(f"ProtocolVersion {version}")
            expected = Expected.rejected(_R.UNSUPPORTED_VERSION)
        frames = frame_session(s, data, db=self.db, **start_overrides)
        if decisive is Fault.SEQ_MISMATCH:
            end_seq = (s.session_seq + rng.randint(1, 255)) & 0xFF
            frames[-1] = CanFrame(SESSION_END_ID, end_payload(
                seq=end_seq, frame_count=len(data), crc32=session_crc32(d for _, d in data),
                db=self.db))
            self.note(f"END seq {end_seq}, START seq {s.session_seq}")
            expected = Expected.rejected(_R.SEQ_MISMATCH)
        elif decisive is Fault.CRC_MISMATCH:
            bad = session_crc32(d for _, d in data) ^ rng.randint(1, 0xFFFFFFFF)
            frames[-1] = CanFrame(SESSION_END_ID, end_payload(
                seq=s.session_seq, frame_count=len(data), crc32=bad, db=self.db))
            self.note(f"END CRC-32 0x{bad:08X}")
            expected = Expected.rejected(_R.CRC_MISMATCH)

        events: list[WireEvent] = [FrameOut(f) for f in frames]
        attempts = [SessionAttempt(s, self.choice.names, expected)]
        seqs_used = 1
        primary_len = len(events)  # neutral faults stay within the first session's frames
        wire: dict[Fault, Callable[[list[WireEvent]], Expected]] = {
            Fault.TRUNCATED: self._truncated,
            Fault.KEY_REMOVED: self._key_removed,
            Fault.WIRE_REORDERED: self._wire_reordered,
            Fault.DROPPED: self._dropped,
            Fault.BUS_OFF: self._bus_off,
            Fault.BIT_FLIP: self._bit_flip,
        }
        if decisive in wire:
            attempts[0] = replace(attempts[0], expected=wire[decisive](events))
            primary_len = len(events)
        elif decisive is Fault.INTERRUPTED:
            k = rng.randint(0, len(data))
            del events[1 + k:]
            self.note(f"interrupted after {k} of {len(data)} data frames")
            retry = replace(s, session_seq=(s.session_seq + 1) & 0xFF)
            attempts[0] = replace(attempts[0], expected=Expected.rejected(_R.INTERRUPTED))
            primary_len = len(events)
            events += [FrameOut(f) for f in frame_session(
                retry, data_frame_payloads(retry, db=self.db), db=self.db)]
            attempts.append(SessionAttempt(retry, (), Expected.readout()))
            seqs_used = 2
        if Fault.DUPLICATED in self.choice.neutral:
            events = self._duplicated(events, primary_len,
                                      keep_start_single=decisive is Fault.UNSUPPORTED_VERSION)
        return FaultedRead(tuple(events), tuple(attempts), seqs_used, "; ".join(self.notes))

    # -- content faults (before framing: count and CRC stay consistent) --------------------

    def _missing_vin(self, data: list[tuple[int, bytes]]) -> RejectReason:
        parts = sorted(self.rng.sample((0, 1, 2), self.rng.randint(1, 3)))
        data[:] = [(fid, d) for fid, d in data if not (fid == KEY_VIN and d[0] in parts)]
        self.note(f"VIN parts {parts} not sent")
        return _R.MISSING_VIN

    def _missing_vehicle(self, data: list[tuple[int, bytes]]) -> RejectReason:
        data[:] = [(fid, d) for fid, d in data if fid != KEY_VEHICLE]
        self.note("KEY_VEHICLE not sent")
        return _R.MISSING_VEHICLE

    def _orphan_history(self, data: list[tuple[int, bytes]]) -> RejectReason:
        rng = self.rng
        with_history = [i.index for i in self.session.services if i.history is not None]
        if with_history and rng.random() < 0.4:
            index = rng.choice(with_history)
            data[:] = [(fid, d) for fid, d in data
                       if not (fid == KEY_CBS_STATUS and d[0] & 0x0F == index)]
            self.note(f"KEY_CBS_STATUS of item {index} not sent, its history is")
            return _R.ORPHAN_HISTORY
        used = {i.index for i in self.session.services}
        index = rng.choice([i for i in range(16) if i not in used])
        orphan = encode_raw(KEY_CBS_HISTORY, {
            "ItemIndex": index, "LastServiceKm": rng.randint(0, 200_000),
            "LastServiceYear": rng.randint(15, 26), "LastServiceMonth": rng.randint(1, 12),
            "IntervalKm": rng.choice((0, 150, 300)), "IntervalMonths": rng.choice((0, 12, 24))},
            db=self.db)
        data.insert(rng.randint(0, len(data)), (KEY_CBS_HISTORY, orphan))
        self.note(f"KEY_CBS_HISTORY for item {index}, which has no status")
        return _R.ORPHAN_HISTORY

    def _duplicate_frame(self, data: list[tuple[int, bytes]]) -> RejectReason:
        rng = self.rng
        i = rng.randrange(len(data))
        fid, original = data[i]
        copy = bytearray(original)
        # byte 0 holds the index (or VIN part) of every indexed message: keep it, so the
        # copy lands in the same slot with different content
        copy[rng.randint(1, 7)] ^= rng.randint(1, 255)
        data.insert(rng.randint(i + 1, len(data)), (fid, bytes(copy)))
        self.note(f"0x{fid:03X} repeated with other content")
        return _R.DUPLICATE_FRAME

    def _patch(self, data: list[tuple[int, bytes]], position: int, **raw: int) -> None:
        fid, payload = data[position]
        decoded = self.db.decode_message(fid, payload, decode_choices=False, scaling=False)
        assert isinstance(decoded, dict)  # raw integers of a plain (non-container) message
        signals = {name: int(value) for name, value in decoded.items()}  # type: ignore[arg-type]
        signals.update(raw)
        data[position] = (fid, encode_raw(fid, signals, db=self.db))
        self.note(f"0x{fid:03X} {raw}")

    def _invalid_value(self, data: list[tuple[int, bytes]]) -> dict[str, int]:
        """Make one field invalid; returns START overrides (for KeySlot)."""
        rng = self.rng
        where: dict[int, list[int]] = {}
        for pos, (fid, _) in enumerate(data):
            where.setdefault(fid, []).append(pos)
        variants: list[str] = ["vin_char", "vin_padding", "vin_part", "data_month", "data_day",
                               "fuel", "build_month", "availability", "due_month", "key_slot"]
        if KEY_USAGE in where:
            variants.append("usage_pct")
        if KEY_CBS_HISTORY in where:
            variants.append("history_month")
        if KEY_CHECK_CONTROL in where:
            variants.append("cc_status")
        variant = rng.choice(variants)
        vin_positions = {data[p][1][0]: p for p in where[KEY_VIN]}
        if variant == "key_slot":
            slot = rng.randint(10, 15)
            self.note(f"START KeySlot {slot}")
            return {"key_slot": slot}
        if variant == "vin_char":
            part = rng.choice((0, 1, 2))
            char = rng.randrange(3 if part == 2 else 7)
            self._patch(data, vin_positions[part], **{f"VinChar{char}": rng.choice(b"IOQioq-* \0")})
        elif variant == "vin_padding":
            self._patch(data, vin_positions[2], **{f"VinChar{rng.randint(3, 6)}": rng.randint(1, 255)})
        elif variant == "vin_part":
            self._patch(data, vin_positions[rng.choice((0, 1, 2))], VinPart=rng.randint(3, 255))
        elif variant == "data_month":
            self._patch(data, where[KEY_VEHICLE][0], DataMonth=rng.choice((0, 13, 14, 15)))
        elif variant == "data_day":
            pos = where[KEY_VEHICLE][0]
            vehicle = self.session.vehicle.data_date
            days = monthrange(vehicle.year, vehicle.month)[1]
            self._patch(data, pos, DataDay=rng.choice([0, *range(days + 1, 32)]))
        elif variant == "fuel":
            self._patch(data, where[KEY_VEHICLE][0], FuelLevelPct=rng.randint(101, 254))
        elif variant == "build_month":
            self._patch(data, where[KEY_VEHICLE][0], BuildMonth=rng.randint(13, 15))
        elif variant == "usage_pct":
            name = rng.choice(("HotSharePct", "ColdSharePct", "ShortTripPct", "SevereDutyPct"))
            self._patch(data, where[KEY_USAGE][0], **{name: rng.randint(101, 127)})
        elif variant == "availability":
            self._patch(data, rng.choice(where[KEY_CBS_STATUS]), AvailabilityPct=rng.randint(251, 254))
        elif variant == "due_month":
            self._patch(data, rng.choice(where[KEY_CBS_STATUS]), DueMonth=rng.randint(13, 15))
        elif variant == "history_month":
            self._patch(data, rng.choice(where[KEY_CBS_HISTORY]), LastServiceMonth=rng.randint(13, 15))
        elif variant == "cc_status":
            self._patch(data, rng.choice(where[KEY_CHECK_CONTROL]),
                        CcStatus=rng.choice((0, 3, 4, 0x80, 0xFF)))
        return {}

    # -- wire faults (after the reader framed the session) ---------------------------------

    def _data_positions(self, events: list[WireEvent]) -> list[int]:
        return [i for i, e in enumerate(events)
                if isinstance(e, FrameOut) and e.frame.arbitration_id not in (SESSION_START_ID,
                                                                              SESSION_END_ID)]

    def _truncated(self, events: list[WireEvent]) -> Expected:
        n_data = len(events) - 2
        k = self.rng.randint(0, n_data)
        del events[1 + k:]
        self.note(f"END never sent, {k} of {n_data} data frames sent")
        return Expected.rejected(_R.TIMEOUT)

    def _key_removed(self, events: list[WireEvent]) -> Expected:
        n_data = len(events) - 2
        k = self.rng.randint(0, n_data)
        del events[1 + k:]
        events.append(KeyRemovedOut())
        self.note(f"KEY_REMOVED after {k} of {n_data} data frames")
        return Expected.rejected(_R.KEY_REMOVED)

    def _wire_reordered(self, events: list[WireEvent]) -> Expected:
        positions = self._data_positions(events)
        rng = self.rng
        for _ in range(32):
            i, j = sorted(rng.sample(positions, 2))
            a, b = events[i], events[j]
            assert isinstance(a, FrameOut) and isinstance(b, FrameOut)
            if a.frame.data != b.frame.data:
                events[i], events[j] = b, a
                self.note(f"data frames {i} and {j} swapped after the CRC was computed")
                return Expected.rejected(_R.CRC_MISMATCH)
        return Expected.readout()  # unreachable for real sessions: VIN parts always differ

    def _dropped(self, events: list[WireEvent]) -> Expected:
        position = self.rng.randrange(1, len(events))  # never START
        lost = events.pop(position)
        assert isinstance(lost, FrameOut)
        if lost.frame.arbitration_id == SESSION_END_ID:
            self.note("END lost")
            return Expected.rejected(_R.TIMEOUT)
        self.note(f"data frame {position} ({lost.frame}) lost")
        return Expected.rejected(_R.FRAME_COUNT_MISMATCH)

    def _bus_off(self, events: list[WireEvent]) -> Expected:
        position = self.rng.randrange(1, len(events))  # after START, at the latest before END
        events.insert(position, QuietOut(bus_off=True))
        self.note(f"bus off before frame {position}")
        return Expected.rejected(_R.TIMEOUT)

    def _bit_flip(self, events: list[WireEvent]) -> Expected:
        position = self.rng.randrange(1, len(events))  # never START
        target = events[position]
        assert isinstance(target, FrameOut)
        events[position] = FrameOut(target.frame, corrupt=True)
        if target.frame.arbitration_id == SESSION_END_ID:
            self.note("bit error in END")
            return Expected.rejected(_R.TIMEOUT)
        self.note(f"bit error in data frame {position} ({target.frame})")
        return Expected.rejected(_R.FRAME_COUNT_MISMATCH)

    def _duplicated(self, events: list[WireEvent], primary_len: int, *,
                    keep_start_single: bool) -> list[WireEvent]:
        rng = self.rng
        candidates = [i for i, e in enumerate(events[:primary_len])
                      if isinstance(e, FrameOut) and not e.corrupt
                      and not (keep_start_single and e.frame.arbitration_id == SESSION_START_ID)]
        if not candidates:
            return events
        chosen = set(rng.sample(candidates, min(len(candidates), rng.randint(1, 3))))
        out: list[WireEvent] = []
        for i, e in enumerate(events):
            out.append(e)
            if i in chosen:
                out.append(e)
        self.note(f"{len(chosen)} frame(s) repeated identically")
        return out
