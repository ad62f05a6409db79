"""``fastslcan`` coalesces reads only while nothing it wants arrives (agent/readers/fast_slcan.py).

Over a real pseudo-terminal: other traffic alone makes each read wait ``coalesce_s`` first;
once a wanted frame has arrived, reads do not wait (a key session's later frames, END among
them, are not delayed) until the wanted traffic has been quiet for ``QUIET_S`` again; and
``coalesce_s=0`` never waits. ``time.sleep`` is recorded, not faked: the waits really happen.
"""

from __future__ import annotations

import os
import pty
import time

import can
import pytest

import agent.readers.fast_slcan as fast_slcan
from agent.readers.fast_slcan import COALESCE_S, QUIET_S, FastSlcanBus

KEY_FILTER = [{"can_id": 0x6F0, "can_mask": 0x7F0, "extended": False}]


@pytest.fixture
def adapter():  # type: ignore[no-untyped-def]
    master, slave = pty.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    os.close(master)


def _open(path: str, **kwargs: object) -> FastSlcanBus:
    return can.Bus(interface="fastslcan", channel=path, can_filters=KEY_FILTER, **kwargs)


def _pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(fast_slcan.time, "sleep", sleep)
    return waits


def test_other_traffic_is_gathered_wanted_frames_are_not_delayed(
        adapter, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    master, path = adapter
    bus = _open(path)
    waits = _pauses(monkeypatch)
    try:
        os.write(master, b"t1238" + b"00" * 8 + b"\r")  # other traffic only
        assert bus.recv(0.05) is None
        assert waits and all(0 < w <= COALESCE_S for w in waits)  # quiet: reads wait first

        os.write(master, b"t6F08" + b"11" * 8 + b"\r")  # a key-reader frame
        first = bus.recv(1.0)
        assert first is not None and first.arbitration_id == 0x6F0
        waits.clear()
        os.write(master, b"t1238" + b"00" * 8 + b"\r" + b"t6FF8" + b"22" * 8 + b"\r")
        end = bus.recv(1.0)
        assert end is not None and end.arbitration_id == 0x6FF
        assert waits == []  # within QUIET_S of a wanted frame: no coalescing pause

        time.sleep(QUIET_S * 1.5)
        assert bus.recv(0.01) is None
        assert waits  # quiet again: back to gathering
    finally:
        bus.shutdown()


def test_coalescing_can_be_switched_off(adapter, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    master, path = adapter
    bus = _open(path, coalesce_s=0)
    waits = _pauses(monkeypatch)
    try:
        os.write(master, b"t1238" + b"00" * 8 + b"\r")
        assert bus.recv(0.05) is None
        assert waits == []
    finally:
        bus.shutdown()
