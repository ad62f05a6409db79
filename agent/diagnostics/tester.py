"""The vehicle test: find the ECUs, read who they are and what faults they store.

:func:`run_bmw_test` probes every configured address at once (one worker per address; the
probe is one frame, and ``probes_in_flight``, default all, go out together, so an empty bus
is known after one P2) and asks each present ECU the spec's chain: fault memory,
identification, occurrence counts, KOMBI's mileage, with at most ``max_in_flight`` of these
requests on the bus together and one at a time per ECU. :func:`run_obd2_test` asks
generic OBD-II ECUs by functional requests.

Every request's result lands in the ECU's :class:`~agent.domain.diagnosis.EcuReading`
as soon as it is known, so a test that ends early (the interface went away: outcome
``aborted``) keeps everything read so far. One ECU's failure (a timeout, a refusal, a
broken ISO-TP exchange, a malformed answer) is recorded on that ECU and never stops the
others. Raises only DiagnosticsError (the interface could not be opened).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TypeVar

from agent.diagnostics.timing import DiagnosticTiming
from agent.diagnostics.transport import (
    BMW_REQUEST_ID,
    BMW_RESPONSE_BASE,
    Answer,
    CanChannel,
    Failed,
    IsoTpLink,
    Refused,
    Reply,
    bmw_address,
    normal_address,
)
from agent.domain.diagnosis import (
    KOMBI_ADDRESS,
    EcuReading,
    Step,
    VehicleTest,
    bmw_ecu_names,
)
from agent.errors import InterfaceLost
from protocols import obd2, uds
from protocols.dtc import OBD_DTC_MODES, OBD_STORED
from protocols.errors import MalformedResponseError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

IDENT_DIDS: tuple[tuple[int, str], ...] = (
    (uds.DID_VIN, "vin"), (uds.DID_SPARE_PART, "part_number"), (uds.DID_SOFTWARE, "software"),
    (uds.DID_HARDWARE, "hardware"), (uds.DID_SERIAL, "serial"))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def bmw_receive_ids(addresses: Iterable[int]) -> list[int]:
    return [BMW_RESPONSE_BASE + a for a in addresses]


OBD2_RECEIVE_IDS = list(range(obd2.FIRST_RESPONSE_ID, obd2.FIRST_RESPONSE_ID + obd2.MAX_ECUS))


class _Abort(Exception):
    """Internal: the interface went away; unwind this ECU's worker."""


