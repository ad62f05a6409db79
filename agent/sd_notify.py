"""systemd's notification protocol (``sd_notify(3)``) without libsystemd: one datagram per call.

Why our own: the protocol is a single ``sendto`` of ``KEY=VALUE`` lines to the unix datagram
socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace), and the
appliance should not need a C library or another dependency for it. Outside systemd (no
``NOTIFY_SOCKET``) every call is a cheap no-op, so the service loop can call it
unconditionally.

The agent uses three messages (examples/systemd/cbs-agent.service has ``Type=notify`` and
``WatchdogSec=``):

* ``READY=1`` once, after the first connection to the broker, so ``systemctl start`` returns
  when the agent actually works;
* ``WATCHDOG=1`` from the service loop, through :class:`Watchdog`, which sends at most one
  ping per half watchdog interval (systemd's own recommendation), so a hung loop gets the
  service restarted while a healthy one costs one datagram every few seconds;
* ``STOPPING=1`` when shutting down (optional; systemd knows it from SIGTERM anyway).

A failure to notify is logged and reported as ``False``, never raised: a watchdog ping must
not be able to stop the daemon it is guarding.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

__all__ = ["Watchdog", "notify", "notify_socket_address", "watchdog_interval_s"]


def notify_socket_address(env: Mapping[str, str] | None = None) -> str | None:
    """The socket address from ``$NOTIFY_SOCKET``: a filesystem path, or an abstract-namespace
    name with its leading ``@`` turned into the NUL byte the kernel expects; None when unset
    or unusable (systemd only sets an absolute path or ``@name``)."""
    value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def notify(state: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"`` or ``"WATCHDOG=1\\nSTATUS=reading"``) to systemd.
    Returns True when a datagram was sent, False outside systemd or when sending failed."""
    address = notify_socket_address(env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("sd_notify %r to %r failed: %s", state.split("\n", 1)[0],
                    address.replace("\0", "@"), exc)
        return False
    return True


def watchdog_interval_s(env: Mapping[str, str] | None = None, *,
                        pid: int | None = None) -> float | None:
    """The watchdog interval systemd asks for (``$WATCHDOG_USEC``), in seconds; None when no
    watchdog is configured or ``$WATCHDOG_PID`` names another process (a child that merely
    inherited the environment must not ping on its parent's behalf)."""
    environment = os.environ if env is None else env
    raw = environment.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    if usec <= 0:
        return None
    owner = environment.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1_000_000


class Watchdog:
    """Rate-limited ``WATCHDOG=1`` pings: call :meth:`ping` as often as you like (every turn
    of the service loop); a datagram goes out only when half the interval has passed since
    the last one. Disabled (every ping a no-op) when systemd configured no watchdog.

    ``Watchdog.from_environment()`` reads ``$WATCHDOG_USEC``/``$WATCHDOG_PID``; tests pass
    ``interval_s``, a fake ``clock`` and a recording ``send``.
    """

    def __init__(self, interval_s: float | None, *,
                 clock: Callable[[], float] = time.monotonic,
                 send: Callable[[str], bool] = notify) -> None:
        self.interval_s = interval_s if interval_s and interval_s > 0 else None
        self._clock = clock
        self._send = send
        self._last_ping: float | None = None
        self.pings = 0  # datagrams sent successfully

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, **kwargs: object) -> Watchdog:
        if env is not None:
            kwargs.setdefault("send", lambda state: notify(state, env=env))
        return cls(watchdog_interval_s(env), **kwargs)  # type: ignore[arg-type]

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None

    @property
    def ping_every_s(self) -> float | None:
        """Half the interval: how often a ping actually goes out."""
        return None if self.interval_s is None else self.interval_s / 2

    def ping(self) -> bool:
        """Send ``WATCHDOG=1`` if due; True when a datagram was sent now."""
        if self.interval_s is None:
            return False
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self.interval_s / 2:
            return False
        # Even a failed send counts as an attempt: retrying every loop turn would flood the
        # log; the next attempt comes half an interval later, still inside the deadline.
        self._last_ping = now
        if self._send("WATCHDOG=1"):
            self.pings += 1
            return True
        return False
