"""Publishing while the outbox commits (docs/outbox.md): the listener hears of rows before
their commit and of its outcome; a publisher that sent rows early deletes them only once
both the commit and the PUBACK are in, and forgets them when the commit fails, so that the
next messages, which may reuse their row ids, are delivered and none is deleted unsent.

The failing commit is produced by making SQLite's COMMIT raise (the disk-full tests elsewhere
fail real commits; here the point is the exact moment: after the rows were handed over)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from broker import MosquittoBroker, Subscriber, wait_until
from commit_faults import failing_commit

from agent.contract.topics import Topics
from agent.errors import OutboxError
from agent.mqtt.publisher import MqttPublisher
from agent.mqtt.settings import MqttSettings
from agent.store.outbox import Outbox, OutboxEntry, OutboxMessage

TOPICS = Topics("cbs/v1", "S1", "desk1")


def message(n: int) -> OutboxMessage:
    payload = f'{{"schema": "cbs.readout/1", "readout_id": "r{n}", "n": {n}}}'.encode()
    return OutboxMessage(TOPICS.readout, payload, False, "cbs.readout/1", f"r{n}")


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[tuple[str, list[int], bool | None, int]] = []

    def _visible(self) -> int:
        """Rows another connection can see (committed ones only)."""
        with sqlite3.connect(self.path) as other:
            return int(other.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def staged(self, entries: Sequence[OutboxEntry]) -> None:
        self.calls.append(("staged", [e.row_id for e in entries], None, self._visible()))

    def settled(self, entries: Sequence[OutboxEntry], committed: bool) -> None:
        self.calls.append(("settled", [e.row_id for e in entries], committed, self._visible()))


def test_listener_hears_rows_before_the_commit_and_its_outcome(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "o.db"
    recorder = Recorder(path)
    with Outbox(path) as outbox:
        ids = outbox.put_many([message(1), message(2)], listener=recorder)
        assert recorder.calls == [("staged", ids, None, 0), ("settled", ids, True, 2)]
        recorder.calls.clear()
        with failing_commit(monkeypatch), pytest.raises(OutboxError):
            outbox.put_many([message(3)], listener=recorder)
        (staged, settled) = recorder.calls
        assert staged[0] == "staged" and settled[:3] == ("settled", staged[1], False)
        assert outbox.depth() == 2 == len(outbox.pending())
        # The rolled-back id comes back with the next message: AUTOINCREMENT rolled back too.
        assert outbox.put_many([message(4)]) == staged[1]


def test_rows_sent_before_a_failed_commit_are_forgotten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mosquitto: MosquittoBroker) -> None:
    subscriber = Subscriber.for_broker(mosquitto, TOPICS.readout).start()
    outbox = Outbox(tmp_path / "o.db")
    publisher = MqttPublisher(MqttSettings(url=mosquitto.url, reconnect_min_s=0.05,
                                           reconnect_max_s=0.5), outbox, TOPICS)
    try:
        publisher.start(lambda: '{"schema": "cbs.status/1", "state": "online"}')
        assert publisher.wait_connected(10)
        outbox.put_many([message(0)], listener=publisher)  # the cursor catches up
        subscriber.wait_for_count(1)
        wait_until(lambda: outbox.depth() == 0, what="row 0 acknowledged")
        early = publisher.sent_before_commit
        for n in range(1, 21):  # one at a time: each is sent while its commit runs
            outbox.put_many([message(n)], listener=publisher)
            # deleted: its PUBACK and its commit were both in, the pump is done with it
            wait_until(lambda n=n: publisher.acked == n + 1 and outbox.depth() == 0,
                       what=f"row {n} acknowledged and deleted")
        assert publisher.sent_before_commit == early + 20
        subscriber.wait_for_count(21)
        wait_until(lambda: outbox.depth() == 0, what="early rows deleted after commit + PUBACK")
        with failing_commit(monkeypatch), pytest.raises(OutboxError):
            outbox.put_many([message(100), message(101)], listener=publisher)
        # Their row ids are used again now; these must arrive and only then leave the outbox.
        for n in range(21, 31):
            outbox.put_many([message(n)], listener=publisher)
        got = subscriber.wait_for(lambda ms: {m.json()["n"] for m in ms} >= set(range(31)),
                                  what="every committed message")
        wait_until(lambda: outbox.depth() == 0, what="an empty outbox")
        committed = [m.json()["n"] for m in got if m.json()["n"] < 100]
        assert committed == sorted(committed), "committed messages arrived out of order"
        assert publisher.acked == 31
    finally:
        publisher.stop(timeout_s=2)
        outbox.close()
        subscriber.stop()


class GatedOutbox(Outbox):
    """The real outbox; its next read-back (``pending``) waits at a gate once armed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.armed = False
        self.entered = threading.Event()
        self.gate = threading.Event()

    def pending(self, after_row: int = 0, limit: int = 100) -> list[OutboxEntry]:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.gate.wait(10)
        return super().pending(after_row=after_row, limit=limit)


def test_a_read_back_overlapping_a_rollback_sends_nothing_ahead_of_its_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mosquitto: MosquittoBroker) -> None:
    """Rows 1..5 are sent early; the pump starts reading back after row 5 (outside its
    lock); their commit fails and a larger put stores rows 1..8 under the same ids. The read
    must not send rows 6..8 before 1..5 (nor twice): it is discarded and done again after
    the rollback moved the cursor back. (Found in review; older than the memory queue.)"""
    subscriber = Subscriber.for_broker(mosquitto, TOPICS.readout).start()
    outbox = GatedOutbox(tmp_path / "o.db")
    publisher = MqttPublisher(MqttSettings(url=mosquitto.url, reconnect_min_s=0.05,
                                           reconnect_max_s=0.5), outbox, TOPICS)
    fsync_done = threading.Event()

    errors: list[Exception] = []

    def put_first() -> None:
        try:
            outbox.put_many([message(n) for n in range(101, 106)], listener=publisher)
        except OutboxError as exc:
            errors.append(exc)

    try:
        publisher.start(lambda: '{"schema": "cbs.status/1", "state": "online"}')
        assert publisher.wait_connected(10)
        with failing_commit(monkeypatch, fsync_done):
            putter = threading.Thread(target=put_first)
            putter.start()
            wait_until(lambda: publisher.sent_before_commit == 5, what="rows 1..5 sent early")
            outbox.armed = True
            publisher.notify()  # the pump reads back after row 5
            assert outbox.entered.wait(10)
            fsync_done.set()
            putter.join(10)
        assert errors, "the first commit must have failed"
        outbox.put_many([message(n) for n in range(1, 9)])  # rows 1..8 again, committed
        publisher.notify()
        outbox.gate.set()
        wait_until(lambda: outbox.depth() == 0, what="an empty outbox")
        outbox.put_many([message(9)], listener=publisher)  # after all of them, one connection
        got = subscriber.wait_for(lambda ms: 9 in {m.json()["n"] for m in ms}, what="row 9")
        committed = [m.json()["n"] for m in got if m.json()["n"] < 100]
        assert committed == list(range(1, 10))
        wait_until(lambda: publisher.acked == 9, what="9 rows acknowledged")
    finally:
        fsync_done.set()
        outbox.gate.set()
        publisher.stop(timeout_s=2)
        outbox.close()
        subscriber.stop()
