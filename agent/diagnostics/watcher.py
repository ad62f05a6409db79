"""The daemon's vehicle watcher: on the diagnostics CAN channel, notice a car, test it once
per ignition cycle, hand the result on.

Every ``probe_interval_s`` (2 s) the watcher sends one presence probe: ``bmw``, TesterPresent
as a single frame to every configured address at once; ``obd2``, ``01 00`` on 0x7DF. A car
answers within P2 when its ignition is on. The first answer after silence starts a new
ignition cycle: the watcher runs one whole test (agent/diagnostics/tester.py) and gives it to
``on_test``; it tests again only after the car has been silent for a probe (ignition off,
unplugged). It sends nothing on any bus but the one configured for diagnostics, and nothing
at all between probes and tests. An interface that cannot be opened or goes away is opened
again with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from typing import Protocol as TypingProtocol

from agent.diagnostics.tester import (
    OBD2_RECEIVE_IDS,
    bmw_receive_ids,
    run_bmw_test,
    run_obd2_test,
)
from agent.diagnostics.timing import DiagnosticTiming
from agent.diagnostics.transport import (
    BMW_REQUEST_ID,
    PADDING,
    CanChannel,
)
from agent.domain.diagnosis import Protocol, VehicleTest
from agent.errors import DiagnosticsError, InterfaceLost
from protocols import obd2, uds

log = logging.getLogger(__name__)

REOPEN_MIN_S = 1.0
REOPEN_MAX_S = 30.0


class TestMetrics(TypingProtocol):
    def observe(self, outcome: str, seconds: float) -> None: ...


COMMAND_TIMEOUT_S = 600.0


class VehicleWatcher:
    """``open_channel(receive_ids)`` opens the diagnostics interface (raises
    DiagnosticsError); ``on_test`` stores each finished test's report and returns what a
    command answers with (a failure to store raises).

    :meth:`command` runs a test on an integrator's request (``diagnose``, ``clear_faults``)
    on the watcher's own thread and channel, between two probes."""

    def __init__(self, open_channel: Callable[[Sequence[int]], CanChannel], *,
                 protocol: Protocol, addresses: Sequence[int],
                 on_test: Callable[[VehicleTest], dict[str, Any]], timing: DiagnosticTiming,
                 probe_interval_s: float = 2.0) -> None:
        self._open = open_channel
        self.protocol = protocol
        self.addresses = list(addresses)
        self._on_test = on_test
        self.timing = timing
        self.probe_interval_s = probe_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tests = 0
        self.in_cycle = False
        self.metrics: TestMetrics | None = None
        self._wake = threading.Condition()
        self._requests: list[_Request] = []
        self._open_now = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cbs-vehicle-watcher",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def command(self, protocol: str | None, clear: bool, ecu: int | None) -> dict[str, Any]:
        """One whole test now (``clear``: ClearDiagnosticInformation first, to ``ecu`` or to
        every present ECU); its report is stored like the watcher's own. Raises RuntimeError
        when the channel is not open or the test does not end in time."""
        if not self._open_now:
            raise RuntimeError("the diagnostics channel is not open (adapter unplugged?)")
        request = _Request(protocol or self.protocol, clear, ecu)
        with self._wake:
            self._requests.append(request)
            self._wake.notify_all()
        if not request.done.wait(COMMAND_TIMEOUT_S):
            raise RuntimeError("the vehicle test did not end in time")
        if request.error is not None:
            raise RuntimeError(request.error)
        return request.result or {}

    def _pause(self) -> None:
        """Wait for the next probe, or for a command."""
        with self._wake:
            self._wake.wait_for(lambda: bool(self._requests) or self._stop.is_set(),
                                timeout=self.probe_interval_s)

    def _serve(self, channel: CanChannel) -> None:
        while True:
            with self._wake:
                if not self._requests:
                    return
                request = self._requests.pop(0)
            try:
                if request.clear:
                    log.warning("clearing fault memory on an integrator's command: %s",
                                "every ECU" if request.ecu is None else f"ECU 0x{request.ecu:02X}")
                test = self._test(channel, request.protocol, request.clear, request.ecu)
                request.result = self._on_test(test)
            except InterfaceLost as exc:
                request.error = f"the diagnostics interface went away: {exc}"
                request.done.set()
                raise
            except Exception as exc:  # the report could not be stored: say so
                request.error = f"{type(exc).__name__}: {exc}"
            request.done.set()

    def _test(self, channel: CanChannel, protocol: str, clear: bool = False,
              ecu: int | None = None) -> VehicleTest:
        started = time.monotonic()
        if protocol != self.protocol:
            channel.listen(self._receive_ids(protocol))
        try:
            if protocol == "bmw":
                targets = frozenset(self.addresses if ecu is None else [ecu]) if clear \
                    else frozenset()
                test = run_bmw_test(channel, self.addresses, timing=self.timing, clear=targets)
            else:
                test = run_obd2_test(channel, timing=self.timing, clear=clear)
        finally:
            if protocol != self.protocol:
                channel.listen(self._receive_ids())
        self.tests += 1
        if self.metrics is not None:
            self.metrics.observe(test.outcome, time.monotonic() - started)
        return test

    def _receive_ids(self, protocol: str | None = None) -> list[int]:
        if (protocol or self.protocol) == "bmw":
            return bmw_receive_ids(self.addresses)
        return OBD2_RECEIVE_IDS

    def _run(self) -> None:
        delay = REOPEN_MIN_S
        while not self._stop.is_set():
            try:
                channel = self._open(self._receive_ids())
            except DiagnosticsError as exc:
                log.warning("diagnostics channel: %s (trying again in %.0f s)", exc, delay)
                self._stop.wait(delay)
                delay = min(REOPEN_MAX_S, delay * 2)
                continue
            delay = REOPEN_MIN_S
            self._open_now = True
            try:
                self._watch(channel)
            except InterfaceLost as exc:
                log.warning("diagnostics channel lost: %s", exc)
                self.in_cycle = False
            finally:
                self._open_now = False
                channel.close()
                self._fail_waiting("the diagnostics channel closed")

    def _fail_waiting(self, why: str) -> None:
        with self._wake:
            waiting, self._requests = self._requests, []
        for request in waiting:
            request.error = why
            request.done.set()

    def _watch(self, channel: CanChannel) -> None:
        while not self._stop.is_set():
            self._serve(channel)
            present = self.probe(channel)
            if present and not self.in_cycle:
                log.info("a car answers on the diagnostics channel: testing it")
                test = self._test(channel, self.protocol)
                self.in_cycle = test.outcome != "aborted"
                try:
                    self._on_test(test)
                except Exception:  # logged by on_test; the watcher goes on
                    log.exception("the vehicle test's report could not be stored")
                channel.check()
            elif not present and self.in_cycle:
                log.info("the car on the diagnostics channel is silent: ignition cycle over")
                self.in_cycle = False
            self._pause()

    def probe(self, channel: CanChannel) -> bool:
        """One presence probe; True if any ECU answered within P2. ``bmw``: TesterPresent to
        ``max_in_flight`` addresses at a time, until one answers."""
        if self.protocol == "obd2":
            return self._answered(channel, [(obd2.FUNCTIONAL_ID, obd2.functional_frame(
                obd2.current_data_request(0x00)))])
        request = uds.tester_present_request()
        step = max(1, self.timing.max_in_flight)
        for start in range(0, len(self.addresses), step):
            frames = [(BMW_REQUEST_ID, (bytes((a, len(request))) + request).ljust(
                8, bytes((PADDING,)))) for a in self.addresses[start:start + step]]
            if self._answered(channel, frames):
                return True
            if self._stop.is_set():
                break
        return False

    def _answered(self, channel: CanChannel, frames: list[tuple[int, bytes]]) -> bool:
        sent_at = time.monotonic()
        for ident, data in frames:
            channel.send_raw(ident, data)
        self._stop.wait(self.timing.p2_s)
        channel.check()
        return any(at > sent_at for at in list(channel.last_frame_at.values()))


class _Request:
    """A command's test, handed to the watcher's thread."""

    def __init__(self, protocol: str, clear: bool, ecu: int | None) -> None:
        self.protocol = protocol
        self.clear = clear
        self.ecu = ecu
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
