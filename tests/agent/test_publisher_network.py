"""The publisher's own network loop (agent/mqtt/publisher.py): paho writes in the publishing
thread, one lock keeps paho to one thread at a time, and neither a slow disk nor a write
that finds the connection gone costs a keepalive or a duplicate. Against a real mosquitto."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from broker import MosquittoBroker, Subscriber, wait_until

from agent.contract.topics import Topics
from agent.mqtt.publisher import MqttPublisher
from agent.mqtt.settings import MqttSettings
from agent.store.outbox import Outbox, OutboxMessage

TOPICS = Topics("cbs/v1", "S1", "desk1")
ONLINE = '{"schema": "cbs.status/1", "state": "online"}'


def message(n: int) -> OutboxMessage:
    payload = f'{{"schema": "cbs.readout/1", "readout_id": "r{n}", "n": {n}}}'.encode()
    return OutboxMessage(TOPICS.readout, payload, False, "cbs.readout/1", f"r{n}")


def test_a_stalled_disk_does_not_stop_keepalives(tmp_path: Path,
                                                 mosquitto: MosquittoBroker) -> None:
    """The pump waits for the outbox outside the publisher's lock: while the disk holds the
    outbox for almost three keepalives (mosquitto drops a silent client after 1.5 of them,
    checked every few seconds: 9 s did not always show it, 14 s does), the network thread
    keeps the connection alive, so the broker never publishes the last will."""
    status = Subscriber.for_broker(mosquitto, TOPICS.status).start()
    outbox = Outbox(tmp_path / "o.db")
    publisher = MqttPublisher(MqttSettings(url=mosquitto.url, keepalive_s=5), outbox, TOPICS)
    try:
        publisher.start(lambda: ONLINE)
        assert publisher.wait_connected(10)
        status.wait_for_count(1)
        stalled = threading.Event()

        def stall() -> None:
            with outbox._lock:  # what a commit's fsync on a failing card looks like
                stalled.set()
                time.sleep(14)

        staller = threading.Thread(target=stall)
        staller.start()
        stalled.wait(5)
        publisher.notify()  # the pump goes to read the outbox and waits for it
        staller.join()
        outbox.put_many([message(1)], listener=publisher)
        wait_until(lambda: outbox.depth() == 0, what="the row delivered after the stall")
        assert publisher.connects == 1
        assert all('"offline"' not in m.payload.decode() for m in status.snapshot())
    finally:
        publisher.stop(timeout_s=2)
        outbox.close()
        status.stop()


def test_a_write_that_finds_the_link_gone_is_resent_once(tmp_path: Path,
                                                        mosquitto: MosquittoBroker) -> None:
    """A publish whose own socket write fails (the connection just died) is held by paho and
    resent after the reconnect; the publisher counts it as taken and does not send the row
    again under a new message id."""
    readouts = Subscriber.for_broker(mosquitto, TOPICS.readout).start()
    outbox = Outbox(tmp_path / "o.db")
    publisher = MqttPublisher(MqttSettings(url=mosquitto.url, reconnect_min_s=0.05,
                                           reconnect_max_s=0.2), outbox, TOPICS)
    try:
        publisher.start(lambda: ONLINE)
        assert publisher.wait_connected(10)
        outbox.put_many([message(0)], listener=publisher)
        readouts.wait_for_count(1)
        wait_until(lambda: outbox.depth() == 0, what="row 0 acknowledged")
        with publisher._state:  # the link dies between two messages
            sock = publisher._client.socket()
            assert sock is not None
            sock.shutdown(socket.SHUT_WR)
        outbox.put_many([message(1)], listener=publisher)
        wait_until(lambda: publisher.connects >= 2, what="a reconnect")
        wait_until(lambda: outbox.depth() == 0, what="row 1 delivered and acknowledged")
        time.sleep(0.5)  # room for a duplicate to arrive, if one was sent
        assert [m.json()["n"] for m in readouts.snapshot()] == [0, 1]
        assert publisher.published == 2 and publisher.acked == 2
    finally:
        publisher.stop(timeout_s=2)
        outbox.close()
        readouts.stop()
