"""The desk's subscription: one paho client (2.x, callback API v2, made by
:func:`agent.mqtt.paho_link.new_client` like every client of the project) feeding a
:class:`DeskState`.

As in ``cbs-agent watch``, paho's callbacks do almost nothing: here they take the state's
lock and apply one message (a dictionary update, microseconds), so the web handlers, which
read under the same lock, always see a consistent picture. The client reconnects by itself
(paho's backoff, at most 10 s apart); :attr:`DeskState.broker_connected` says whether it is
connected, and the pages show it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from agent.desk.state import DeskState
from agent.desk.visits import VisitStore

if TYPE_CHECKING:
    from agent.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

__all__ = ["DeskFeed"]


class DeskFeed:
    """Subscribes to the site's topics and keeps :attr:`state` up to date. Thread-safe:
    read the state inside ``with feed.locked() as state:``."""

    def __init__(self, mqtt: MqttSettings, state: DeskState, *,
                 client_id: str | None = None, visits: VisitStore | None = None) -> None:
        self.mqtt = mqtt
        self.state = state
        self.visits = visits
        self._lock = threading.Lock()
        self._changed: list[Callable[[], None]] = []
        host = re.sub(r"[^A-Za-z0-9_-]", "", socket.gethostname())[:24] or "host"
        self.client_id = client_id or f"cbs-desk-{host}-{os.getpid()}"
        self._client = self._make_client()

    @contextmanager
    def locked(self) -> Iterator[DeskState]:
        with self._lock:
            yield self.state

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from paho's thread, without the lock) after every change."""
        self._changed.append(callback)

    def _make_client(self) -> Any:
        from agent.mqtt.paho_link import new_client

        client = new_client(self.mqtt, self.client_id)  # ConfigError for unusable TLS files
        client.reconnect_delay_set(max(1, round(self.mqtt.reconnect_min_s)),
                                   max(1, round(min(self.mqtt.reconnect_max_s, 10.0))))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def restore(self) -> int:
        """Feed the readouts kept by :attr:`visits` (earlier visits across a restart) into
        the state; returns how many. Call before :meth:`start`."""
        if self.visits is None:
            return 0
        count = 0
        with self._lock:
            for readout in self.visits.load():
                vin = (readout.get("vehicle") or {}).get("vin")
                topic = f"{self.state.prefix}/{self.state.site}/vehicles/{vin}"
                count += self.state.apply(topic, json.dumps(readout).encode())
        return count

    def start(self) -> None:
        """Connect in the background; paho retries until :meth:`stop`."""
        log.info("desk: subscribing to %s at %s", self.state.site, self.mqtt.url)
        self._client.connect_async(self.mqtt.host, self.mqtt.port, keepalive=self.mqtt.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks (its network thread) ------------------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any,
                    _props: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("desk: broker refused the connection: %s", reason_code)
            return
        with self._lock:
            client.subscribe([(topic, 1) for topic in self.state.subscriptions()])
            self.state.set_broker(True)
        log.info("desk: connected to %s", self.mqtt.url)
        self._notify()

    def _on_disconnect(self, *_args: Any) -> None:
        with self._lock:
            was = self.state.broker_connected
            self.state.set_broker(False)
        if was:
            log.warning("desk: broker connection lost, reconnecting")
        self._notify()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._lock:
            changed = self.state.apply(message.topic, bytes(message.payload))
            taken = self.state.taken_readout
        if taken is not None and self.visits is not None:
            self.visits.add(taken)
        if changed:
            self._notify()

    def _notify(self) -> None:
        for callback in self._changed:
            try:
                callback()
            except Exception:
                log.exception("desk: change listener failed")
