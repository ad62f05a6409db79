"""The delivery core under any interleaving: a hypothesis state machine drives a
:class:`DeliveryWindow` with a model of the outbox, of paho (which holds what it was given and
resends it after a reconnect) and of the broker (PUBACKs in any order, duplicated, refused).

Checked throughout: no row is deleted before its PUBACK and its commit; rows are handed over
in order and within the in-flight bound; nothing new overtakes paho's resends. Checked at the
end of every run (teardown): with the link up and the broker answering, every stored row is
delivered and the outbox drains."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.mqtt.delivery import DeliveryWindow, ReadRequest
from agent.store.outbox import OutboxEntry

MAX_INFLIGHT = 5
BAD_TOPIC = "bad/#"  # paho refuses to publish on a wildcard


@dataclass
class _Paho:
    """What paho holds: messages handed to it, until their PUBACK (kept over reconnects)."""

    held: dict[int, OutboxEntry | None] = field(default_factory=dict)  # mid -> row (None: status)
    next_mid: int = 1

    def take(self, entry: OutboxEntry | None) -> int:
        mid = self.next_mid
        self.next_mid += 1
        self.held[mid] = entry
        return mid


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store: dict[int, OutboxEntry] = {}  # committed rows still in the outbox
        self.next_row = 1
        self.open_batch: list[OutboxEntry] = []  # inserted, commit not yet settled
        self.committed_ids: set[str] = set()  # message ids that were ever committed
        self.answered: set[str] = set()  # message ids answered (PUBACK or refusal)
        self.refused: set[str] = set()  # message ids refused (by paho or the broker)
        self.delivered: set[str] = set()  # message ids the broker acknowledged
        self.messages = 0
        self.now = 0.0
        self.read: tuple[ReadRequest, list[OutboxEntry], int] | None = None
        self.rollbacks = 0
        self.link_is_up = False
        self.paho = _Paho()
        self.window = DeliveryWindow(MAX_INFLIGHT, ready_max_bytes=40, read_back_rows=3,
                                     delete_batch_rows=4, delete_delay_s=0.02)
        self.sent_log: list[list[OutboxEntry]] = [[]]  # per window (restart starts a new one)

    # -- the service's side: put_many ------------------------------------------------------

    @precondition(lambda self: not self.open_batch)
    @rule(size=st.integers(1, 4), bad=st.integers(0, 9))
    def stage(self, size: int, bad: int) -> None:
        batch = []
        for i in range(size):
            self.messages += 1
            topic = BAD_TOPIC if bad == 0 and i == 0 else "cbs/v1/S/R/readout"
            batch.append(OutboxEntry(self.next_row, topic, b"x" * 10, False, "cbs.readout/1",
                                     f"m{self.messages}", self.now))
            self.next_row += 1
        self.open_batch = batch
        self.window.staged(batch)

    @precondition(lambda self: bool(self.open_batch))
    @rule(committed=st.booleans())
    def settle(self, committed: bool) -> None:
        batch, self.open_batch = self.open_batch, []
        if committed:
            for entry in batch:
                self.store[entry.row_id] = entry
                self.committed_ids.add(entry.message_id)
        else:
            self.next_row = batch[0].row_id  # AUTOINCREMENT rolls back with the transaction
            self.rollbacks += 1
        self.window.settled(batch[0].row_id, batch[-1].row_id, committed)

    # -- the link --------------------------------------------------------------------------

    @precondition(lambda self: not self.link_is_up)
    @rule(receive_maximum=st.one_of(st.none(), st.integers(1, 8)))
    def link_up(self, receive_maximum: int | None) -> None:
        self.link_is_up = True
        self.window.link_up(receive_maximum)

    @precondition(lambda self: self.link_is_up)
    @rule()
    def link_down(self) -> None:
        self.link_is_up = False
        self.window.link_down()

    @rule(link_takes=st.integers(0, MAX_INFLIGHT))
    def send(self, link_takes: int) -> None:
        """Hand the window's sends to paho; paho's queue takes only ``link_takes`` of them."""
        room = self.window.room()
        taken = self.window.sends()
        assert len(taken) <= max(room, 0)
        if taken:
            assert self.link_is_up
            assert not self.window.carried_over, "a new row overtook paho's resends"
        answered = 0
        for entry in taken:
            if entry.topic == BAD_TOPIC:
                self.window.unsendable(entry, "invalid topic")
                self._log_send(entry)
                self.answered.add(entry.message_id)
                self.refused.add(entry.message_id)
                answered += 1
                continue
            if answered >= link_takes:
                break
            self.window.sent(entry, self.paho.take(entry))
            self._log_send(entry)
            answered += 1
        self.window.unsent(taken[answered:])

    def _log_send(self, entry: OutboxEntry) -> None:
        assert entry.row_id in self.store or entry in self.open_batch, (
            f"row {entry.row_id} sent but neither stored nor being stored")
        self.sent_log[-1].append(entry)

    @precondition(lambda self: self.link_is_up)
    @rule()
    def status(self) -> None:
        self.window.status_sent(self.paho.take(None))

    @precondition(lambda self: self.link_is_up and bool(self.paho.held))
    @rule(pick=st.integers(0, 1000), code=st.sampled_from([0, 0, 0, 0x10, 0x87]),
          duplicate=st.booleans())
    def puback(self, pick: int, code: int, duplicate: bool) -> None:
        mids = sorted(self.paho.held)
        mid = mids[pick % len(mids)]
        entry = self.paho.held.pop(mid)
        if entry is not None:
            self.answered.add(entry.message_id)
            (self.delivered if code < 0x80 else self.refused).add(entry.message_id)
        self.window.acked(mid, code, "refused" if code >= 0x80 else "")
        if duplicate:
            self.window.acked(mid, code, "")

    @rule(mid=st.integers(10_000, 10_010))
    def stray_puback(self, mid: int) -> None:
        self.window.acked(mid, 0, "")

    # -- the pump: read back and delete ----------------------------------------------------

    @precondition(lambda self: self.read is None)
    @rule()
    def begin_read(self) -> None:
        request = self.window.read_request()
        if request is None:
            return
        rows = [self.store[row] for row in sorted(self.store) if row > request.after_row]
        self.read = (request, rows[:request.limit], self.rollbacks)

    @precondition(lambda self: self.read is not None)
    @rule()
    def finish_read(self) -> None:
        assert self.read is not None
        request, rows, rollbacks = self.read
        self.read = None
        self.window.rows_read(request, rows, rolled_back=self.rollbacks != rollbacks)

    @precondition(lambda self: self.read is None)  # the pump reads and deletes in turn
    @rule(stopping=st.booleans(), fails=st.integers(0, 5))
    def delete(self, stopping: bool, fails: int) -> None:
        done = self.window.deletes_due(self.now, stopping=stopping)
        if not done:
            return
        if fails == 0:
            self.window.delete_failed(done, self.now)
            return
        for row in done:
            assert row in self.store, f"row {row} deleted but never committed"
            assert self.store[row].message_id in self.answered, (
                f"row {row} deleted before its PUBACK")
            del self.store[row]

    @rule(dt=st.sampled_from([0.001, 0.01, 0.05]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: not self.open_batch and self.read is None)
    @rule()
    def restart(self) -> None:
        """The agent restarts: a new window and a new paho client; the outbox stays."""
        self.paho = _Paho(next_mid=self.paho.next_mid)
        self.link_is_up = False
        self.window = DeliveryWindow(MAX_INFLIGHT, ready_max_bytes=40, read_back_rows=3,
                                     delete_batch_rows=4, delete_delay_s=0.02)
        self.sent_log.append([])

    # -- always ----------------------------------------------------------------------------

    @invariant()
    def bounded(self) -> None:
        assert len(self.window.inflight) <= MAX_INFLIGHT
        assert set(self.window.inflight) <= set(self.paho.held)

    def teardown(self) -> None:
        # Order: within one window, the committed rows left in row order.
        for sent in self.sent_log:
            rows = [entry.row_id for entry in sent if entry.message_id in self.committed_ids]
            assert rows == sorted(set(rows)), f"rows left out of order or twice: {rows}"
        # Liveness: link up, commit what is open, answer everything: the outbox drains.
        if self.read is not None:
            self.finish_read()
        if self.open_batch:
            self.settle(True)
        if not self.link_is_up:
            self.link_up(None)
        for _ in range(500):
            if not self.store and not self.paho.held:
                break
            self.send(MAX_INFLIGHT)
            while self.paho.held:
                self.puback(0, 0, False)
            self.begin_read()
            if self.read is not None:
                self.finish_read()
            self.now += 1.0
            self.delete(True, 1)
        assert not self.store, f"rows never delivered: {sorted(self.store)}"
        assert self.committed_ids <= self.delivered | self.refused


DeliveryMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_delivery_window = DeliveryMachine.TestCase


def test_a_row_out_of_turn_is_refused() -> None:
    window = DeliveryWindow(2)
    window.link_up(None)
    entries = [OutboxEntry(n, "t", b"", False, "s", f"m{n}", 0.0) for n in (1, 2)]
    window.staged(entries)
    taken = window.sends()
    with pytest.raises(ValueError, match="not the next one"):
        window.sent(taken[1], 7)
