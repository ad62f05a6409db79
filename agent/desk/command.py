"""``cbs-agent desk``: the reception desk in a browser (docs/desk.md).

Wiring: the settings (``--config``/``CBS_*``/options, ``[desk]``), the subscription
(:class:`~agent.desk.feed.DeskFeed`), the approvals' durable outbox
(``{state_dir}/desk-outbox.sqlite3``, the agent's :class:`~agent.store.outbox.Outbox`) and
its :class:`~agent.mqtt.publisher.MqttPublisher`, then uvicorn until SIGTERM or Ctrl-C.

The publisher announces the desk, retained, on ``{prefix}/{site}/desks/{desk}/status``
(``online``, and ``offline`` as its last will): one level deeper than the readers' topics,
so no view mistakes a desk for a key reader.
"""

from __future__ import annotations

import getpass
import json
import logging
import re
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.contract.topics import Topics, approval_topic
from agent.domain.approval import APPROVAL_SCHEMA, Approval
from agent.domain.models import STATUS_SCHEMA, to_json
from agent.errors import ConfigError

if TYPE_CHECKING:
    import argparse

    from agent.mqtt.publisher import MqttPublisher
    from agent.store.outbox import Outbox

log = logging.getLogger(__name__)

__all__ = ["OutboxApprovals", "desk_command", "desk_name"]

DESKS_LEVEL = "desks"


class OutboxApprovals:
    """Approvals into the durable outbox, then a nudge to the publisher: an approval
    recorded while the broker is away is delivered when it is back, at least once."""

    def __init__(self, outbox: Outbox, publisher: MqttPublisher, prefix: str) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self.prefix = prefix

    def record(self, approval: Approval) -> str:
        topic = approval_topic(self.prefix, approval.site, approval.reader)
        self.outbox.put(topic, to_json(approval).encode(), retain=False, schema=APPROVAL_SCHEMA,
                        message_id=approval.approval_id)
        self.publisher.notify()
        log.info("desk: approval %s of %s (readout %s) stored for %s", approval.approval_id,
                 approval.vin, approval.readout_id, topic)
        return topic


def desk_name(configured: str | None) -> str:
    if configured:
        return configured
    host = re.sub(r"[^A-Za-z0-9_-]", "", socket.gethostname())[:50] or "host"
    return f"desk-{host}"


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, opened here so that a taken port is one clear line (exit 2)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(f"desk: cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}") from exc
    return sock


def _hash_password() -> int:
    from agent.desk.security import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("desk password: ")
        if first != getpass.getpass("again: "):
            print("cbs-agent: the passwords differ", file=sys.stderr)
            return 2
    else:
        first = sys.stdin.readline().rstrip("\n")
    if len(first) < 8:
        print("cbs-agent: a desk password has at least 8 characters", file=sys.stderr)
        return 2
    print(hash_password(first))
    return 0


def desk_command(args: argparse.Namespace) -> int:
    """Run the desk until SIGTERM/SIGINT. Raises ConfigError for unusable settings."""
    if args.hash_password:
        return _hash_password()
    import uvicorn

    from agent.config import load_settings
    from agent.desk.app import DeskConfig, create_app
    from agent.desk.feed import DeskFeed
    from agent.desk.security import check_hash, is_loopback, load_secret
    from agent.desk.state import DeskState
    from agent.desk.visits import VisitStore
    from agent.domain.catalogue import load_catalogue
    from agent.domain.i18n import check_language
    from agent.logging_setup import configure_logging
    from agent.mqtt.publisher import MqttPublisher
    from agent.store.outbox import Outbox

    settings = load_settings(args.config, site=args.site, reader="desk", broker=args.broker,
                             state_dir=args.state_dir, log_level=args.log_level,
                             log_format=args.log_format)
    configure_logging(settings.log_level, settings.log_format)
    # The fault-finding minutes come from the same [catalogue] as the agent's proposal; a
    # broken catalogue stops the desk at start-up with one line, as it stops the agent.
    catalogue = load_catalogue(settings.catalogue)
    desk = settings.desk
    host = args.host or desk.host
    port = args.port or desk.port
    require_login = desk.require_login or not is_loopback(host)
    if require_login and desk.password_hash is None:
        raise ConfigError(f"desk: listening on {host} needs a login: set [desk] password_hash "
                          "(make one with `cbs-agent desk --hash-password`), or keep the "
                          "default --host 127.0.0.1")
    password_hash = None if desk.password_hash is None else check_hash(desk.password_hash)
    state_dir: Path = settings.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"state_dir {state_dir}: cannot create: {exc.strerror}") from exc
    name = desk_name(desk.name)
    mqtt = settings.effective_mqtt()
    language = check_language(args.language or settings.language)
    sock = _listen(host, port)
    outbox = Outbox(state_dir / "desk-outbox.sqlite3", max_messages=settings.outbox.max_messages,
                    max_age_s=settings.outbox.max_age_days * 86400)
    # The desk's own client id: a configured [mqtt] client_id is the agent's and must not be
    # shared (the broker would disconnect one of the two).
    publisher_settings = mqtt.model_copy(update={"client_id": f"cbs-desk-{name}-out"})
    publisher = MqttPublisher(publisher_settings, outbox,
                              Topics(f"{mqtt.prefix}/{settings.site}", DESKS_LEVEL, name))
    state = DeskState(prefix=mqtt.prefix, site=settings.site, zone=settings.forecast.zone)
    try:
        visits: VisitStore | None = VisitStore(state_dir / "desk-visits.sqlite3",
                                               retention_days=settings.history.retention_days)
    except sqlite3.Error as exc:
        log.warning("desk: earlier visits are not kept across restarts: %s", exc)
        visits = None
    feed = DeskFeed(mqtt, state, client_id=f"cbs-desk-{name}-in", visits=visits)
    log.info("desk: %d readouts of earlier visits restored", feed.restore())
    config = DeskConfig(site=settings.site, prefix=mqtt.prefix, desk_name=name,
                        language=language, secret=load_secret(state_dir / "desk-session.key"),
                        require_login=require_login, password_hash=password_hash,
                        window_days=settings.reminders.window_days,
                        fault_finding=catalogue.fault_finding)
    app = create_app(config, feed, OutboxApprovals(outbox, publisher, mqtt.prefix))
    status: dict[str, Any] = {"schema": STATUS_SCHEMA, "state": "online"}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=2, lifespan="off"))
    # uvicorn handles SIGTERM/SIGINT itself (a graceful shutdown) and afterwards re-raises
    # them to the handlers it found: these, so that the desk then stops its feed and its
    # publisher (which publishes "offline") and exits 0 instead of dying of the signal.
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopped.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopped.append(signum))
    feed.start()
    publisher.start(lambda: json.dumps(status))
    log.info("desk: http://%s:%d/ for site %s (%s, login %s)", host, port, settings.site, name,
             "required" if require_login else "not required on loopback")
    try:
        server.run(sockets=[sock])
    finally:
        feed.stop()
        publisher.stop()
        outbox.close()
        if visits is not None:
            visits.close()
        sock.close()
    return 0
