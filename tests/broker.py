"""Real-broker test helpers: a private mosquitto per test, test certificates, a subscriber.

* :class:`MosquittoBroker` runs ``mosquitto`` on a free 127.0.0.1 port with a generated
  config in a temporary directory (anonymous or password file, ACL file, TLS listener,
  persistence), waits until it accepts connections, and can be stopped and started again on
  the same port (a broker restart).
* :func:`make_certificates` writes a CA, a server certificate (``localhost``/127.0.0.1 by
  default) and a client certificate with the ``openssl`` command-line tool.
* :class:`Subscriber` is a paho client that collects every message with its MQTT 5
  properties and lets a test wait (bounded) for what it expects.

Fixtures (tests/conftest.py imports them for the whole suite): ``make_broker``, ``mosquitto``,
``make_subscriber``. Tests that need mosquitto or openssl skip if the program is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
WAIT_TIMEOUT_S = 15.0


def mosquitto_path() -> str | None:
    """The mosquitto binary (``$PATH`` or /usr/sbin), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def require_mosquitto() -> str:
    path = mosquitto_path()
    if path is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_TIMEOUT_S,
               what: str = "condition", interval_s: float = 0.01) -> None:
    """Poll ``predicate`` until true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TestCertificates:
    """PEM files: a CA, a server certificate signed by it and a client certificate."""

    __test__ = False  # not a pytest test class

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path, *, server_dns: Sequence[str] = ("localhost",),
                      server_ips: Sequence[str] = ("127.0.0.1",)) -> TestCertificates:
    """Generate test certificates (EC P-256, valid two days) with the openssl CLI; skips the
    test if openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True,
                       timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=cbs-agent test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    names = [f"DNS:{n}" for n in server_dns] + [f"IP:{ip}" for ip in server_ips]
    for role, usage, alt in (("server", "serverAuth", ",".join(names)), ("client", "clientAuth", "")):
        run("req", *ec, "-keyout", f"{role}.key", "-out", f"{role}.csr",
            "-subj", f"/CN=cbs-agent test {role}")
        extensions = ["basicConstraints=critical,CA:FALSE",
                      "keyUsage=critical,digitalSignature,keyEncipherment",
                      f"extendedKeyUsage={usage}"]
        if alt:
            extensions.append(f"subjectAltName={alt}")
        (directory / f"{role}.ext").write_text("\n".join(extensions) + "\n")
        run("x509", "-req", "-in", f"{role}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{role}.crt", "-days", "2", "-extfile", f"{role}.ext")
    return TestCertificates(*(directory / name for name in (
        "ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")))


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file (hashed with mosquitto_passwd) for ``users``."""
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path.write_text("")
    for name, password in users.items():
        subprocess.run([passwd, "-b", str(path), name, password], check=True,
                       capture_output=True, timeout=30)
    return path


# -- the broker -------------------------------------------------------------------------------


class MosquittoBroker:
    """One private mosquitto process; see the module docstring.

    ``users`` become a password file (mosquitto_passwd); ``acl_file`` is used as given;
    ``tls`` turns the listener into TLS (``require_certificate`` asks for client certificates);
    ``persistence`` keeps sessions and queued messages across :meth:`stop`/:meth:`start`.
    ``config_text`` replaces the generated configuration (it must define ``listener`` on
    :attr:`port`; logging to :attr:`log_path` is appended).
    """

    def __init__(self, workdir: Path, *, allow_anonymous: bool = True,
                 users: dict[str, str] | None = None, acl_file: Path | None = None,
                 tls: TestCertificates | None = None, require_certificate: bool = False,
                 persistence: bool = False, extra_config: str = "",
                 port: int | None = None, config_text: str | None = None) -> None:
        self.binary = require_mosquitto()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tls = tls
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        self._process: subprocess.Popen[bytes] | None = None

        logging_lines = [f"log_dest file {self.log_path}", "log_type error", "log_type warning",
                         "log_type notice", "log_type information", "log_type subscribe",
                         "connection_messages true"]
        if os.geteuid() == 0:
            logging_lines.append("user root")  # else it drops to 'mosquitto', cannot read tmp
        if config_text is not None:
            self.config_path.write_text(config_text + "\n" + "\n".join(logging_lines) + "\n")
            return
        lines = [f"listener {self.port} {self.host}",
                 f"allow_anonymous {'true' if allow_anonymous else 'false'}",
                 *logging_lines,
                 "max_queued_messages 0",
                 f"persistence {'true' if persistence else 'false'}"]
        if persistence:
            lines.append(f"persistence_location {workdir}/")
        if users:
            lines.append(f"password_file {write_password_file(workdir / 'passwords', users)}")
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
        if tls is not None:
            lines += [f"cafile {tls.ca_cert}", f"certfile {tls.server_cert}",
                      f"keyfile {tls.server_key}",
                      f"require_certificate {'true' if require_certificate else 'false'}"]
        if extra_config:
            lines.append(extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Self:
        """Start (or restart) on :attr:`port`; returns once it accepts TCP connections."""
        if self.running:
            raise RuntimeError("mosquitto is already running")
        self._process = subprocess.Popen([self.binary, "-c", str(self.config_path)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}: {stderr}\n"
                                   f"{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"mosquitto did not listen on {self.port} within "
                                       f"{timeout_s} s\n{self.log_text()}") from None
                time.sleep(0.02)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (mosquitto saves persistence and closes clients), then wait."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)
        self._close_pipes()

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without saving or saying goodbye."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
        self._close_pipes()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _close_pipes(self) -> None:
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- the subscriber ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message as a subscriber saw it (MQTT 5 properties when present)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    payload_format_indicator: int | None = None
    received_at: float = field(default_factory=time.time)  # wall clock, for latency figures

    def json(self) -> Any:
        return json.loads(self.payload)

    @property
    def user_property(self) -> dict[str, str]:
        return dict(self.user_properties)


@dataclass
class Subscriber:
    """A paho client collecting messages on ``topics``; resubscribes after reconnects.

    ``persistent=True`` keeps a broker-side session (MQTT 5 session expiry 1 h, or 3.1.1
    clean_session=False) so QoS 1 messages published while it is away are queued for it.
    """

    host: str
    port: int
    topics: Sequence[str] = ("#",)
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    client_id: str = ""
    ca_file: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    persistent: bool = False
    messages: list[Received] = field(default_factory=list)
    subscribe_results: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._subscribed = 0
        self._mqtt5 = self.protocol == "5"
        if not self.client_id:
            self.client_id = f"test-sub-{os.getpid()}-{id(self):x}"
        if self._mqtt5:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                      protocol=mqtt.MQTTv5)
        else:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                      protocol=mqtt.MQTTv311, clean_session=not self.persistent)
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        if self.ca_file is not None:
            self.client.tls_set(ca_certs=str(self.ca_file),
                                certfile=None if self.certfile is None else str(self.certfile),
                                keyfile=None if self.keyfile is None else str(self.keyfile))
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @classmethod
    def for_broker(cls, broker: MosquittoBroker, topics: Sequence[str] | str = ("#",),
                   **options: Any) -> Subscriber:
        if isinstance(topics, str):
            topics = (topics,)
        if broker.tls is not None:
            options.setdefault("ca_file", broker.tls.ca_cert)
        return cls(broker.host, broker.port, tuple(topics), **options)

    def start(self, timeout_s: float = WAIT_TIMEOUT_S) -> Self:
        """Connect and return once the broker has answered the first SUBSCRIBE."""
        if self._mqtt5:
            properties = None
            if self.persistent:
                properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                properties.SessionExpiryInterval = 3600
            self.client.connect_async(self.host, self.port, keepalive=10,
                                      clean_start=not self.persistent, properties=properties)
        else:
            self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._subscribed > 0, timeout=timeout_s):
                self.stop()
                raise AssertionError(f"subscriber not subscribed within {timeout_s} s")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[Any], properties: Any) -> None:
        with self._cond:
            self.subscribe_results.append(reason_codes)
            self._subscribed += 1
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        received = Received(
            topic=message.topic, payload=bytes(message.payload), qos=message.qos,
            retain=bool(message.retain),
            content_type=getattr(props, "ContentType", None),
            user_properties=tuple(getattr(props, "UserProperty", ()) or ()),
            payload_format_indicator=getattr(props, "PayloadFormatIndicator", None))
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[list[Received]], bool],
                 timeout_s: float = WAIT_TIMEOUT_S, what: str = "messages") -> list[Received]:
        """Block until ``predicate(messages so far)`` holds; returns the messages. Raises
        AssertionError (with what did arrive) after ``timeout_s``."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.messages), timeout=timeout_s):
                seen = [(m.topic, m.payload[:80]) for m in self.messages[-5:]]
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; "
                                     f"{len(self.messages)} received, last: {seen}")
            return list(self.messages)

    def wait_for_count(self, count: int, topic: str | None = None,
                       timeout_s: float = WAIT_TIMEOUT_S) -> list[Received]:
        """Wait for at least ``count`` messages (on ``topic`` if given); returns those."""
        def matching(messages: list[Received]) -> list[Received]:
            return [m for m in messages if topic is None or m.topic == topic]
        messages = self.wait_for(lambda ms: len(matching(ms)) >= count, timeout_s,
                                 what=f"{count} messages on {topic or 'any topic'}")
        return matching(messages)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Factory: ``make_broker(**options)`` returns a *started* :class:`MosquittoBroker`
    (options as in its constructor); every broker is stopped after the test."""
    brokers: list[MosquittoBroker] = []

    def factory(**options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        return broker.start()

    yield factory
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(make_broker: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """A started anonymous broker without persistence."""
    return make_broker()


@pytest.fixture
def make_subscriber() -> Iterator[Callable[..., Subscriber]]:
    """Factory: ``make_subscriber(broker, topics="#", **options)`` returns a started
    :class:`Subscriber` (already subscribed); all are stopped after the test."""
    subscribers: list[Subscriber] = []

    def factory(broker: MosquittoBroker, topics: Sequence[str] | str = ("#",),
                **options: Any) -> Subscriber:
        subscriber = Subscriber.for_broker(broker, topics, **options)
        subscribers.append(subscriber)
        return subscriber.start()

    yield factory
    for subscriber in subscribers:
        subscriber.stop()


def die_with_parent() -> None:
    """``preexec_fn`` for test subprocesses: the kernel sends SIGTERM to the child when the
    test process dies, so no agent outlives a killed test run (an orphaned agent would keep
    reopening its /dev/pts/N and steal the bytes of whatever test gets that number next)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
