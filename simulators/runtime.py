"""The I/O shell shared by the pty simulators: port life cycle, waiting for the agent, the
loop over key reads, signals, drain, ground truth.

Template method: :class:`PtySimulator.run` owns the life cycle (open the pty, announce its
path, wait for the agent, play ``sessions`` reads ``interval_s`` apart, re-plug on
``--reopen-every``/SIGUSR1, linger or drain, clean up on SIGTERM/SIGINT); a transport
implements how host bytes are answered and how one read is played.

Everything runs on one thread. Waiting is polling the pty master with a short tick, so
host commands are answered and stop requests honoured within a tick, whatever the agent
does (reads nothing, disconnects, reconnects).
"""

from __future__ import annotations

import logging
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from simulators.faults import FaultRates, Transport
from simulators.fleet import Fleet
from simulators.playback import DEFAULT_AGENT_TIMEOUT_S, DEFAULT_QUIET_S, ReadPlanner
from simulators.pty_port import PtyPort
from simulators.transmission import PlayedSession
from simulators.truth import TruthWriter, truth_record

logger = logging.getLogger(__name__)

DRAIN_SETTLE_S = 0.15


@dataclass
class SimOptions:
    """Options common to both simulators (the CLI flags of the same names)."""

    seed: int = 0
    base_date: date | None = None
    vehicles: int = 25
    edge_rate: float = 0.03
    sessions: int | None = None  # None: play forever
    interval_s: float = 2.0
    linger: bool = False
    faults: FaultRates | None = None
    capture: Path | None = None
    truth: Path | None = None
    link: Path | None = None
    reopen_every: int | None = None
    unplug_mid_session_every: int | None = None
    wait_open: bool = True
    start_delay_s: float = 0.3
    quiet_s: float = DEFAULT_QUIET_S
    agent_timeout_s: float = DEFAULT_AGENT_TIMEOUT_S
    drain_timeout_s: float = 5.0


