"""``cbs-agent check-config``: is this configuration going to work, here, now?

An operator runs it after editing the config file and before (re)starting the service. The
file itself was already validated when the CLI loaded it (a broken one exits 2 with one line
before we get here); this module then tries every outside thing the agent will need, the way
the agent will use it, and prints one finding per line::

    ok config: site S1, reader desk1, serial reader /dev/ttyUSB0, broker mqtts://broker:8883
    ok dbc: dbc/key_reader.dbc, 10 messages
    ok state_dir: /var/lib/cbs-agent is writable
    FAIL reader: cannot open serial port /dev/ttyUSB0: [Errno 2] No such file or directory
    ok broker: TCP connection to broker:8883
    FAIL broker: MQTT 5 over TLS as user 'cbs-agent-S1-desk1': CONNACK refused: Not authorized

Exit status 0 when every line is ``ok``, 1 otherwise; ``WARN`` lines (a state directory or
password file open to other users, a password over plain ``mqtt://``) do not fail. Nothing is published; the broker check
connects with the agent's client id plus ``-check``, so that a running agent (same broker,
same credentials) is not thrown off by a session takeover. The password is never printed.

The serial check opens the port exclusively, as the agent does, so it fails while the agent
itself is running ("is cbs-agent already running?"): stop the service first, or ignore that
line. After opening, it sends PING and reports the HELLO answer if one comes within a second;
silence is reported but is not a failure (a reader may be powered from the car, or busy).
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.config import AgentSettings
    from agent.mqtt.settings import MqttSettings

__all__ = ["Finding", "check_config", "check_broker", "check_dbc", "check_reader",
           "check_state_dir"]

BROKER_TIMEOUT_S = 5.0
HELLO_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class Finding:
    ok: bool
    subject: str
    detail: str

    @property
    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL'} {self.subject}: {self.detail}"


def _describe_settings(settings: AgentSettings) -> str:
    if settings.can_interface:
        reader = (f"CAN reader {settings.can_interface}:{settings.can_channel} "
                  f"at {settings.can_bitrate} bit/s")
    elif settings.serial:
        reader = f"serial reader {settings.serial} at {settings.baudrate} baud"
    else:
        reader = "no reader"
    mqtt = settings.effective_mqtt()
    return (f"site {settings.site}, reader {settings.reader}, {reader}, broker {mqtt.url} "
            f"(MQTT {mqtt.protocol}), topics {mqtt.prefix}/{settings.site}/{settings.reader}/...")


def check_dbc(settings: AgentSettings) -> Finding:
    from agent.wiring import load_database
    try:
        db = load_database(settings)
    except ConfigError as exc:
        return Finding(False, "dbc", str(exc))
    source = str(settings.dbc_file) if settings.dbc_file else "dbc/key_reader.dbc (shipped)"
    return Finding(True, "dbc", f"{source}, {len(db.messages)} messages")


def check_catalogue(settings: AgentSettings) -> Finding:
    """The price catalogue the proposal is made from, as ``run`` loads it at start-up (a
    missing file or a currency other than the expected one stops ``run`` with exit 2)."""
    from agent.wiring import proposal_context
    try:
        catalogue = proposal_context(settings).catalogue
    except ConfigError as exc:
        return Finding(False, "catalogue", str(exc))
    source = str(settings.catalogue.path) if settings.catalogue.path else "shipped catalogue"
    finding = catalogue.fault_finding
    faults = ("fault finding on request (no [fault_finding])" if finding is None else
              f"fault finding for {len(finding.ecus)} control units, "
              f"{finding.default_minutes} min for others")
    return Finding(True, "catalogue", f"{source}: {len(catalogue.entries)} items in "
                                      f"{catalogue.currency}, {faults}")


def check_state_dir(settings: AgentSettings) -> Finding:
    """The outbox and the vehicle history live here: it must exist (or be creatable) and take
    a file that is written, synced and removed again."""
    directory = settings.state_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".check-config-", dir=directory)
        try:
            os.write(fd, b"cbs-agent check-config\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return Finding(False, "state_dir", f"{directory} is not writable: {exc.strerror or exc}")
    return Finding(True, "state_dir", f"{directory} is writable")


def check_reader(settings: AgentSettings, *, hello_timeout_s: float = HELLO_TIMEOUT_S) -> Finding:
    if settings.can_interface:
        return _check_can(settings)
    if settings.serial:
        return _check_serial(settings.serial, settings.baudrate, hello_timeout_s)
    return Finding(False, "reader", "none configured: set serial (--serial PORT) or "
                                    "can_interface and can_channel")


def _check_serial(port: str, baudrate: int, hello_timeout_s: float) -> Finding:
    import serial

    from protocols.serial_framing import FrameType, SerialFrameDecoder, decode_hello, encode_frame

    try:
        handle = serial.Serial(port, baudrate, bytesize=8, parity="N", stopbits=1, timeout=0.05,
                               exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        hint = " (is cbs-agent already running?)" if "lock" in str(exc).lower() else ""
        return Finding(False, "reader", f"cannot open serial port {port}: {exc}{hint}")
    try:
        answer = (f"no HELLO answer to PING within {hello_timeout_s:.1f} s "
                  "(reader unpowered or busy?)")
        try:
            handle.write(encode_frame(FrameType.PING))
            decoder = SerialFrameDecoder()
            deadline = time.monotonic() + hello_timeout_s
            while time.monotonic() < deadline:
                frames = decoder.feed(handle.read(256), time.monotonic())
                hello = next((decode_hello(f.payload) for f in frames
                              if f.frame_type == FrameType.HELLO), None)
                if hello is not None:
                    answer = f"reader answered PING: protocol {hello[0]}, firmware {hello[1]!r}"
                    break
        except (serial.SerialException, OSError) as exc:
            return Finding(False, "reader", f"serial port {port} opened but failed: {exc}")
    finally:
        handle.close()
    return Finding(True, "reader", f"serial port {port} opens at {baudrate} baud 8N1; {answer}")


def _check_can(settings: AgentSettings) -> Finding:
    name = f"{settings.can_interface}:{settings.can_channel}"
    try:
        import can
        bus = can.Bus(interface=settings.can_interface, channel=settings.can_channel,
                      bitrate=settings.can_bitrate)
    except Exception as exc:  # python-can and its plugins raise many types (see can_reader)
        return Finding(False, "reader", f"cannot open CAN interface {name}: "
                                        f"{type(exc).__name__}: {exc}")
    try:
        bus.shutdown()
    except Exception:  # closing is best effort; the open is what we were asked about
        pass
    return Finding(True, "reader", f"CAN interface {name} opens at {settings.can_bitrate} bit/s")


def check_broker(mqtt: MqttSettings, client_id: str, *,
                 timeout_s: float = BROKER_TIMEOUT_S) -> list[Finding]:
    """TCP to the broker, then a real MQTT CONNECT with the configured protocol, TLS and
    credentials, waiting for the CONNACK. One finding per step that was tried."""
    host, port = mqtt.host, mqtt.port
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        return [Finding(False, "broker", f"no TCP connection to {host}:{port}: "
                                         f"{exc.strerror or exc}")]
    findings = [Finding(True, "broker", f"TCP connection to {host}:{port}")]
    findings.append(_mqtt_connect(mqtt, client_id, timeout_s))
    return findings


def _mqtt_connect(mqtt: MqttSettings, client_id: str, timeout_s: float) -> Finding:
    from agent.mqtt.paho_link import error_string, is_success, new_client

    how = f"MQTT {mqtt.protocol}" + (" over TLS" if mqtt.tls else "") + (
        f" as user {mqtt.username!r}" if mqtt.username else " without credentials")
    try:
        client = new_client(mqtt, client_id)
    except ConfigError as exc:
        return Finding(False, "broker", f"{how}: TLS files cannot be used: {exc.__cause__ or exc}")
    result: list[str] = []

    def on_connect(_client: object, _userdata: object, _flags: object, reason_code: object,
                   _properties: object) -> None:
        failed = getattr(reason_code, "is_failure", False)
        result.append(("refused: " if failed else "accepted: ") + str(reason_code))

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=max(10, int(timeout_s) + 5))
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        return Finding(False, "broker", f"{how}: TLS handshake failed: {exc}")
    except (OSError, ValueError) as exc:
        return Finding(False, "broker", f"{how}: cannot connect: {exc}")
    try:
        deadline = time.monotonic() + timeout_s
        while not result and time.monotonic() < deadline:
            rc = client.loop(timeout=0.1)
            if not is_success(rc) and not result:
                return Finding(False, "broker", f"{how}: connection closed before CONNACK "
                                                f"({error_string(rc)})")
    finally:
        client.disconnect()
    if not result:
        return Finding(False, "broker", f"{how}: no CONNACK within {timeout_s:.0f} s")
    outcome = result[0]
    return Finding(outcome.startswith("accepted"), "broker", f"{how}: CONNACK {outcome}")


def _opt(path: object) -> str | None:
    return None if path is None else str(path)


def check_config(settings: AgentSettings, out: TextIO, *,
                 broker_timeout_s: float = BROKER_TIMEOUT_S,
                 hello_timeout_s: float = HELLO_TIMEOUT_S) -> int:
    """Run every check, print one ``ok ...``/``FAIL ...`` line each (as soon as it is known),
    return 0 when all are ok, else 1."""
    failures = 0

    def report(finding: Finding) -> None:
        nonlocal failures
        failures += not finding.ok
        out.write(finding.line + "\n")
        out.flush()

    report(Finding(True, "config", _describe_settings(settings)))
    from agent.config import security_warnings
    for warning in security_warnings(settings):  # worth fixing, not failing
        out.write(f"WARN config: {warning}\n")
    report(check_dbc(settings))
    report(check_catalogue(settings))
    report(check_state_dir(settings))
    report(check_reader(settings, hello_timeout_s=hello_timeout_s))
    mqtt = settings.effective_mqtt()
    client_id = mqtt.client_id_for(settings.site, settings.reader) + "-check"
    for finding in check_broker(mqtt, client_id, timeout_s=broker_timeout_s):
        report(finding)
    return 0 if failures == 0 else 1
