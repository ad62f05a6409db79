"""Planning key reads: a session and its faults in, a :class:`Transmission` with vouched-for
outcomes out.

:class:`ReadPlanner` draws the faults of read ``i`` from its own seeded stream (so read
``i`` is the same whatever happened before, rereads included), injects them
(:mod:`simulators.faults`), renders the wire events for the transport (serial frames with
noise and bit errors, or CAN frames) and asks the oracle (:mod:`simulators.oracle`) what an
agent makes of exactly those steps. The oracle's outcomes must equal the ones the faults
declared; if they do not (say a noise burst happened to contain a frame start that would
hold the next frame back), the planner draws again, and after a few tries plays the read
clean rather than publish a ground truth it cannot vouch for.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import replace

from cantools.database.can import Database

from dbc import key_reader_database
from protocols.key_session import KeySession
from protocols.serial_framing import FrameType, encode_can_frame, encode_frame
from protocols.session import SessionAccepted, SessionEvent, SessionRejected
from simulators.errors import PlanningError
from simulators.faults import (
    CLEAN,
    Fault,
    FaultChoice,
    FaultRates,
    FrameOut,
    KeyRemovedOut,
    QuietOut,
    SessionAttempt,
    Transport,
    WireEvent,
    inject,
)
from simulators.oracle import judge
from simulators.transmission import CanSend, Pause, PlayedSession, SerialSend, Step, Transmission

logger = logging.getLogger(__name__)

DEFAULT_QUIET_S = 2.0
DEFAULT_AGENT_TIMEOUT_S = 0.5
MAX_ATTEMPTS = 12


class ReadPlanner:
    """Plans the key reads of one simulator run.

    ``agent_timeout_s`` is the session timeout the agent is assumed to use (the protocol's
    500 ms by default); ``quiet_s`` is how long the reader stays silent to let an open
    session time out, and must be well above it (at least twice).
    """

    def __init__(self, transport: Transport, rates: FaultRates | None = None, *, seed: int = 0,
                 quiet_s: float = DEFAULT_QUIET_S,
                 agent_timeout_s: float = DEFAULT_AGENT_TIMEOUT_S,
                 db: Database | None = None) -> None:
        if quiet_s < 2 * agent_timeout_s:
            raise ValueError(f"quiet_s ({quiet_s}) must be at least twice the agent's session "
                             f"timeout ({agent_timeout_s}) for outcomes to be deterministic")
        self.transport = transport
        self.rates = rates if rates is not None else FaultRates(transport)
        if self.rates.transport is not transport:
            raise ValueError("fault rates are for another transport")
        self.seed = seed
        self.quiet_s = quiet_s
        self.agent_timeout_s = agent_timeout_s
        self.db = db if db is not None else key_reader_database()

    def plan_read(self, session: KeySession, *, read_index: int, first_seq: int) -> Transmission:
        """Read ``read_index`` of ``session`` with faults drawn from the run's rates. For
        serial it begins with KEY_PRESENT and, unless a fault removed the key early, leaves
        the key present (the runtime sends KEY_REMOVED when the advisor lifts it)."""
        rng = random.Random(f"cbs-sim/faults/{self.seed}/read/{read_index}")
        choice = self.rates.choose(rng)
        return self.plan(session, choice, rng, first_seq=first_seq)

    def plan_reread(self, session: KeySession, *, first_seq: int) -> Transmission:
        """The answer to REREAD: the present key's session again, clean, with a new seq."""
        return self.plan(session, CLEAN, random.Random(0), first_seq=first_seq,
                         key_present=False, reread=True)

    def plan(self, session: KeySession, choice: FaultChoice, rng: random.Random, *,
             first_seq: int, key_present: bool = True, reread: bool = False) -> Transmission:
        """Plan one read with exactly the faults of ``choice`` (tests call this directly).
        Raises :class:`PlanningError` only if even the clean read fails the oracle (a bug)."""
        for attempt in range(MAX_ATTEMPTS):
            faulted = inject(session, choice, rng, first_seq=first_seq, db=self.db)
            steps = self._render(faulted.events, choice, rng, key_present=key_present)
            verdict = judge(steps, agent_timeout_s=self.agent_timeout_s, quiet_s=self.quiet_s,
                            db=self.db)
            problem = verdict.problem or _mismatch(faulted.attempts, verdict.events)
            if problem is None:
                if verdict.needs_trailing_quiet:
                    steps.append(Pause(self.quiet_s))
                return Transmission(
                    steps=tuple(steps),
                    sessions=tuple(_played(a, e, reread) for a, e in
                                   zip(faulted.attempts, verdict.events, strict=True)),
                    seqs_used=faulted.seqs_used,
                    key_removed=any(isinstance(e, KeyRemovedOut) for e in faulted.events),
                    note=faulted.note)
            logger.debug("read plan attempt %d with %s rejected: %s", attempt + 1,
                         choice.names, problem)
        if choice == CLEAN:
            raise PlanningError(f"a clean read of {session.vin} fails the reference assembler")
        logger.warning("faults %s could not be applied deterministically to %s; playing it clean",
                       ",".join(choice.names), session.vin)
        clean = self.plan(session, CLEAN, rng, first_seq=first_seq, key_present=key_present,
                          reread=reread)
        return replace(clean, fell_back=True)

    # -- rendering ------------------------------------------------------------------------

    def _render(self, events: Sequence[WireEvent], choice: FaultChoice, rng: random.Random, *,
                key_present: bool) -> list[Step]:
        if self.transport is Transport.CAN:
            return self._render_can(events)
        return self._render_serial(events, rng, key_present=key_present,
                                   noise=Fault.NOISE in choice.neutral)

    def _render_can(self, events: Sequence[WireEvent]) -> list[Step]:
        steps: list[Step] = []
        for event in events:
            if isinstance(event, FrameOut):
                steps.append(CanSend(event.frame))
            elif isinstance(event, QuietOut):
                steps.append(Pause(self.quiet_s, bus_off=event.bus_off))
            else:
                raise PlanningError(f"{type(event).__name__} cannot happen on a CAN bus")
        return steps

    def _render_serial(self, events: Sequence[WireEvent], rng: random.Random, *,
                       key_present: bool, noise: bool) -> list[Step]:
        tokens: list[tuple[str, bytes | float]] = []
        if key_present:
            tokens.append(("intact", encode_frame(FrameType.KEY_PRESENT)))
        for event in events:
            if isinstance(event, FrameOut):
                raw = encode_can_frame(event.frame)
                tokens.append(("corrupt", _flip_bits(raw, rng)) if event.corrupt
                              else ("intact", raw))
            elif isinstance(event, KeyRemovedOut):
                tokens.append(("intact", encode_frame(FrameType.KEY_REMOVED)))
            else:
                tokens.append(("pause", self.quiet_s))
        if noise:
            intact = [i for i, (kind, _) in enumerate(tokens) if kind == "intact"]
            for i in sorted(rng.sample(intact, min(len(intact), rng.randint(1, 3))), reverse=True):
                burst = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
                tokens.insert(i, ("noise", burst))
        steps: list[Step] = []
        pending: list[tuple[bytes, bool]] = []
        for kind, value in tokens:
            if kind == "pause":
                if pending:
                    steps.append(SerialSend(tuple(pending)))
                    pending = []
                assert isinstance(value, float)
                steps.append(Pause(value))
            elif kind == "intact":
                assert isinstance(value, bytes)
                steps.append(SerialSend((*pending, (value, True))))
                pending = []
            else:
                assert isinstance(value, bytes)
                pending.append((value, False))
        if pending:
            steps.append(SerialSend(tuple(pending)))
        return steps


