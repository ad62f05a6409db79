"""The reference judge: what an agent that follows the protocol makes of exactly these steps.

It runs the project's own sans-IO :class:`SerialFrameDecoder` and :class:`SessionAssembler`
over the steps of a transmission, with virtual time: every send arrives ``PROMPT_GAP_S``
after the previous one, a pause lasts its duration. The runtimes honour the same timing in
the large (sends back to back, pauses at least as long), and the planner keeps every gap
inside an open session either far below or far above the agent's timeout, so real
scheduling jitter cannot change an outcome.

For serial it also checks the property that makes byte-level faults safe to offer: every
intact frame of a send comes out of the decoder when that send has been fed, and the
decoder holds nothing back between sends. Then the agent's decoder, however its reads split
the stream and whatever its staleness timer says, sees the same frames at the same moments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from cantools.database.can import Database

from protocols.serial_framing import FrameType, SerialFrameDecoder, decode_can_payload, encode_frame
from protocols.session import SessionAssembler, SessionEvent
from simulators.transmission import CanSend, Pause, SerialSend, Step

PROMPT_GAP_S = 0.001


@dataclass(slots=True)
class Verdict:
    events: list[SessionEvent] = field(default_factory=list)
    problem: str | None = None  # why the steps cannot be vouched for (serial decoding)
    needs_trailing_quiet: bool = False  # a session was still open after the last step


def judge(steps: Sequence[Step], *, agent_timeout_s: float, quiet_s: float,
          db: Database) -> Verdict:
    """Feed ``steps`` to a fresh decoder and assembler. When a session is still open at the
    end, the verdict includes the timeout that a ``quiet_s`` pause produces, and says so."""
    verdict = Verdict()
    assembler = SessionAssembler(timeout_s=agent_timeout_s, db=db)
    decoder = SerialFrameDecoder(stale_after_s=float("inf"))
    now = 0.0
    for index, step in enumerate(steps):
        if isinstance(step, Pause):
            now += step.seconds
            continue
        now += PROMPT_GAP_S
        if isinstance(step, CanSend):
            verdict.events += assembler.feed(replace(step.frame, timestamp=now))
            continue
        assert isinstance(step, SerialSend)
        frames = decoder.feed(step.data, now)
        intact = [p for p, ok in step.parts if ok]
        if [encode_frame(f.frame_type, f.payload) for f in frames] != intact or decoder.buffered:
            verdict.problem = (f"send {index}: decoder gave {len(frames)} frame(s) for "
                               f"{len(intact)} intact, holding {decoder.buffered} byte(s)")
            return verdict
        for frame in frames:
            if frame.frame_type == FrameType.CAN_FRAME:
                can = decode_can_payload(frame.payload, now)
                if can is None:
                    verdict.problem = f"send {index}: malformed CAN_FRAME payload"
                    return verdict
                verdict.events += assembler.feed(can)
            elif frame.frame_type == FrameType.KEY_REMOVED:
                verdict.events += assembler.key_removed(now)
    if assembler.in_session:
        verdict.needs_trailing_quiet = True
        verdict.events += assembler.poll(now + quiet_s)
        if assembler.in_session:  # quiet_s not above the timeout: a configuration error
            verdict.problem = f"a quiet pause of {quiet_s} s does not end the open session"
    return verdict
