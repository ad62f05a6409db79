"""The small MQTT client the command-line tools share (``watch``, ``ha remove``): a paho client
set up from ``[mqtt]`` settings, and the one line that says why a broker cannot be reached.

paho retries a failed connect without saying why (its ``on_connect_fail`` carries no reason),
so :func:`unreachable_reason` asks the network itself with one plain TCP connect.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.mqtt.settings import MqttSettings

PROBE_TIMEOUT_S = 3.0


def make_client(mqtt: MqttSettings, client_id: str) -> Any:
    """A paho client (callback API 2) for ``mqtt``: protocol, TLS files and credentials
    applied; not connected. Raises OSError or ValueError if the TLS files cannot be used."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    if mqtt.protocol == "5":
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=paho.MQTTv5)
    else:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=paho.MQTTv311, clean_session=True)
    if mqtt.tls:
        client.tls_set(ca_certs=None if mqtt.ca_file is None else str(mqtt.ca_file),
                       certfile=None if mqtt.certfile is None else str(mqtt.certfile),
                       keyfile=None if mqtt.keyfile is None else str(mqtt.keyfile),
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.tls_insecure_set(mqtt.tls_insecure)
    if mqtt.username is not None:
        client.username_pw_set(mqtt.username, mqtt.password_value())
    return client


def unreachable_reason(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why a TCP connection to ``host:port`` fails (``cannot reach the broker at
    127.0.0.1:1883: connection refused``), or None when it opens (then the broker itself
    refused or dropped us, and paho's reason code says why)."""
    where = f"{host}:{port}"
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except socket.gaierror as exc:
        return f"cannot reach the broker at {where}: the host name does not resolve " \
               f"({exc.strerror or exc})"
    except TimeoutError:
        return f"cannot reach the broker at {where}: no answer within {timeout_s:g} s"
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        return f"cannot reach the broker at {where}: {reason}"
    return None


def connect_failure(mqtt: MqttSettings, detail: object = None) -> str:
    """The line for a connect that failed at the transport: the TCP reason, else the TLS or
    protocol level (``the broker ... accepts TCP but the MQTT connection failed``)."""
    reason = unreachable_reason(mqtt.host, mqtt.port)
    if reason is not None:
        return reason
    layer = "TLS or MQTT" if mqtt.tls else "MQTT"
    return (f"the broker at {mqtt.host}:{mqtt.port} accepts TCP connections but the {layer} "
            "connection failed" + ("" if detail is None else f": {detail}"))
