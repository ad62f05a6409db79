"""The simulator's end of a pseudo-terminal: the hardware side of a USB serial device.

The agent opens the *slave* path (``/dev/pts/N``) like any serial port; the simulator keeps
only the *master*. Keeping no slave descriptor of its own lets the simulator see whether
anybody has the port open: on Linux, polling the master reports POLLHUP exactly while no
process holds the slave. That is how "wait until the agent connected" works without a
handshake, and how a disconnect shows up.

Writes are non-blocking. A pty buffers a few KiB towards a slave nobody reads; the caller
decides whether to wait for room (key-reader frames) or drop (background traffic).
Data still unread when the master closes is lost, hence :meth:`PtyPort.unread_bytes` for
draining before a simulated unplug or exit.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import struct
import termios
import tty
from pathlib import Path

logger = logging.getLogger(__name__)


class PtyPort:
    """A pty pair whose slave the agent opens; optionally a symlink that always points at
    the current slave (``link``), as udev gives a USB reader a stable name."""

    def __init__(self, *, link: str | Path | None = None) -> None:
        self.link = Path(link) if link is not None else None
        self._master: int | None = None
        self._poll = select.poll()
        self.path = ""

    @property
    def is_open(self) -> bool:
        return self._master is not None

    def open(self) -> str:
        """Create a new pair (raw mode, like a serial line) and return the slave's path."""
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            attrs = termios.tcgetattr(slave)
            attrs[2] |= termios.CLOCAL  # no modem control: a missing DCD must not hang up
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            path = os.ttyname(slave)
        finally:
            os.close(slave)  # see the module docstring: HUP detection needs no slave of ours
        os.set_blocking(master, False)
        self._master = master
        self._poll = select.poll()
        self._poll.register(master, select.POLLIN | select.POLLHUP | select.POLLERR)
        self.path = path
        if self.link is not None:
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(path, tmp)
            os.replace(tmp, self.link)
        logger.info("pseudo-terminal %s%s", path, f" (link {self.link})" if self.link else "")
        return path

    def close(self) -> None:
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def remove_link(self) -> None:
        """Remove the symlink if it still points at our (last) slave."""
        if self.link is not None and self.link.is_symlink():
            try:
                if os.readlink(self.link) == self.path:
                    self.link.unlink()
            except OSError:
                pass

    def _fd(self) -> int:
        if self._master is None:
            raise OSError(errno.EBADF, "pty is closed")
        return self._master

    def host_connected(self) -> bool:
        """True while some process holds the slave open."""
        return not any(ev & select.POLLHUP for _, ev in self._poll.poll(0))

    def wait_readable(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for host bytes (returns early on data; while nobody holds
        the slave this would return at once, so it then just sleeps)."""
        events = self._poll.poll(max(0, int(timeout_s * 1000)))
        if any(ev & select.POLLHUP for _, ev in events):
            select.select([], [], [], max(0.0, timeout_s))
            return False
        return any(ev & select.POLLIN for _, ev in events)

    def read(self) -> bytes:
        """Whatever the host wrote so far (non-blocking); b"" when nothing or disconnected."""
        try:
            return os.read(self._fd(), 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open
                return b""
            raise

    def write_some(self, data: bytes | memoryview) -> int:
        """Write what fits now; 0 when the pty buffer is full."""
        try:
            return os.write(self._fd(), data)
        except BlockingIOError:
            return 0

    def wait_writable(self, timeout_s: float) -> bool:
        poller = select.poll()
        poller.register(self._fd(), select.POLLOUT)
        return bool(poller.poll(max(0, int(timeout_s * 1000))))

    def unread_bytes(self) -> int:
        """Bytes written but not yet read by the host (0 when nobody holds the slave)."""
        if not self.path or not self.host_connected():
            return 0
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return 0
        try:
            raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
            return int(struct.unpack("i", raw)[0])
        finally:
            os.close(fd)
