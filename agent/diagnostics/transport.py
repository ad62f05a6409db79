"""The vehicle test's CAN side: one python-can bus, one notifier, one can-isotp stack per ECU.

:class:`CanChannel` opens the interface, keeps only the identifiers the test listens to
(software filters: other traffic on the bus never reaches a stack), and notices when the
interface goes away (the notifier's ``on_error``). :class:`IsoTpLink` is one ECU's ISO-TP
stack (can-isotp 2.x's state machine in :class:`InlineStack`, a ``NotifierBasedCanStack`` that
runs in the notifier's and the caller's threads, not in threads of its own) with the request rules of the spec on top:

* P2 for the first frame of an answer; while an answer's frames keep coming, N_Cr per frame
  (the stack reports a broken exchange itself);
* ``7F sid 78`` response pending: wait P2* more, at most ``max_pending`` times in a row;
* ``7F sid 21`` busy: ask again after ``busy_retry_s``, ``busy_retries`` times;
* a late answer to an earlier request, or an answer of another service, is ignored.

Why not udsoncan's client here: it has no bound on consecutive 0x78 answers (the spec allows
ten), retries nothing on 0x21, and would parse the answers a second time beside the sans-IO
codecs of protocols/uds.py. The rules above are a few lines over the ISO-TP stack.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import can
import isotp

from agent.diagnostics.timing import DiagnosticTiming
from agent.domain.diagnosis import FailureKind
from agent.errors import DiagnosticsError, InterfaceLost
from protocols.uds import (
    NRC_BUSY_REPEAT,
    NRC_RESPONSE_PENDING,
    NegativeResponse,
    answers,
    negative_response,
)

log = logging.getLogger(__name__)

TESTER_ADDRESS = 0xF1
BMW_REQUEST_ID = 0x6F1
BMW_RESPONSE_BASE = 0x600
PADDING = 0xCC
_POLL_S = 0.01  # longest wait in one recv: how soon a lost interface or a new frame is seen

# ISO-TP errors that break the exchange under way (the others are noise such as a stray
# flow control, logged at debug).
_BROKEN = (isotp.errors.WrongSequenceNumberError, isotp.errors.ConsecutiveFrameTimeoutError,
           isotp.errors.FlowControlTimeoutError, isotp.errors.OverflowError,
           isotp.errors.FrameTooLongError, isotp.errors.MaximumWaitFrameReachedError,
           isotp.errors.ReceptionInterruptedWithFirstFrameError,
           isotp.errors.ReceptionInterruptedWithSingleFrameError,
           isotp.errors.ChangingInvalidRXDLError)


@dataclass(frozen=True, slots=True)
class Answer:
    """A positive answer to the request."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """A negative response other than 0x78 (and 0x21 once its retries are spent)."""

    nrc: int
    name: str


@dataclass(frozen=True, slots=True)
class Failed:
    """No usable answer: timeout, or a broken ISO-TP exchange."""

    kind: FailureKind
    detail: str
    nrc: int | None = None


Reply = Answer | Refused | Failed


class _Watch(can.Listener):
    """Records when each listened identifier last carried a frame, and a lost interface."""

    def __init__(self, lost: threading.Event, seen: dict[int, float]) -> None:
        self._lost = lost
        self._seen = seen
        self.reason: str | None = None

    def on_message_received(self, msg: can.Message) -> None:
        self._seen[msg.arbitration_id] = time.monotonic()

    def on_error(self, exc: Exception) -> None:
        if not self._lost.is_set():
            self.reason = f"{type(exc).__name__}: {exc}"
            log.error("diagnostics interface lost: %s", self.reason)
        self._lost.set()


class CanChannel:
    """The diagnostics CAN interface. ``receive_ids``: the only identifiers let through.
    Raises DiagnosticsError when the interface cannot be opened."""

    def __init__(self, interface: str, channel: str, *, bitrate: int,
                 receive_ids: Iterable[int], bus: can.BusABC | None = None) -> None:
        self.interface, self.channel = interface, channel
        try:
            self.bus = bus if bus is not None else _open_bus(interface, channel, bitrate)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise DiagnosticsError(f"diagnostics CAN interface {interface} {channel}: "
                                   f"cannot open: {exc}") from exc
        ids = sorted(set(receive_ids))
        self.bus.set_filters([{"can_id": i, "can_mask": 0x7FF, "extended": False} for i in ids])
        self.lost = threading.Event()
        self.last_frame_at: dict[int, float] = {}
        self._watch = _Watch(self.lost, self.last_frame_at)
        self.notifier = can.Notifier(self.bus, [self._watch], timeout=0.05)
        self.frames_sent = 0
        # When each (identifier, first data byte) last went out: a request's P2 counts from
        # the moment it was written to the interface, not from when it was queued on a stack
        # whose thread may start later on a busy machine.
        self.sent_at: dict[tuple[int, int], float] = {}
        self._bus_send = self.bus.send
        self.bus.send = self._send_and_stamp  # type: ignore[method-assign]

    def _send_and_stamp(self, msg: can.Message, timeout: float | None = None) -> None:
        self._bus_send(msg, timeout)
        self.sent_at[(msg.arbitration_id, msg.data[0] if msg.data else -1)] = time.monotonic()
        self.frames_sent += 1

    @property
    def lost_reason(self) -> str:
        return self._watch.reason or "interface lost"

    def check(self) -> None:
        if self.lost.is_set():
            raise InterfaceLost(f"{self.interface} {self.channel}: {self.lost_reason}")

    def send_raw(self, arbitration_id: int, data: bytes) -> None:
        """One frame as it is (functional OBD-II requests). Raises InterfaceLost."""
        self.check()
        try:
            self.bus.send(can.Message(arbitration_id=arbitration_id, data=data,
                                      is_extended_id=False))
        except (can.CanError, OSError) as exc:
            self.lose(exc)
            raise InterfaceLost(f"{self.interface} {self.channel}: {exc}") from exc

    def lose(self, exc: Exception) -> None:
        """The interface refused a frame: it has gone (as when a read fails)."""
        self._watch.on_error(exc)

    def close(self) -> None:
        try:
            self.notifier.stop(timeout=1.0)
        finally:
            try:
                self.bus.shutdown()
            except (can.CanError, OSError) as exc:  # already gone
                log.debug("closing the diagnostics interface: %s", exc)


#: SLCAN adapters are read with the agent's own python-can interface for them (same Lawicel
#: protocol, agent/readers/fast_slcan.py, registered as ``fastslcan``): python-can's stock
#: ``slcan`` reads a byte per call, and on a 2-core appliance with a stack thread per ECU its
#: reads lagged so far behind that flow control went out 100-200 ms late and probes missed P2.
FASTER_INTERFACES = {"slcan": "fastslcan"}


def _open_bus(interface: str, channel: str, bitrate: int) -> can.BusABC:
    faster = FASTER_INTERFACES.get(interface)
    if faster is not None:
        try:
            return can.Bus(interface=faster, channel=channel, bitrate=bitrate)
        except (ImportError, ValueError, NotImplementedError) as exc:  # plugin not installed
            log.debug("%s unavailable (%s): using python-can's %s", faster, exc, interface)
    return can.Bus(interface=interface, channel=channel, bitrate=bitrate)


def bmw_address(address: int) -> isotp.Address:
    return isotp.Address(isotp.AddressingMode.Extended_11bits, txid=BMW_REQUEST_ID,
                         rxid=BMW_RESPONSE_BASE + address, target_address=address,
                         source_address=TESTER_ADDRESS)


def normal_address(txid: int, rxid: int) -> isotp.Address:
    return isotp.Address(isotp.AddressingMode.Normal_11bits, txid=txid, rxid=rxid)


class InlineStack(isotp.NotifierBasedCanStack):
    """One ECU's can-isotp stack on the shared bus and notifier, its state machine
    (can-isotp's own ``TransportLayerLogic``) driven in the threads that have work for it
    instead of in two threads of its own.

    The stock ``NotifierBasedCanStack`` hands every frame across three threads: python-can's
    notifier puts it in a queue, can-isotp's relay thread moves it to a second queue, and its
    main thread runs the state machine and puts the payload in the receive queue for the
    caller's thread; a request goes the other way through the relay queue and the main
    thread before it reaches the bus. On two busy cores each hand-over cost 0.1-0.3 ms, and a
    two-frame answer needs two of the tester's turnarounds (flow control after the first
    frame, the next request after the last), so with ECUs answering in 2 ms the whole test
    took 1.3-1.8 x its bound. Here:

    * a frame with this ECU's identifier is processed in the notifier's thread as it
      arrives: a first frame's flow control goes out from there, a complete payload lands in
      the receive queue the caller waits on (one hand-over, to the caller);
    * :meth:`send` runs the transmit side in the caller's thread: a single frame is on the
      bus when it returns; a multi-frame message is sent to the end (the notifier's thread
      sends the consecutive frames a flow control allows at once; the caller's thread waits
      out STmin and N_Bs), so ``blocking_send`` is what this stack always does;
    * :meth:`recv` runs the state machine's timers (N_Cr) before it waits, so a missing
      consecutive frame is reported while someone waits for the answer.

    A flow control the interface refuses to send raises in the notifier's thread, which
    reports it to the channel's listener as a lost interface, as a failed read is.

    A lock keeps the two threads out of the state machine at the same time. The other
    identifiers on the bus never reach the state machine (the stock stack queues every frame
    of the bus and lets its threads drop the others)."""

    _TX_POLL_S = 0.01  # longest wait while a multi-frame send waits for flow control

    def __init__(self, bus: can.BusABC, notifier: can.Notifier, rx_id: int,
                 **kwargs: Any) -> None:
        self._rx_id = rx_id
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # the notifier moved the state machine
        self._inbox: deque[isotp.CanMessage] = deque()
        self._listening = False
        params = dict(kwargs.pop("params", None) or {})
        params["blocking_send"] = False  # send() completes the transmission itself
        super().__init__(bus, notifier, params=params, **kwargs)
        self._set_rxfn(self._next_frame)
        self.post_send_callback = None  # it would wake the relay thread, which never runs

    def _next_frame(self, timeout: float) -> isotp.CanMessage | None:
        return self._inbox.popleft() if self._inbox else None

    def _run(self, *, do_rx: bool = True) -> None:
        isotp.TransportLayerLogic.process(self, rx_timeout=0.0, do_rx=do_rx)

    def start(self) -> None:
        """Listen on the notifier (no thread is started)."""
        with self._lock:
            self._listening = True
        self.notifier.add_listener(self._on_message_received)

    def stop(self) -> None:
        try:
            self.notifier.remove_listener(self._on_message_received)
        except ValueError:  # never started, or stopped already
            pass
        with self._lock:
            self._listening = False
            self._inbox.clear()
            isotp.TransportLayerLogic.reset(self)
            self._changed.notify_all()

    def _on_message_received(self, msg: can.Message) -> None:  # the notifier's thread
        if msg.arbitration_id != self._rx_id or msg.is_error_frame or msg.is_remote_frame:
            return
        frame = isotp.CanMessage(arbitration_id=msg.arbitration_id, dlc=msg.dlc,
                                 data=msg.data, extended_id=msg.is_extended_id,
                                 is_fd=msg.is_fd, bitrate_switch=msg.bitrate_switch)
        with self._lock:
            if not self._listening:
                return
            self._inbox.append(frame)
            self._run()
            self._changed.notify_all()

    def send(self, data: Any, target_address_type: Any = None,
             send_timeout: float | None = None) -> None:
        """Send ``data`` to the end (see the class docstring); raises as can-isotp's send does
        for a message it cannot take."""
        with self._lock:
            isotp.TransportLayerLogic.send(self, data, target_address_type)
            self._run(do_rx=False)
            while self._listening and self.transmitting():
                delay = self.next_cf_delay()
                self._changed.wait(self._TX_POLL_S if delay is None else max(0.0, delay))
                self._run(do_rx=False)

    def recv(self, block: bool = False, timeout: float | None = None) -> bytearray | None:
        with self._lock:
            self._run()  # timers: a consecutive frame overdue is reported now
        return super().recv(block=block, timeout=timeout)


class IsoTpLink:
    """One ECU's ISO-TP stack and the request rules (module docstring). Not thread-safe:
    one request at a time, from one thread."""

    def __init__(self, channel: CanChannel, address: isotp.Address, rx_id: int,
                 timing: DiagnosticTiming, *, sleep: Callable[[float], None] = time.sleep,
                 tx_key: tuple[int, int] | None = None) -> None:
        self.channel = channel
        self.rx_id = rx_id
        self.tx_key = tx_key  # (identifier, first byte) of this ECU's requests, if distinct
        self.timing = timing
        self._sleep = sleep
        self._errors: deque[tuple[float, Exception]] = deque(maxlen=16)
        params: dict[str, Any] = {
            "stmin": 0, "blocksize": 0, "tx_padding": PADDING, "tx_data_length": 8,
            "rx_flowcontrol_timeout": int(timing.n_bs_s * 1000),
            "rx_consecutive_frame_timeout": int(timing.n_cr_s * 1000),
            "wftmax": timing.max_wait_frames, "max_frame_size": 4095,
        }
        self.stack = InlineStack(channel.bus, channel.notifier, rx_id, address=address,
                                     error_handler=self._on_error, params=params)
        self.stack.start()

    def _on_error(self, exc: Exception) -> None:  # the stack's thread
        if isinstance(exc, _BROKEN):
            self._errors.append((time.monotonic(), exc))
        else:
            log.debug("ISO-TP %03X: %s", self.rx_id, exc)

    def close(self) -> None:
        self.stack.stop()

    def drain(self) -> None:
        """Forget answers nobody waits for any more (a late answer to an earlier request)."""
        while self.stack.available():
            self.stack.recv(block=False)

    def arm(self) -> None:
        """Before a request: forget stale answers and the errors of earlier exchanges."""
        self.drain()
        self._errors.clear()

    def send(self, request: bytes) -> float:
        """Queue ``request`` on the stack; returns when (monotonic) it was handed over."""
        self.channel.check()
        self.arm()
        sent_at = time.monotonic()
        try:
            self.stack.send(request)
        except (can.CanError, OSError) as exc:
            self.channel.lose(exc)
            raise InterfaceLost(f"{self.channel.interface} {self.channel.channel}: {exc}") from exc
        return sent_at

    def request(self, request: bytes) -> Reply:
        """Ask and wait by the rules; raises InterfaceLost when the interface went away."""
        for attempt in range(self.timing.busy_retries + 1):
            sent_at = self.send(request)
            reply = self.await_reply(request, sent_at)
            if isinstance(reply, Refused) and reply.nrc == NRC_BUSY_REPEAT:
                if attempt < self.timing.busy_retries:
                    self._sleep(self.timing.busy_retry_s)
                    continue
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def await_reply(self, request: bytes, sent_at: float) -> Reply:
        """Wait for the answer to ``request`` sent at ``sent_at`` (see the module docstring)."""
        timing = self.timing
        mark = sent_at  # frames after this belong to the answer we wait for
        deadline = sent_at + timing.p2_s
        pending = 0
        while True:
            now = time.monotonic()
            payload = self.stack.recv(block=True, timeout=max(0.0, min(_POLL_S, deadline - now)))
            self.channel.check()
            if payload is not None:
                payload = bytes(payload)
                if not answers(request, payload):
                    log.debug("ISO-TP %03X: ignored %s (not an answer to %s)", self.rx_id,
                              payload[:8].hex(), request.hex())
                    continue
                negative: NegativeResponse | None = negative_response(payload)
                if negative is None:
                    return Answer(payload)
                if negative.nrc != NRC_RESPONSE_PENDING:
                    return Refused(negative.nrc, negative.name)
                pending += 1
                if pending > timing.max_pending:
                    return Failed("nrc", f"more than {timing.max_pending} response-pending "
                                         "answers in a row", NRC_RESPONSE_PENDING)
                mark = time.monotonic()
                deadline = mark + timing.p2_star_s
                continue
            broken = [exc for at, exc in self._errors if at >= mark]
            if broken:
                return Failed("transport", f"{type(broken[0]).__name__}: {broken[0]}")
            if not pending and self.tx_key is not None:
                written = self.channel.sent_at.get(self.tx_key, 0.0)
                if written > sent_at:  # P2 from when the request went to the interface
                    deadline = max(deadline, written + timing.p2_s)
            now = time.monotonic()
            last = self.channel.last_frame_at.get(self.rx_id, 0.0)
            if last > mark:  # an answer is on its way: its frames may take longer than P2
                deadline = max(deadline, last + timing.n_cr_s + _POLL_S)
            if now >= deadline:
                if pending:
                    return Failed("timeout", f"no answer within P2* ({timing.p2_star_s:g} s) "
                                             f"after response-pending")
                if last > mark:
                    return Failed("transport", "answer incomplete: consecutive frame missing")
                return Failed("timeout", f"no answer within P2 ({timing.p2_s * 1000:g} ms)")