def _flip_bits(frame: bytes, rng: random.Random) -> bytes:
    """1 or 2 bit errors in TYPE, payload or CRC (never STX, LEN or ETX, whose damage would
    make the receiver wait for bytes that do not come). CRC-16/CCITT detects them all."""
    out = bytearray(frame)
    positions = rng.sample(range(2 * 8, (len(frame) - 1) * 8), rng.choice((1, 1, 2)))
    for bit in positions:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _mismatch(attempts: Sequence[SessionAttempt], events: Sequence[SessionEvent]) -> str | None:
    if len(events) != len(attempts):
        return f"{len(events)} outcome(s) for {len(attempts)} session(s): {events}"
    for attempt, event in zip(attempts, events, strict=True):
        expected = attempt.expected
        if expected.outcome == "readout":
            if not isinstance(event, SessionAccepted):
                return f"expected a readout, the assembler says {event}"
            if event.session != attempt.session:
                return "the assembler decoded another session than was sent"
        else:
            if not isinstance(event, SessionRejected) or event.reason != expected.reason:
                return f"expected {expected}, the assembler says {event}"
            if event.key_id != attempt.session.key_id:
                return f"rejection names key {event.key_id}, sent {attempt.session.key_id}"
    return None


def _played(attempt: SessionAttempt, event: SessionEvent, reread: bool) -> PlayedSession:
    if isinstance(event, SessionAccepted):
        return PlayedSession(attempt.session, attempt.faults, "readout", None, None, reread)
    return PlayedSession(attempt.session, attempt.faults, "rejected", str(event.reason),
                         event.detail, reread)
