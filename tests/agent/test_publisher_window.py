"""The publisher when the broker's in-flight window is smaller than a batch.

mosquitto announces a *Receive Maximum* of 20 by default (``max_inflight_messages``), less
than one busy read turn's batch (up to 32 readouts, two messages each). Rows that find no
room wait in the publisher's memory and are sent from there as PUBACKs free room, rather
than read back from the outbox one small query per PUBACK. These tests shrink the window to
3 so that nearly every row waits, and check what must hold whatever the path: every
committed row arrives once and in order, rows of a rolled-back commit are forgotten (their
ids come back with other messages), a broker restart loses nothing, and the outbox drains.

No timed assertions: every wait is for an event and bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from broker import MosquittoBroker, Received, Subscriber, wait_until
from commit_faults import failing_commit

from agent.contract.topics import Topics
from agent.errors import OutboxError
from agent.mqtt.publisher import MqttPublisher
from agent.mqtt.settings import MqttSettings
from agent.store.outbox import Outbox, OutboxMessage

TOPICS = Topics("cbs/v1", "S1", "desk1")
ONLINE = '{"schema": "cbs.status/1", "state": "online"}'
WINDOW = 3
BATCH = 30


def message(n: int) -> OutboxMessage:
    payload = f'{{"schema": "cbs.readout/1", "readout_id": "r{n}", "n": {n}}}'.encode()
    return OutboxMessage(TOPICS.readout, payload, False, "cbs.readout/1", f"r{n}")


def numbers(messages: list[Received]) -> list[int]:
    return [int(m.json()["n"]) for m in messages]


def first_occurrences(values: list[int]) -> list[int]:
    seen: set[int] = set()
    return [v for v in values if not (v in seen or seen.add(v))]  # type: ignore[func-returns-value]


class CountingOutbox(Outbox):
    """The real outbox, counting the publisher's read-back queries."""

    reads = 0

    def pending(self, after_row: int = 0, limit: int = 100):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().pending(after_row=after_row, limit=limit)


@pytest.fixture
def narrow_broker(make_broker: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    return make_broker(extra_config=f"max_inflight_messages {WINDOW}")


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[CountingOutbox]:
    box = CountingOutbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def publisher(narrow_broker: MosquittoBroker, outbox: CountingOutbox) -> Iterator[MqttPublisher]:
    settings = MqttSettings(url=narrow_broker.url, reconnect_min_s=0.05, reconnect_max_s=0.5)
    publisher = MqttPublisher(settings, outbox, TOPICS)
    publisher.start(lambda: ONLINE)
    assert publisher.wait_connected(10)
    # The pump has handled the connect (link up, the broker's window applied).
    wait_until(lambda: publisher._limit == WINDOW, what="the broker's window applied")
    yield publisher
    publisher.stop(timeout_s=2)


def put_batches(outbox: Outbox, publisher: MqttPublisher, numbers_: range) -> None:
    for start in range(numbers_.start, numbers_.stop, BATCH):
        batch = [message(n) for n in range(start, min(start + BATCH, numbers_.stop))]
        outbox.put_many(batch, listener=publisher)


def test_the_broker_window_is_honoured(publisher: MqttPublisher) -> None:
    assert publisher._limit == WINDOW  # from the CONNACK's Receive Maximum (see the fixture)


def test_batches_larger_than_the_window_arrive_once_in_order_from_memory(
        narrow_broker: MosquittoBroker, outbox: CountingOutbox, publisher: MqttPublisher,
        make_subscriber: Callable[..., Subscriber]) -> None:
    subscriber = make_subscriber(narrow_broker, TOPICS.readout)
    reads_before = outbox.reads
    senders: set[str] = set()
    send_ready = publisher._send_ready

    def spy(*, for_reader: bool = False) -> None:
        senders.add(threading.current_thread().name)
        send_ready(for_reader=for_reader)

    publisher._send_ready = spy  # type: ignore[method-assign]
    put_batches(outbox, publisher, range(600))
    messages = subscriber.wait_for_count(600, timeout_s=60)
    wait_until(lambda: outbox.depth() == 0, timeout_s=30, what="an empty outbox")
    assert numbers(messages) == list(range(600))  # one connection: exactly once, in order
    assert publisher.acked == 600 and publisher.failed == 0
    assert publisher.sent_before_commit > 0
    # Read back from the outbox, one query per PUBACK, these would be about 200 queries; from
    # memory, only the pump's idle look-ups remain.
    assert outbox.reads - reads_before < 20, outbox.reads - reads_before
    # The network thread refills the window right after reading PUBACKs (no hand-over).
    assert "cbs-mqtt-network" in senders, senders


def test_rows_waiting_for_room_are_forgotten_when_their_commit_fails(
        narrow_broker: MosquittoBroker, outbox: CountingOutbox, publisher: MqttPublisher,
        make_subscriber: Callable[..., Subscriber], monkeypatch: pytest.MonkeyPatch) -> None:
    subscriber = make_subscriber(narrow_broker, TOPICS.readout)
    put_batches(outbox, publisher, range(90))  # most of them still waiting for room
    with failing_commit(monkeypatch), pytest.raises(OutboxError):
        outbox.put_many([message(n) for n in range(1000, 1000 + BATCH)], listener=publisher)
    put_batches(outbox, publisher, range(90, 180))  # reusing the rolled-back row ids
    got = subscriber.wait_for(lambda ms: set(range(180)) <= set(numbers(ms)), timeout_s=60,
                              what="every committed message")
    wait_until(lambda: outbox.depth() == 0, timeout_s=30, what="an empty outbox")
    committed = [n for n in numbers(got) if n < 1000]
    assert committed == list(range(180))
    assert publisher.acked == 180


def test_broker_restart_while_rows_wait_for_room_loses_nothing(
        make_broker: Callable[..., MosquittoBroker], outbox: CountingOutbox,
        make_subscriber: Callable[..., Subscriber]) -> None:
    broker = make_broker(persistence=True, extra_config=f"max_inflight_messages {WINDOW}")
    subscriber = make_subscriber(broker, TOPICS.readout, persistent=True,
                                 client_id="integrator-window-restart")
    settings = MqttSettings(url=broker.url, reconnect_min_s=0.05, reconnect_max_s=0.5)
    publisher = MqttPublisher(settings, outbox, TOPICS)
    publisher.start(lambda: ONLINE)
    try:
        assert publisher.wait_connected(10)
        put_batches(outbox, publisher, range(150))
        subscriber.wait_for_count(10)
        broker.stop()  # some rows in flight, many waiting in memory
        wait_until(lambda: not publisher.connected, what="the publisher to notice")
        put_batches(outbox, publisher, range(150, 300))
        broker.start()
        wait_until(lambda: outbox.depth() == 0, timeout_s=60, what="an empty outbox")
        messages = subscriber.wait_for(lambda ms: set(numbers(ms)) == set(range(300)),
                                       timeout_s=30, what="all 300 messages")
        assert first_occurrences(numbers(messages)) == list(range(300))
    finally:
        publisher.stop(timeout_s=2)