class _Slots:
    """At most ``limit`` requests in flight; a free slot goes to the waiting ECU with the
    most requests still ahead of it (then the one that asked first). The test ends with its
    longest chain (a unit with hundreds of DTCs to count), so that chain never waits behind
    ECUs that have two requests left: the whole test then takes about as long as it.

    The critical path: once one ECU's chain ahead (its requests ahead times its own time per
    request) is at least :data:`CRITICAL_DOMINANCE` times every other's, the other ECUs
    share only as many slots as they need to finish within :data:`SLACK_SHARE` of the
    critical chain's time (one or two, for a unit with 150 DTCs to count against ECUs with
    six requests left; requests already in flight finish). On a bus at its limit every
    frame of another ECU's answer that is queued before one of the critical ECU's frames
    delays the critical chain, and so the whole test; a few others at a time fill the
    critical ECU's answer delays instead. Owners that never said how much is ahead of them
    (``slot(remaining)`` without an owner) are served by count alone.

    A freed slot wakes only the waiter at the head (each waits on an event of its own): with
    one condition for all, every answer woke every waiting worker to find it was not its
    turn, a fifth of the tester's CPU in a 14-ECU test."""

    #: How many times longer than every other chain ahead the critical one must be.
    CRITICAL_DOMINANCE = 3.0
    #: The share of the critical chain's time the others' requests may take, one at a time.
    SLACK_SHARE = 0.5

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._free = self._limit
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, int, threading.Event, object]] = []
        self._order = itertools.count()
        self._ahead: dict[object, float] = {}  # owner -> its chain's time ahead, seconds
        self._side_in_flight = 0  # requests in flight of owners other than the critical one
        self._critical: object = None
        self._side_limit = self._limit

    def ahead(self, owner: object, seconds: float) -> None:
        """``owner``'s chain has about ``seconds`` of requests ahead (0: it is done)."""
        with self._lock:
            if seconds > 0:
                self._ahead[owner] = seconds
            else:
                self._ahead.pop(owner, None)
            self._plan()
            self._wake_head()

    def _plan(self) -> None:  # under the lock
        """Which owner is the critical path, and how many slots the others share."""
        self._critical, self._side_limit = None, self._limit
        if len(self._ahead) < 2:
            return
        critical = max(self._ahead, key=self._ahead.__getitem__)
        longest = self._ahead[critical]
        others = [s for o, s in self._ahead.items() if o is not critical]
        if longest < self.CRITICAL_DOMINANCE * max(others):
            return
        needed = math.ceil(sum(others) / (longest * self.SLACK_SHARE))
        self._critical = critical
        self._side_limit = max(1, min(self._limit - 1, needed))

    def _admits(self, owner: object) -> bool:  # under the lock
        if self._free <= 0:
            return False
        return (owner is None or owner is self._critical
                or self._side_in_flight < self._side_limit)

    def _next(self) -> tuple[int, int, threading.Event, object] | None:  # under the lock
        """The waiter to serve next: the critical owner's, else the head of the queue."""
        if self._critical is not None:
            for entry in self._waiting:
                if entry[3] is self._critical:
                    return entry
        return self._waiting[0] if self._waiting else None

    def _wake_head(self) -> None:  # under the lock
        entry = self._next()
        if entry is not None and self._admits(entry[3]):
            entry[2].set()

    @contextmanager
    def slot(self, remaining: int, owner: object = None) -> Iterator[None]:
        turn = threading.Event()
        entry = (-remaining, next(self._order), turn, owner)
        with self._lock:
            heapq.heappush(self._waiting, entry)
            self._wake_head()
        side = False
        while True:
            with self._lock:
                if self._next() is entry and self._admits(owner):
                    self._waiting.remove(entry)
                    heapq.heapify(self._waiting)
                    self._free -= 1
                    side = owner is not None and owner is not self._critical
                    self._side_in_flight += side
                    self._wake_head()  # a slot may still be free for the next in line
                    break
            turn.wait()
            turn.clear()  # the state is checked again under the lock
        try:
            yield
        finally:
            with self._lock:
                self._free += 1
                self._side_in_flight -= side
                self._wake_head()


#: What an ECU's chain counts after the probe, before its fault list is known: 19 02, 5 DIDs.
_CHAIN_HEAD = len(IDENT_DIDS) + 1