class PtySimulator(ABC):
    """Base of the serial-reader and SLCAN simulators; see the module docstring."""

    transport: Transport
    tick_s = 0.05

    def __init__(self, options: SimOptions, *, stdout: TextIO) -> None:
        self.options = options
        self.stdout = stdout
        self.fleet = Fleet(options.seed, options.base_date, vehicle_count=options.vehicles,
                           edge_rate=options.edge_rate)
        rates = options.faults if options.faults is not None else FaultRates(self.transport)
        self.planner = ReadPlanner(self.transport, rates, seed=options.seed,
                                   quiet_s=options.quiet_s,
                                   agent_timeout_s=options.agent_timeout_s)
        self.port = PtyPort(link=options.link)
        self.truth = TruthWriter(options.truth)
        self.seq = 0
        self.played = 0
        self.disturbed = False  # set while a transmission could not reach the host
        self._stop = False
        self._reopen_requested = False
        self._draining = False

    # -- hooks ------------------------------------------------------------------------------

    @abstractmethod
    def _on_host_bytes(self, data: bytes) -> None:
        """Bytes from the agent; queue answers (they are written at the next boundary)."""

    @abstractmethod
    def _play_read(self, read_index: int) -> None:
        """Play key read ``read_index`` of the fleet, ground truth included."""

    def _ready(self) -> bool:
        """True when the host can receive what we play."""
        return self.port.host_connected()

    def _on_port_opened(self) -> None:
        """A new pty (start or re-plug): reset per-device state. The reader's session
        counter restarts, as after a power cycle."""
        self.seq = 0

    def _on_powered_up(self) -> None:
        """The device is connected and settled after start or re-plug."""

    def _flush_replies(self) -> None:
        """Write queued answers to the host; called between sends only."""

    def _on_tick(self, now: float) -> None:
        """Called every tick while waiting (background traffic)."""

    def _close_extras(self) -> None:
        """Close transport-specific resources (capture writers)."""

    # -- life cycle -------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop = True

    def request_reopen(self) -> None:
        self._reopen_requested = True

    def run(self) -> int:
        """Run until the reads are played (and drained) or a stop signal; returns 0."""
        with self._signals():
            try:
                self._open_port()
                self._main()
            finally:
                self._close_extras()
                self.truth.close()
                self.port.close()
                self.port.remove_link()
        logger.info("%s simulator done: %d session(s) played", self.transport, self.played)
        return 0

    def _main(self) -> None:
        opts = self.options
        if not self._become_ready(powered_up=True):
            return
        read_index = 0
        while not self._stop and (opts.sessions is None or read_index < opts.sessions):
            if read_index > 0 and not self._wait(opts.interval_s):
                return
            if self._reopen_requested and not self._replug():
                return
            if opts.wait_open and not self._ready() and not self._become_ready(powered_up=False):
                return
            self._play_read(read_index)
            read_index += 1
            more = opts.sessions is None or read_index < opts.sessions
            if opts.reopen_every and read_index % opts.reopen_every == 0 and more:
                self._reopen_requested = True
        if opts.linger:
            while not self._stop:
                if self._reopen_requested and not self._replug():
                    return
                self._wait(0.2)
        else:
            self._drain()

    def _open_port(self) -> None:
        path = self.port.open()
        self._on_port_opened()
        print(path, file=self.stdout, flush=True)

    def _unplug_now(self) -> bool:
        """Unplugged in the middle of what it is sending: what was written and read stays
        read, the rest never goes out; then plugged back (a new pty). False when stopped."""
        self.disturbed = True
        logger.info("unplugged mid-session: closing %s", self.port.path)
        self._drain()
        self.port.close()
        self._open_port()
        return self._become_ready(powered_up=True)

    def _unplugs_mid_session(self, read_index: int) -> bool:
        every = self.options.unplug_mid_session_every
        return bool(every) and (read_index + 1) % every == 0

    def _replug(self) -> bool:
        """Simulate the device unplugged and plugged back: a new pty (and path)."""
        self._reopen_requested = False
        self._drain()
        logger.info("re-plugging: closing %s", self.port.path)
        self.port.close()
        self._open_port()
        return self._become_ready(powered_up=True)

    def _become_ready(self, *, powered_up: bool) -> bool:
        """Wait for the host (if ``wait_open``), then ``start_delay_s`` so that the host's
        own flush on open (pyserial resets its input buffer) cannot eat our first bytes."""
        if self.options.wait_open:
            waiting_since = time.monotonic()
            while not self._ready():
                if not self._wait(self.tick_s):
                    return False
                if self._reopen_requested:
                    self._reopen_requested = False
                    self.port.close()
                    self._open_port()
                if time.monotonic() - waiting_since > 10:
                    logger.info("still waiting for the host to open %s", self.port.path)
                    waiting_since = time.monotonic()
        if not self._wait(self.options.start_delay_s):
            return False
        if powered_up:
            self._on_powered_up()
        return True

    def _drain(self) -> None:
        """Wait (bounded) until the host has read everything written: unread bytes are lost
        when the master closes."""
        self._draining = True
        try:
            deadline = time.monotonic() + self.options.drain_timeout_s
            empty_since: float | None = None
            # The kernel moves written bytes to the slave's input queue asynchronously, so
            # one empty reading right after a write proves nothing: it must stay empty.
            while not self._stop and time.monotonic() < deadline:
                now = time.monotonic()
                if self.port.unread_bytes():
                    empty_since = None
                elif empty_since is None:
                    empty_since = now
                elif now - empty_since >= DRAIN_SETTLE_S:
                    break
                self._wait(0.02)
        finally:
            self._draining = False

    @contextmanager
    def _signals(self) -> Iterator[None]:
        def stop(signum: int, frame: FrameType | None) -> None:
            logger.info("signal %d: stopping", signum)
            self._stop = True

        def reopen(signum: int, frame: FrameType | None) -> None:
            self._reopen_requested = True

        previous: dict[signal.Signals, Any] = {}
        try:
            for sig, handler in ((signal.SIGTERM, stop), (signal.SIGINT, stop),
                                 (signal.SIGUSR1, reopen)):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (tests running a simulator in a thread)
            pass
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- waiting and writing ----------------------------------------------------------------

    def _service(self) -> None:
        self._read_host()
        self._flush_replies()
        self._on_tick(time.monotonic())

    def _read_host(self) -> None:
        data = self.port.read()
        if data:
            self._on_host_bytes(data)

    def _wait(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        """Serve the host for ``seconds`` (or until ``until()``); False when stopping."""
        deadline = time.monotonic() + seconds
        while True:
            self._service()
            if self._stop:
                return False
            if until is not None and until():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self.port.wait_readable(min(remaining, self.tick_s))

    def _write(self, data: bytes, *, droppable: bool = False) -> bool:
        """Write ``data`` whole. Returns False when it was dropped: the host is not
        connected (the bytes would be flushed by its next open anyway), a ``droppable``
        write found no room, or we are stopping. A started write is always completed."""
        if not self.port.host_connected():
            self.disturbed = True
            self._captured(data)  # the reader sent it; nobody had the port open
            return False
        view = memoryview(data)
        while view:
            written = self.port.write_some(view)
            if written:
                view = view[written:]
                continue
            if droppable and len(view) == len(data):
                return False
            if self._stop:
                return False
            self.port.wait_writable(self.tick_s)
            self._read_host()  # keep taking commands; answers wait for the boundary
            if not self.port.host_connected():
                logger.debug("host went away after %d of %d bytes", len(data) - len(view),
                             len(data))
                self.disturbed = True
                return False
        self._captured(data)
        return True

    def _captured(self, data: bytes) -> None:
        """Hook: ``data`` was sent whole (to the host, or to no one when no host had the
        port open)."""

    # -- ground truth -----------------------------------------------------------------------

    def _record(self, sessions: tuple[PlayedSession, ...]) -> None:
        at = time.time()
        for played in sessions:
            self.played += 1
            record = truth_record(played, n=self.played, transport=str(self.transport),
                                  disturbed=self.disturbed, at=at)
            self.truth.write(record)
            logger.info("session %d seq %d %s: %s%s%s", self.played, played.session.session_seq,
                        played.session.vin, played.expected,
                        f" {played.reason}" if played.reason else "",
                        f" [{', '.join(played.faults)}]" if played.faults else "")
