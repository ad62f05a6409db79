#!/usr/bin/env python3
"""A minimal cbs-agent subscriber: every readout and rejection of every site, exactly once.

    pip install "paho-mqtt>=2,<3"
    python3 examples/subscriber.py --broker mqtt://127.0.0.1:1883

It prints one line per key read (and per key that could not be read):

    readout 20261127T091502123Z-420f0ce25fb2 S1/desk1 VIN WBA8E5107FK123456 48371 km \
        due_soon express=no
    rejected 20261127T091710004Z-0c1d2e3f4a5b S1/desk1 crc_mismatch: END CRC-32 ...

What it shows (docs/integrators.md explains each point):

* MQTT 5 with a persistent session (fixed client id, clean_start off, session expiry): the
  broker queues QoS 1 messages while this subscriber is down and delivers them when it comes
  back, so stopping it for an update loses nothing.
* Delivery is at least once, so the same readout can arrive twice (after a reconnect, an agent
  restart, a bridge outage): deduplicate on ``readout_id`` / ``rejection_id``. This example
  keeps the ids in memory; a real integration stores them with a UNIQUE constraint in the same
  transaction as the data.
* Payloads only ever gain keys within a major version: read the keys you need, ignore the
  rest, and check the major version in ``schema``.

Only paho-mqtt is needed; nothing from cbs-agent is imported, so this file can be copied into
any project as a starting point.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import ssl
import sys
from collections import OrderedDict
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PREFIX = "cbs/v1"
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our queue this long while we are away
SEEN_MAX = 100_000  # ids remembered for deduplication (oldest forgotten first)


def accepts(payload: dict, name: str) -> bool:
    """True for ``name`` in major version 1 (``cbs.readout/1``; a later ``/1.x`` would only
    add keys); a ``/2`` payload needs new code and is skipped."""
    schema = str(payload.get("schema", ""))
    kind, _, version = schema.partition("/")
    return kind == name and version.split(".")[0] == "1"


class ReadoutPrinter:
    """Handles each message once; replace :meth:`on_readout` / :meth:`on_rejected` with your
    own code (store in the dealer-management system, open a job card, ...)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.stop_after = stop_after
        self.handled = 0
        self.duplicates = 0

    def first_time(self, message_id: str) -> bool:
        if message_id in self.seen:
            self.duplicates += 1
            return False
        self.seen[message_id] = None
        if len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)
        return True

    def handle(self, topic: str, raw: bytes) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            print(f"skipped non-JSON message on {topic}", file=sys.stderr)
            return
        if topic.endswith("/readout") and accepts(payload, "cbs.readout"):
            if self.first_time(payload["readout_id"]):
                self.on_readout(payload)
                self.handled += 1
        elif topic.endswith("/rejected") and accepts(payload, "cbs.rejected"):
            if self.first_time(payload["rejection_id"]):
                self.on_rejected(payload)
                self.handled += 1

    def on_readout(self, readout: dict) -> None:
        vehicle, summary = readout["vehicle"], readout["summary"]
        # The express lane's verdict includes the time budget: proposal.express.eligible
        # (docs/express-lane.md); summary.express_eligible alone does not.
        lane = (readout.get("proposal") or {}).get("express") or {}
        express = "yes" if lane.get("eligible", summary["express_eligible"]) else "no"
        print(f"readout {readout['readout_id']} {readout['site']}/{readout['reader']} "
              f"VIN {vehicle['vin']} {vehicle['mileage_km']} km {summary['status']} "
              f"express={express}", flush=True)
        for item in readout["services"]:
            forecast = item["forecast"] or {}
            if forecast.get("status") in ("due_soon", "overdue"):
                print(f"  {item['type']}: {forecast['status']}, due {forecast['due_date']}, "
                      f"{forecast['km_left'] if forecast['km_left'] is not None else '-'} km left",
                      flush=True)

    def on_rejected(self, rejected: dict) -> None:
        print(f"rejected {rejected['rejection_id']} {rejected['site']}/{rejected['reader']} "
              f"{rejected['reason']}: {rejected['detail']}", flush=True)

    @property
    def done(self) -> bool:
        return self.stop_after is not None and self.handled >= self.stop_after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                        help="mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS")
    parser.add_argument("--client-id", default="dms-subscriber",
                        help="fixed, so the broker can keep this subscriber's session")
    parser.add_argument("--username")
    parser.add_argument("--password-file", help="file whose first line is the password")
    parser.add_argument("--ca-file", help="CA of the broker's certificate (mqtts://)")
    parser.add_argument("--site", default="+", help="one site, or + for all (default)")
    parser.add_argument("--count", type=int, default=None,
                        help="exit after this many distinct readouts and rejections")
    args = parser.parse_args(argv)

    url = urlsplit(args.broker)
    tls = url.scheme == "mqtts"
    host, port = url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883)
    printer = ReadoutPrinter(stop_after=args.count)

    # manual_ack: the broker may forget a message only once it has been handled (stored), so
    # a crash halfway through means a redelivery, never a loss.
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id,
                         protocol=mqtt.MQTTv5, manual_ack=True)
    if tls:
        client.tls_set(ca_certs=args.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    if args.username:
        password = None
        if args.password_file:
            with open(args.password_file, encoding="utf-8") as handle:
                password = handle.readline().rstrip("\n")
        client.username_pw_set(args.username, password)

    topics = [(f"{PREFIX}/{args.site}/+/readout", 1), (f"{PREFIX}/{args.site}/+/rejected", 1)]

    def on_connect(client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                   reason_code: object, properties: object) -> None:
        if getattr(reason_code, "is_failure", False):
            print(f"broker refused the connection: {reason_code}", file=sys.stderr)
            return
        # With a resumed session the subscriptions still exist; subscribing again is harmless.
        client.subscribe(topics)
        print(f"connected to {host}:{port} (session resumed: {flags.session_present})",
              file=sys.stderr, flush=True)

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        printer.handle(message.topic, message.payload)
        client.ack(message.mid, message.qos)
        if printer.done:
            client.disconnect()  # after the PUBACK above, so nothing is redelivered

    last_failure: list[str] = []

    def on_connect_fail(client: mqtt.Client, userdata: object) -> None:
        # paho retries without saying why; one TCP connect tells (said once per reason).
        try:
            socket.create_connection((host, port), timeout=3).close()
            reason = "it accepts TCP, but the TLS or MQTT handshake failed"
        except OSError as exc:
            reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
        if last_failure != [reason]:
            last_failure[:] = [reason]
            print(f"cannot connect to the broker at {host}:{port}: {reason}; retrying",
                  file=sys.stderr, flush=True)

    client.on_connect = on_connect
    client.on_connect_fail = on_connect_fail
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())

    connect_properties = Properties(PacketTypes.CONNECT)
    connect_properties.SessionExpiryInterval = SESSION_EXPIRY_S
    client.connect_async(host, port, keepalive=30, clean_start=False,
                         properties=connect_properties)
    try:
        client.loop_forever(retry_first_connection=True)
    except KeyboardInterrupt:
        client.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
