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
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class TestRequest:
    """A vehicle test asked for now (an integrator's ``diagnose`` or ``clear_faults``):
    ``clear`` the addresses (bmw) whose fault memory to erase first; any non-empty set means
    mode 04 for obd2. ``done`` gets what ``on_test`` made of the test."""

    clear: frozenset[int] = frozenset()
    done: Future[object] = field(default_factory=Future)


class VehicleWatcher:
    """``open_channel(receive_ids)`` opens the diagnostics interface (raises
    DiagnosticsError); ``on_test`` gets each finished test (it must not raise) and returns
    what a request for it is answered with.

    Besides noticing cars by itself, it carries out tests asked for with :meth:`request`,
    between probes, one at a time."""

    def __init__(self, open_channel: Callable[[Sequence[int]], CanChannel], *,
                 protocol: Protocol, addresses: Sequence[int],
                 on_test: Callable[[VehicleTest], object], timing: DiagnosticTiming,
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
        self._requests: queue.Queue[TestRequest] = queue.Queue()

    def request(self, clear: frozenset[int] = frozenset()) -> Future[object]:
        """Test the vehicle now (thread-safe); the future gets ``on_test``'s result, or an
        InterfaceLost when the channel goes away first."""
        wanted = TestRequest(clear)
        self._requests.put(wanted)
        return wanted.done

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cbs-vehicle-watcher",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._requests.put(TestRequest())  # wakes the loop; answered as stopped below
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _receive_ids(self) -> list[int]:
        return bmw_receive_ids(self.addresses) if self.protocol == "bmw" else OBD2_RECEIVE_IDS

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
            try:
                self._watch(channel)
            except InterfaceLost as exc:
                log.warning("diagnostics channel lost: %s", exc)
                self.in_cycle = False
            finally:
                channel.close()

    def _test(self, channel: CanChannel, clear: frozenset[int] = frozenset()) -> object:
        test = (run_bmw_test(channel, self.addresses, timing=self.timing, clear=clear)
                if self.protocol == "bmw"
                else run_obd2_test(channel, timing=self.timing, clear=bool(clear)))
        self.tests += 1
        self.in_cycle = test.outcome != "aborted"
        result = self._on_test(test)
        channel.check()
        return result

    def _watch(self, channel: CanChannel) -> None:
        while not self._stop.is_set():
            present = self.probe(channel)
            if present and not self.in_cycle:
                log.info("a car answers on the diagnostics channel: testing it")
                self._test(channel)
            elif not present and self.in_cycle:
                log.info("the car on the diagnostics channel is silent: ignition cycle over")
                self.in_cycle = False
            try:
                wanted = self._requests.get(timeout=self.probe_interval_s)
            except queue.Empty:
                continue
            if self._stop.is_set():
                wanted.done.set_exception(InterfaceLost("the agent is stopping"))
                break
            log.info("vehicle test asked for%s", " (clearing fault memory first)"
                     if wanted.clear else "")
            try:
                wanted.done.set_result(self._test(channel, wanted.clear))
            except InterfaceLost as exc:
                wanted.done.set_exception(exc)
                raise

    def probe(self, channel: CanChannel) -> bool:
        """One presence probe; True if any ECU answered within P2. ``bmw``: TesterPresent to
        ``probes_in_flight`` addresses at a time (default all), until one answers."""
        if self.protocol == "obd2":
            return self._answered(channel, [(obd2.FUNCTIONAL_ID, obd2.functional_frame(
                obd2.current_data_request(0x00)))])
        request = uds.tester_present_request()
        step = self.timing.probe_batch(len(self.addresses))
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
