"""A key read goes first while a backlog drains: during the service's reader turn the
publisher sends no backlog and deletes nothing, the read's own rows still go out while their
commit runs when they are next in order, and what was held back goes out, in order, when the
turn ends. Also the outbox's side: the backlog is read on a connection of its own, and the
log is checkpointed by the publisher's thread, not by a read's commit.

Real parts: a mosquitto on loopback, a real outbox file."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from broker import MosquittoBroker, Subscriber, wait_until

from agent.contract.topics import Topics
from agent.mqtt import publisher as publisher_module
from agent.mqtt.publisher import MqttPublisher
from agent.mqtt.settings import MqttSettings
from agent.store import outbox as outbox_module
from agent.store.outbox import Outbox, OutboxMessage

TOPICS = Topics("cbs/v1", "S1", "desk1")
STATUS = '{"schema": "cbs.status/1", "state": "online"}'


def message(n: int, size: int = 64) -> OutboxMessage:
    payload = json.dumps({"n": n, "pad": "x" * size}).encode()
    return OutboxMessage(TOPICS.readout, payload, False, "cbs.readout/1", f"r{n}")


def numbers(subscriber: Subscriber) -> list[int]:
    return [m.json()["n"] for m in subscriber.snapshot()]


@dataclass
class Link:
    """An outbox, a publisher connected to the test's broker, a subscriber of the readouts."""

    outbox: Outbox
    publisher: MqttPublisher
    subscriber: Subscriber


@pytest.fixture
def link(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[Link]:
    subscriber = Subscriber.for_broker(mosquitto, TOPICS.readout).start()
    outbox = Outbox(tmp_path / "o.db")
    publisher = MqttPublisher(MqttSettings(url=mosquitto.url), outbox, TOPICS)
    try:
        publisher.start(lambda: STATUS)
        assert publisher.wait_connected(10)
        yield Link(outbox, publisher, subscriber)
    finally:
        publisher.stop(timeout_s=2)
        outbox.close()
        subscriber.stop()


def test_the_backlog_waits_for_the_readers_turn_and_then_goes_out_in_order(link: Link) -> None:
    outbox, publisher, subscriber = link.outbox, link.publisher, link.subscriber
    publisher.reader_busy(True)
    outbox.put_many([message(n) for n in range(50)])  # a backlog another start left
    publisher.notify()
    time.sleep(0.3)  # the pump had every chance to send it
    assert publisher.published == 0 and numbers(subscriber) == []
    publisher.reader_busy(False)
    subscriber.wait_for_count(50)
    wait_until(lambda: outbox.depth() == 0, what="the backlog acknowledged and deleted")
    assert numbers(subscriber) == list(range(50))


def test_a_reads_own_rows_still_go_out_during_its_turn_when_nothing_is_ahead(link: Link) -> None:
    outbox, publisher, subscriber = link.outbox, link.publisher, link.subscriber
    outbox.put_many([message(0)], listener=publisher)
    subscriber.wait_for_count(1)
    wait_until(lambda: outbox.depth() == 0, what="row 0 acknowledged")
    early = publisher.sent_before_commit
    publisher.reader_busy(True)
    outbox.put_many([message(1)], listener=publisher)
    subscriber.wait_for_count(2)  # while the key is read: nothing was ahead of it
    publisher.reader_busy(False)
    assert publisher.sent_before_commit == early + 1
    wait_until(lambda: outbox.depth() == 0, what="row 1 deleted once the turn ended")


def test_the_backlog_is_read_on_its_own_connection_and_sees_committed_rows_only(
        tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.put_many([message(n) for n in range(3)])
        assert [e.message_id for e in outbox.pending()] == ["r0", "r1", "r2"]
        reader = outbox._reader
        assert reader is not None and reader is not outbox._db
        seen: list[list[str]] = []

        class Peek:  # reads back while the writer's transaction is open (lock held)
            def staged(self, entries: object) -> None:
                seen.append([e.message_id for e in outbox.pending()])

            def settled(self, entries: object, committed: bool) -> None:
                pass

        outbox.put_many([message(3)], listener=Peek())
        assert seen == [["r0", "r1", "r2"]]  # not r3: uncommitted, and no wait for the lock
        assert [e.message_id for e in outbox.pending()][-1] == "r3"


def _log_frames(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as other:
        _, frames, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames), int(copied)


def test_a_commit_leaves_the_log_to_the_publishers_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as outbox:
        assert outbox.checkpoint(now=0.0) is False  # nothing written yet
        for n in range(300):  # about 1,200 pages: past SQLite's own threshold of 1,000
            outbox.put_many([message(n, size=4000)])
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 1000 * 4096  # no commit copied it into the file
        assert outbox.checkpoint(now=1e9) is True
        assert outbox.checkpoint(now=1e9 + outbox_module.CHECKPOINT_INTERVAL_S / 2) is False
        frames, copied = _log_frames(path)
        assert frames == copied  # everything in the log is in the file
        assert len(outbox.pending(limit=1000)) == 300


def test_a_reader_that_never_stops_does_not_stop_the_drain(
        link: Link, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher_module, "READER_TURN_MAX_S", 0.2)
    outbox, publisher, subscriber = link.outbox, link.publisher, link.subscriber
    publisher.reader_busy(True)  # and never False: a reader streaming frames
    outbox.put_many([message(n) for n in range(100)])
    publisher.notify()
    subscriber.wait_for_count(100, timeout_s=10)
    wait_until(lambda: outbox.depth() == 0, what="the backlog deleted all the same")
    assert numbers(subscriber) == list(range(100))


def test_the_pump_sleeps_while_a_due_delete_waits_for_the_readers_turn(link: Link) -> None:
    """A row acknowledged just before a key read, whose delete comes due during the read's
    turn: the pump sleeps until the turn ends instead of waking at once, over and over (in a
    reminder pass that took the interpreter from the read)."""
    outbox, publisher, subscriber = link.outbox, link.publisher, link.subscriber
    window = publisher.window
    window._delete_delay_s = 0.3  # time to start the turn after the pump saw the ack
    outbox.put_many([message(0)], listener=publisher)
    subscriber.wait_for_count(1)
    wait_until(lambda: window._to_delete_since is not None, what="row 0's delete waiting")
    publisher.reader_busy(True)
    time.sleep(0.4)  # its delete is due, held for the turn
    turns = publisher.pump_turns
    time.sleep(0.3)
    assert publisher.pump_turns - turns <= 3  # a wait of zero made it thousands
    assert outbox.depth() == 1
    publisher.reader_busy(False)
    wait_until(lambda: outbox.depth() == 0, timeout_s=2, what="row 0 deleted once the turn ended")


def test_a_reads_own_rows_go_out_during_its_turn_when_the_pump_was_busy(
        link: Link, monkeypatch: pytest.MonkeyPatch) -> None:
    """staged() finds the pump busy and hands it the rows: the pump sends them during the turn,
    as staged() would have, instead of holding them until the turn ends."""
    monkeypatch.setattr(publisher_module, "READER_TURN_MAX_S", 60.0)
    outbox, publisher, subscriber = link.outbox, link.publisher, link.subscriber
    publisher.reader_busy(True)
    with publisher._state:  # the pump's lock, as in its turn: staged() queues the row
        outbox.put_many([message(0)], listener=publisher)
    subscriber.wait_for_count(1, timeout_s=5)  # before: held until the turn ended
    publisher.reader_busy(False)
    wait_until(lambda: outbox.depth() == 0, what="row 0 deleted once the turn ended")
