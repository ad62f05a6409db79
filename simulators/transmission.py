"""What a simulator plays for one key read: timed steps for one transport, and the sessions
those steps carry with the outcome the agent must report for each.

A :class:`Transmission` is plain data. The planner (:mod:`simulators.playback`) makes it and
vouches for its outcomes; the pty runtimes only execute the steps in order: a send goes out
right after the previous one (back to back, at line or bus speed), a :class:`Pause` keeps
the line quiet for at least its duration. Anything a runtime injects on its own (HELLO
answers, SLCAN acknowledgements, background CAN traffic) goes *between* sends and never
touches the key-reader frames, so the outcomes hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocols.can_frame import CanFrame
from protocols.key_session import KeySession


@dataclass(frozen=True, slots=True)
class SerialSend:
    """Bytes written in one go. ``parts`` are its pieces: intact serial frames
    (``True``) and noise or corrupted frames (``False``); the corrupted bytes always come
    with the intact frame that follows them, so the receiver's decoder resynchronises
    within one send."""

    parts: tuple[tuple[bytes, bool], ...]

    @property
    def data(self) -> bytes:
        return b"".join(p for p, _ in self.parts)


@dataclass(frozen=True, slots=True)
class CanSend:
    frame: CanFrame


@dataclass(frozen=True, slots=True)
class Pause:
    """At least ``seconds`` of silence from the key reader; ``bus_off``: the whole CAN bus is
    silent (no background traffic)."""

    seconds: float
    bus_off: bool = False


Step = SerialSend | CanSend | Pause


@dataclass(frozen=True, slots=True)
class PlayedSession:
    """One session the reader started, and what the agent must make of it."""

    session: KeySession  # what the reader meant to send; session_seq is START's seq
    faults: tuple[str, ...]
    expected: Literal["readout", "rejected"]
    reason: str | None  # the RejectReason value when rejected
    detail: str | None  # the reference assembler's detail text (for humans, not a contract)
    reread: bool = False  # sent in answer to REREAD


@dataclass(frozen=True, slots=True)
class Transmission:
    steps: tuple[Step, ...]
    sessions: tuple[PlayedSession, ...]
    seqs_used: int
    key_removed: bool = False  # serial: KEY_REMOVED was part of the steps (key gone)
    note: str = ""  # the fault variant applied, for logs
    fell_back: bool = False  # the chosen faults could not be made deterministic: played clean