class _EcuSession:
    """One ECU's chain of requests, run by one worker thread."""

    def __init__(self, link: IsoTpLink, reading: EcuReading, slots: _Slots) -> None:
        self.link = link
        self.reading = reading
        self.slots = slots
        # Requests still ahead: until the fault list is read, every ECU counts the same (the
        # chain's head), so the head's requests are served in the order they come.
        self.remaining = _CHAIN_HEAD
        self._counting = False
        self.per_request_s: float | None = None  # this ECU's time per request, smoothed

    def took(self, seconds: float) -> None:
        """A request took ``seconds``: tell the slots how long this chain's rest will take."""
        last = self.per_request_s
        self.per_request_s = seconds if last is None else 0.75 * last + 0.25 * seconds
        self.slots.ahead(self, self.remaining * self.per_request_s)

    def known(self, remaining: int) -> None:
        """The rest of the chain is ``remaining`` requests long."""
        self.remaining, self._counting = remaining, True
        if self.per_request_s is not None:
            self.slots.ahead(self, self.remaining * self.per_request_s)

    def done(self) -> None:
        self.slots.ahead(self, 0.0)

    def ask(self, request: bytes) -> Reply:
        with self.slots.slot(self.remaining, self):
            if self._counting:
                self.remaining = max(0, self.remaining - 1)
            started = time.monotonic()
            reply = self.link.request(request)
        self.took(time.monotonic() - started)
        return reply

    def step(self, step: Step, request: bytes, parse: Callable[[bytes], object]) -> object:
        """Ask; return the parsed value, or None after recording why there is none. A refusal
        with 0x11, 0x12 or 0x31 is "not supported here": None, and no error."""
        reply = self.ask(request)
        if isinstance(reply, Answer):
            try:
                return parse(reply.payload)
            except MalformedResponseError as exc:
                self.reading.fail(step, request, "transport", f"malformed answer: {exc}")
                return None
        if isinstance(reply, Refused):
            if reply.nrc not in uds.NRC_NOT_SUPPORTED:
                self.reading.fail(step, request, "nrc", f"negative response {reply.name}",
                                  reply.nrc)
            return None
        self.reading.fail(step, request, reply.kind, reply.detail, reply.nrc)
        return None


def _bmw_chain(session: _EcuSession) -> None:
    """The fault list first: it tells how long this ECU's chain is (one count per confirmed
    DTC), so that the longest chain gets the free request slots from then on."""
    reading = session.reading
    listed = session.step("faults", uds.read_dtcs_request(0xFF), uds.parse_dtcs)
    confirmed: list[int] = []
    if isinstance(listed, uds.DtcList):
        reading.dtcs = list(listed.dtcs)
        confirmed = list(dict.fromkeys(d.code for d in listed.dtcs if d.confirmed))
    session.known(len(IDENT_DIDS) + len(confirmed) + (reading.address == KOMBI_ADDRESS))
    for did, attribute in IDENT_DIDS:
        value = session.step("ident", uds.read_did_request(did),
                             lambda p, did=did: uds.parse_text_did(did, p))
        setattr(reading, attribute, value)
    for code in confirmed:
        count = session.step("counts", uds.read_occurrences_request(code),
                             lambda p, code=code: uds.parse_occurrences(code, p))
        reading.occurrences[code] = count if isinstance(count, int) else None
    if reading.address == KOMBI_ADDRESS:
        mileage = session.step("mileage", uds.read_did_request(uds.DID_MILEAGE), uds.parse_mileage)
        reading.mileage_km = mileage if isinstance(mileage, int) else None


def run_bmw_test(channel: CanChannel, addresses: Sequence[int], *,
                 timing: DiagnosticTiming = DiagnosticTiming(),
                 names: dict[int, str] | None = None, clock: Clock = utc_now,
                 clear: frozenset[int] = frozenset()) -> VehicleTest:
    """The whole ``bmw`` test. ``clear``: addresses to send ``14 FF FF FF`` to first (an
    operator's explicit command), the fault memory is then read as always."""
    names = bmw_ecu_names() if names is None else names
    test = VehicleTest("bmw", clock())
    slots = _Slots(timing.max_in_flight)
    probes = _Slots(timing.probe_batch(len(set(addresses))))
    lock = threading.Lock()

    def work(address: int) -> None:
        link: IsoTpLink | None = None
        try:
            link = IsoTpLink(channel, bmw_address(address), BMW_RESPONSE_BASE + address, timing,
                             tx_key=(BMW_REQUEST_ID, address))
            reading = EcuReading(address, names.get(address))
            session = _EcuSession(link, reading, slots)
            with probes.slot(0):
                probed_at = time.monotonic()
                probe = link.request(uds.tester_present_request())
            if isinstance(probe, Failed):
                with lock:
                    test.absent.append(address)
                return
            with lock:
                test.ecus.append(reading)
            if isinstance(probe, Refused) and probe.nrc in uds.NRC_NOT_SUPPORTED:
                return  # present, but nothing else
            session.took(time.monotonic() - probed_at)
            try:
                if address in clear:
                    _clear(session, uds.clear_dtcs_request(), uds.parse_clear)
                _bmw_chain(session)
            finally:
                session.done()
        except InterfaceLost as exc:
            with lock:
                if not test.aborted:
                    test.aborted, test.abort_reason = True, str(exc)
        finally:
            if link is not None:
                link.close()

    _run_workers(work, addresses)
    test.ecus.sort(key=lambda e: e.address)
    test.absent.sort()
    test.finished_at = clock()
    return test


