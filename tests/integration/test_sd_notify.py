"""agent/sd_notify.py speaks systemd's notification protocol over a real unix datagram socket
(a filesystem path and the abstract namespace), and the Watchdog pings at most once per half
interval (driven by a fake clock, never by sleeping)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sd_notify import Watchdog, notify, notify_socket_address, watchdog_interval_s


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """What systemd listens on: a bound datagram socket and its NOTIFY_SOCKET value."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def test_notify_sends_one_datagram(systemd_socket) -> None:
    sock, path = systemd_socket
    assert notify("READY=1\nSTATUS=connected", env={"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=connected"


def test_notify_abstract_namespace() -> None:
    name = f"cbs-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_outside_systemd_nothing_happens(tmp_path: Path) -> None:
    assert notify("READY=1", env={}) is False
    assert notify_socket_address({"NOTIFY_SOCKET": "relative/path"}) is None
    assert notify_socket_address({"NOTIFY_SOCKET": "@"}) is None
    # A socket that went away is reported, not raised: the daemon keeps running.
    assert notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


def test_watchdog_interval_from_the_environment() -> None:
    pid = os.getpid()
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid + 1)}) is None
    for bad in ({}, {"WATCHDOG_USEC": ""}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "soon"}):
        assert watchdog_interval_s(bad) is None


def test_watchdog_pings_at_most_every_half_interval() -> None:
    now = [1000.0]
    sent: list[str] = []
    dog = Watchdog(10.0, clock=lambda: now[0], send=lambda state: sent.append(state) or True)
    assert dog.enabled and dog.ping_every_s == 5.0
    assert dog.ping() is True            # the first ping goes out at once
    for step in (1.0, 2.0, 1.9):         # 4.9 s later: still too early
        now[0] += step
        assert dog.ping() is False
    now[0] += 0.1                        # 5.0 s after the first
    assert dog.ping() is True
    now[0] += 100.0                      # a long pause: the next call pings again
    assert dog.ping() is True
    assert sent == ["WATCHDOG=1"] * 3 and dog.pings == 3


def test_watchdog_disabled_and_failing(systemd_socket) -> None:
    assert Watchdog(None).ping() is False
    assert Watchdog.from_environment({}).enabled is False
    now = [0.0]
    failing = Watchdog(2.0, clock=lambda: now[0], send=lambda state: False)
    assert failing.ping() is False and failing.pings == 0
    assert failing.ping() is False       # no retry storm: the next attempt is a second later
    sock, path = systemd_socket
    dog = Watchdog.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert dog.interval_s == 2.0 and dog.ping() is True
    assert sock.recv(4096) == b"WATCHDOG=1"
