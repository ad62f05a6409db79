"""Home Assistant MQTT discovery: the retained config messages that make a workshop's Home
Assistant show each key reader (is it online, is the reader connected, how many keys read)
and the last vehicle read (VIN, mileage, service status, next due date, express lane).

Pure: :func:`discovery_messages` returns ``(topic, payload_json)`` pairs and does no I/O; the
agent publishes them retained (QoS 1) on connect when ``[mqtt] home_assistant_discovery`` is
on, and :func:`removal_messages` (empty retained payloads) deletes the entities again.

Conventions followed (Home Assistant, "MQTT Discovery"):

* topic ``<prefix>/<component>/<node_id>/<object_id>/config``, ``node_id`` and
  ``object_id`` of ``[a-zA-Z0-9_-]``; the config is retained so Home Assistant finds it after
  its own restart;
* every entity has a ``unique_id`` and the same ``device`` block (one device per reader), plus
  an ``origin`` block naming this software;
* availability comes from our retained ``status`` topic (``availability_topic``) with
  ``availability_template`` reading its ``state`` (``online``/``offline``; the agent's last
  will makes it ``offline`` when the agent dies);
* entities read the agent's own topics with ``value_template`` and ``json_attributes_*``;
  nothing is published for Home Assistant beyond the config messages.

The readout topic is not retained, so after a Home Assistant restart the vehicle entities
show "unknown" until the next key is read; the status entities come back at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from agent import __version__
from agent.contract.topics import Topics, validate_name

__all__ = ["DEFAULT_DISCOVERY_PREFIX", "discovery_messages", "node_id_for", "removal_messages"]

DEFAULT_DISCOVERY_PREFIX = "homeassistant"
_ID_RE = re.compile(r"[a-zA-Z0-9_-]+")
_AVAILABILITY_TEMPLATE = "{{ value_json.state }}"


def node_id_for(site: str, reader: str) -> str:
    """``cbs_<site>_<reader>_<hash>``: readable in an MQTT browser and unique per reader
    (``_`` may occur inside names, so ``a_b``/``c`` and ``a``/``b_c`` would collide without
    the short hash of the unambiguous ``site/reader``)."""
    digest = hashlib.sha256(f"{site}/{reader}".encode()).hexdigest()[:6]
    return f"cbs_{site}_{reader}_{digest}"


def _check_prefix(prefix: str) -> str:
    if not prefix or any(ch in prefix for ch in "+#\0") or any(not p for p in prefix.split("/")):
        raise ValueError(f"discovery prefix {prefix!r} must be topic levels without wildcards")
    return prefix


def _entities(topics: Topics) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, object_id, entity-specific keys) of every entity of one reader."""
    status, readout, rejected = topics.status, topics.readout, topics.rejected
    readout_attributes = (
        "{{ {'readout_id': value_json.readout_id, 'read_at': value_json.read_at, "
        "'site': value_json.site, 'reader': value_json.reader, "
        "'mileage_km': value_json.vehicle.mileage_km, "
        "'status': value_json.summary.status, "
        "'next_due_type': value_json.summary.next_due.type "
        "if value_json.summary.next_due else None, "
        "'next_due_date': value_json.summary.next_due.due_date "
        "if value_json.summary.next_due else None, "
        "'express_eligible': value_json.summary.express_eligible, "
        "'services': value_json.services | map(attribute='type') | list, "
        "'active_check_controls': value_json.check_control | selectattr('status', 'eq', 'active') "
        "| map(attribute='id') | list, "
        "'confirmed_dtcs': value_json.dtcs | selectattr('confirmed') | map(attribute='code') | list"
        "} | tojson }}")
    return [
        ("binary_sensor", "reader_connected", {
            "name": "Reader connected", "state_topic": status, "device_class": "connectivity",
            "value_template": "{{ 'ON' if value_json.reader is defined and value_json.reader "
                              "and value_json.reader.connected else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF", "entity_category": "diagnostic",
            "json_attributes_topic": status,
            "json_attributes_template": "{{ value_json.reader | tojson if value_json.reader "
                                        "is defined and value_json.reader else '{}' }}"}),
        ("sensor", "readouts", {
            "name": "Keys read", "state_topic": status, "state_class": "total_increasing",
            "value_template": "{{ value_json.counters.readouts if value_json.counters is defined "
                              "and value_json.counters else None }}",
            "icon": "mdi:key-chain", "entity_category": "diagnostic"}),
        ("sensor", "rejected", {
            "name": "Keys not read", "state_topic": status, "state_class": "total_increasing",
            "value_template": "{{ value_json.counters.rejected if value_json.counters is defined "
                              "and value_json.counters else None }}",
            "icon": "mdi:key-remove", "entity_category": "diagnostic"}),
        ("sensor", "outbox_depth", {
            "name": "Messages waiting", "state_topic": status, "state_class": "measurement",
            "unit_of_measurement": "messages",
            "value_template": "{{ value_json.outbox.depth if value_json.outbox is defined "
                              "and value_json.outbox else None }}",
            "icon": "mdi:tray-full", "entity_category": "diagnostic"}),
        ("sensor", "last_vin", {
            "name": "Last vehicle", "state_topic": readout,
            "value_template": "{{ value_json.vehicle.vin }}", "icon": "mdi:car-key",
            "json_attributes_topic": readout, "json_attributes_template": readout_attributes}),
        ("sensor", "last_mileage", {
            "name": "Last vehicle mileage", "state_topic": readout, "device_class": "distance",
            "unit_of_measurement": "km", "suggested_display_precision": 0,
            "value_template": "{{ value_json.vehicle.mileage_km }}"}),
        ("sensor", "last_service_status", {
            "name": "Last vehicle service status", "state_topic": readout,
            "device_class": "enum", "options": ["ok", "due_soon", "overdue"],
            "value_template": "{{ value_json.summary.status }}", "icon": "mdi:car-wrench"}),
        ("sensor", "last_next_due", {
            "name": "Last vehicle next service due", "state_topic": readout,
            "device_class": "date",
            "value_template": "{{ value_json.summary.next_due.due_date if "
                              "value_json.summary.next_due else None }}",
            "json_attributes_topic": readout,
            "json_attributes_template": "{{ value_json.summary.next_due | tojson if "
                                        "value_json.summary.next_due else '{}' }}"}),
        ("binary_sensor", "last_express_eligible", {
            "name": "Last vehicle fits express lane", "state_topic": readout,
            # The one express-lane verdict (docs/express-lane.md): with the time budget.
            "value_template": "{{ 'ON' if value_json.proposal and "
                              "value_json.proposal.express.eligible else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF", "icon": "mdi:car-clock"}),
        ("sensor", "last_rejection", {
            "name": "Last key not read", "state_topic": rejected,
            "value_template": "{{ value_json.reason }}", "icon": "mdi:key-alert",
            "json_attributes_topic": rejected,
            "json_attributes_template": "{{ {'at': value_json.at, 'detail': value_json.detail, "
                                        "'key_id': value_json.key_id, 'frames_received': "
                                        "value_json.frames_received} | tojson }}",
            "entity_category": "diagnostic"}),
    ]


