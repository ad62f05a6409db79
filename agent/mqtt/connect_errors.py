"""Why a connection to the broker failed, in an operator's words, with the likely fix.

Pure: exceptions and settings in, one line out. The link (:mod:`agent.mqtt.paho_link`) logs the
line at WARNING once per change and the retries at DEBUG; ``check-config`` and the tools can
say the same words.
"""

from __future__ import annotations

import socket
import ssl

from agent.mqtt.settings import MqttSettings


def explain_connect_error(exc: BaseException, settings: MqttSettings) -> str:
    """Why a connection attempt failed, in an operator's words, with the likely fix."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the broker's TLS certificate at {where} is not trusted "
                f"(certificate verify failed: {exc.verify_message or exc}): check mqtt.ca_file (and the certificate's "
                "host name)")
    if isinstance(exc, ssl.SSLError):
        hint = ("is it a TLS port? plain MQTT uses mqtt://"
                if "WRONG_VERSION_NUMBER" in str(exc) or "wrong version" in str(exc)
                else "check the broker's TLS settings and the client certificate")
        return f"TLS handshake with {where} failed ({exc.reason or exc}): {hint}"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing listens on {where} (connection refused): is the broker running there?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host {settings.host!r} ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} (timed out): a firewall, or the wrong host"
    if isinstance(exc, ConnectionResetError):
        return f"{where} reset the connection: {closed_hint(settings)}"
    return f"cannot connect to {settings.url}: {exc}"


def explain_refusal(reason: str, settings: MqttSettings) -> str:
    """Why the broker refused our CONNECT (its CONNACK reason), with the likely fix."""
    lowered = reason.lower()
    if "not authori" in lowered or "user name or password" in lowered:
        who = f"user {settings.username!r}" if settings.username else "an anonymous client"
        return (f"broker refused the connection: {reason} ({who}): check mqtt.username and "
                "mqtt.password_file, and the broker's password file and ACL")
    return f"broker refused the connection: {reason}"


def closed_hint(settings: MqttSettings) -> str:
    if settings.tls:
        return "the broker dropped the TLS session: check the client certificate and TLS settings"
    return (f"the broker closed the connection before accepting it: if {settings.port} is a "
            "TLS port, use mqtts://")