def _clear(session: _EcuSession, request: bytes, parse: Callable[[bytes], object]) -> None:
    """ClearDiagnosticInformation on an explicit command; the outcome is logged and, when it
    fails, listed in the ECU's errors (step ``clear``)."""
    address = session.reading.address
    reply = session.ask(request)
    if isinstance(reply, Answer):
        try:
            parse(reply.payload)
        except MalformedResponseError as exc:
            reply = Failed("transport", f"malformed answer: {exc}")
        else:
            log.warning("fault memory of ECU 0x%02X cleared on the operator's command", address)
            return
    log.error("clearing the fault memory of ECU 0x%02X failed: %s", address, reply)
    if isinstance(reply, Refused):
        session.reading.fail("clear", request, "nrc", f"negative response {reply.name}",
                             reply.nrc)
    else:
        session.reading.fail("clear", request, reply.kind, reply.detail, reply.nrc)


def _run_workers(work: Callable[[int], None], addresses: Sequence[int]) -> None:
    threads = [threading.Thread(target=work, args=(a,), name=f"cbs-diag-{a:02X}", daemon=True)
               for a in dict.fromkeys(addresses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- OBD-II ---------------------------------------------------------------------------------


class _Obd:
    """Functional requests on 0x7DF, answers through one physical stack per responder."""

    def __init__(self, channel: CanChannel, timing: DiagnosticTiming) -> None:
        self.channel = channel
        self.timing = timing
        self.links: dict[int, IsoTpLink] = {}
        for rx in OBD2_RECEIVE_IDS:
            self.links[rx] = IsoTpLink(channel, normal_address(obd2.request_id(rx), rx), rx, timing)

    def close(self) -> None:
        for link in self.links.values():
            link.close()

    def ask(self, request: bytes, responders: Iterable[int]) -> dict[int, Reply]:
        """Send ``request`` functionally; the reply of each of ``responders`` (an ECU that does
        not answer within P2 gets a Failed timeout). 0x21 busy is asked again, functionally."""
        wanted = list(responders)
        replies: dict[int, Reply] = {}
        for attempt in range(self.timing.busy_retries + 1):
            for rx in wanted:
                self.links[rx].arm()
            self.channel.send_raw(obd2.FUNCTIONAL_ID, obd2.functional_frame(request))
            sent_at = time.monotonic()
            busy = []
            for rx in wanted:
                reply = self.links[rx].await_reply(request, sent_at)
                if isinstance(reply, Refused) and reply.nrc == uds.NRC_BUSY_REPEAT \
                        and attempt < self.timing.busy_retries:
                    busy.append(rx)
                else:
                    replies[rx] = reply
            if not busy:
                break
            wanted = busy
            time.sleep(self.timing.busy_retry_s)
        return replies


def run_obd2_test(channel: CanChannel, *, timing: DiagnosticTiming = DiagnosticTiming(),
                  clock: Clock = utc_now, clear: bool = False) -> VehicleTest:
    """The whole ``obd2`` test (``clear``: service 04 first, on the operator's command)."""
    test = VehicleTest("obd2", clock())
    obd = _Obd(channel, timing)
    try:
        _obd2_test(obd, test, clear)
    except InterfaceLost as exc:
        test.aborted, test.abort_reason = True, str(exc)
    finally:
        obd.close()
        test.ecus.sort(key=lambda e: e.address)
        test.finished_at = clock()
    return test


T = TypeVar("T")


def _positive(replies: dict[int, Reply], parse: Callable[[bytes], T]) -> dict[int, T]:
    values: dict[int, T] = {}
    for rx, reply in replies.items():
        if isinstance(reply, Answer):
            try:
                values[rx] = parse(reply.payload)
            except MalformedResponseError:
                pass
    return values


def _obd2_test(obd: _Obd, test: VehicleTest, clear: bool) -> None:
    first = obd.ask(obd2.current_data_request(0x00), OBD2_RECEIVE_IDS)
    bitmaps = _positive(first, lambda p: obd2.parse_supported_pids(0x00, p))
    readings = {rx: EcuReading(rx) for rx in sorted(bitmaps)}
    test.ecus.extend(readings.values())
    if not readings:
        return
    supported: dict[int, set[int]] = {rx: set(b) for rx, b in bitmaps.items()}
    for base in obd2.SUPPORT_PIDS[1:]:
        asking = [rx for rx, pids in supported.items() if base in pids]
        if not asking:
            break
        more = _positive(obd.ask(obd2.current_data_request(base), asking),
                         lambda p, base=base: obd2.parse_supported_pids(base, p))
        for rx, pids in more.items():
            supported[rx] |= pids
    if clear:
        replies = obd.ask(obd2.clear_request(), readings)
        for rx, reply in replies.items():
            if isinstance(reply, Answer):
                log.warning("fault memory of OBD-II ECU %03X cleared on the operator's command", rx)
            else:
                log.error("clearing the fault memory of OBD-II ECU %03X failed: %s", rx, reply)
                readings[rx].fail("clear", obd2.clear_request(),
                                  reply.kind if isinstance(reply, Failed) else "nrc",
                                  str(reply), getattr(reply, "nrc", None))

    def current(pid: int, step: Step, parse: Callable[[bytes], T]) -> dict[int, T]:
        asking = [rx for rx, pids in supported.items() if pid in pids]
        if not asking:
            return {}
        request = obd2.current_data_request(pid)
        replies = obd.ask(request, asking)
        _record_failures(readings, replies, step, request)
        return _positive(replies, parse)

    for rx, status in current(obd2.PID_MONITOR_STATUS, "faults", obd2.parse_monitor_status).items():
        readings[rx].mil_on = status.mil_on
    for rx, km in current(obd2.PID_DISTANCE_SINCE_CLEAR, "faults",
                          obd2.parse_distance_since_clear).items():
        readings[rx].km_since_cleared = km
    for rx, km in current(obd2.PID_ODOMETER, "mileage", obd2.parse_odometer_km).items():
        readings[rx].mileage_km = km
    for mode in OBD_DTC_MODES:
        request = obd2.dtcs_request(mode)
        replies = obd.ask(request, readings)
        if mode == OBD_STORED:  # mandatory: a silent ECU is a failure; 07 and 0A may be absent
            _record_failures(readings, replies, "faults", request)
        for rx, dtcs in _positive(replies, lambda p, mode=mode: obd2.parse_dtcs(mode, p)).items():
            reading = readings[rx]
            if reading.dtcs is None:
                reading.dtcs = []
            reading.dtcs.extend(dtcs)
    request = obd2.vehicle_info_request(obd2.INFO_VIN)
    for rx, vin in _positive(obd.ask(request, readings), obd2.parse_vin).items():
        readings[rx].vin = vin


def _record_failures(readings: dict[int, EcuReading], replies: dict[int, Reply], step: Step,
                     request: bytes) -> None:
    for rx, reply in replies.items():
        if isinstance(reply, Failed):
            readings[rx].fail(step, request, reply.kind, reply.detail, reply.nrc)
        elif isinstance(reply, Refused) and reply.nrc not in uds.NRC_NOT_SUPPORTED:
            readings[rx].fail(step, request, "nrc", f"negative response {reply.name}", reply.nrc)