def discovery_messages(topics: Topics, site: str, reader: str,
                       prefix: str = DEFAULT_DISCOVERY_PREFIX, *,
                       agent_version: str = __version__) -> list[tuple[str, str]]:
    """The discovery config messages of one reader, as ``(topic, payload_json)``; publish
    each retained at QoS 1. ``site`` and ``reader`` must be those of ``topics``; raises
    ValueError (or :class:`~agent.errors.ConfigError`) for a mismatch, a bad name or a
    discovery prefix with wildcards."""
    validate_name("site", site)
    validate_name("reader", reader)
    if (site, reader) != (topics.site, topics.reader):
        raise ValueError(f"topics are for {topics.site}/{topics.reader}, not {site}/{reader}")
    _check_prefix(prefix)
    node_id = node_id_for(site, reader)
    device = {
        "identifiers": [f"cbs-agent/{site}/{reader}"],
        "name": f"CBS key reader {site} {reader}",
        "manufacturer": "cbs-agent",
        "model": "CBS key reader",
        "sw_version": agent_version,
    }
    origin = {"name": "cbs-agent", "sw_version": agent_version}
    messages = []
    for component, object_id, specific in _entities(topics):
        assert _ID_RE.fullmatch(object_id) and _ID_RE.fullmatch(node_id)
        config: dict[str, Any] = {
            "unique_id": f"cbs-agent/{site}/{reader}/{object_id}",
            **specific,
            "availability_topic": topics.status,
            "availability_template": _AVAILABILITY_TEMPLATE,
            "payload_available": "online",
            "payload_not_available": "offline",
            "qos": 1,
            "device": device,
            "origin": origin,
        }
        topic = f"{prefix}/{component}/{node_id}/{object_id}/config"
        messages.append((topic, json.dumps(config, ensure_ascii=False, separators=(",", ":"))))
    return messages


def removal_messages(topics: Topics, site: str, reader: str,
                     prefix: str = DEFAULT_DISCOVERY_PREFIX) -> list[tuple[str, str]]:
    """Empty retained payloads on every discovery topic: Home Assistant deletes the entities
    (publish these when discovery is switched off, or a reader is retired)."""
    return [(topic, "") for topic, _ in discovery_messages(topics, site, reader, prefix)]
