"""What the command-line tools (``watch``, ``ha remove``) say when a broker cannot be reached
(their paho client comes from :func:`agent.mqtt.paho_link.new_client`).

paho retries a failed connect without saying why (its ``on_connect_fail`` carries no reason),
so :func:`unreachable_reason` asks the network itself with one plain TCP connect.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.mqtt.settings import MqttSettings

PROBE_TIMEOUT_S = 3.0


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
