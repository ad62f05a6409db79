"""agent/contract/ha_discovery.py builds Home Assistant MQTT discovery messages by HA's conventions.

The allowed keys below are those Home Assistant documents for MQTT sensors and binary sensors
(integrations/sensor.mqtt, binary_sensor.mqtt, and "MQTT Discovery" for device and origin),
so a typo or an invented key fails here instead of being ignored by Home Assistant. Every
template is checked against real payloads: with Jinja2 (what HA renders them with) when it is
installed, and always by resolving the ``value_json`` paths it uses.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from agent.contract.ha_discovery import discovery_messages, node_id_for, removal_messages
from agent.contract.topics import Topics

_COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "default_entity_id", "device", "device_class", "enabled_by_default", "encoding",
    "entity_category", "entity_picture", "expire_after", "force_update", "icon",
    "json_attributes_template", "json_attributes_topic", "name", "object_id", "origin",
    "payload_available", "payload_not_available", "platform", "qos", "state_topic",
    "unique_id", "value_template",
}
ALLOWED = {
    "sensor": _COMMON | {"last_reset_value_template", "options", "state_class",
                         "suggested_display_precision", "unit_of_measurement"},
    "binary_sensor": _COMMON | {"off_delay", "payload_off", "payload_on"},
}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer",
               "model", "model_id", "name", "serial_number", "suggested_area", "sw_version",
               "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
SENSOR_DEVICE_CLASSES = {"distance", "enum", "date", "timestamp", "duration", None}
BINARY_DEVICE_CLASSES = {"connectivity", "problem", "running", None}
ID = re.compile(r"^[a-zA-Z0-9_-]+$")

TOPICS = Topics("cbs/v1", "S1", "desk1")


def messages(prefix: str = "homeassistant") -> list[tuple[str, dict[str, Any]]]:
    return [(topic, json.loads(payload))
            for topic, payload in discovery_messages(TOPICS, "S1", "desk1", prefix)]


def test_topics_follow_the_discovery_scheme() -> None:
    found = messages()
    assert len(found) >= 8
    node = node_id_for("S1", "desk1")
    for topic, _config in found:
        prefix, component, node_id, object_id, last = topic.split("/")
        assert (prefix, node_id, last) == ("homeassistant", node, "config")
        assert component in ALLOWED
        assert ID.match(node_id) and ID.match(object_id)
    assert len({topic for topic, _ in found}) == len(found)
    assert all(t.startswith("ha/discovery/") for t, _ in messages("ha/discovery"))


def test_payloads_use_only_documented_keys() -> None:
    for topic, config in messages():
        component = topic.split("/")[1]
        assert set(config) <= ALLOWED[component], (topic, set(config) - ALLOWED[component])
        assert set(config["device"]) <= DEVICE_KEYS
        assert set(config["origin"]) <= ORIGIN_KEYS and config["origin"]["name"] == "cbs-agent"
        assert config["state_topic"] in (TOPICS.status, TOPICS.readout, TOPICS.rejected)
        if "json_attributes_template" in config:
            assert "json_attributes_topic" in config
        classes = SENSOR_DEVICE_CLASSES if component == "sensor" else BINARY_DEVICE_CLASSES
        assert config.get("device_class") in classes
        if config.get("device_class") == "enum":
            assert config["options"] == ["ok", "due_soon", "overdue"]
        if component == "binary_sensor":
            assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")
        assert config.get("entity_category") in (None, "diagnostic")
        assert config["qos"] == 1


def test_availability_device_and_unique_ids() -> None:
    found = messages()
    identifiers = {json.dumps(config["device"], sort_keys=True) for _, config in found}
    assert len(identifiers) == 1, "one device per reader, the same block everywhere"
    for _topic, config in found:
        assert config["availability_topic"] == TOPICS.status
        assert config["availability_template"] == "{{ value_json.state }}"
        assert (config["payload_available"], config["payload_not_available"]) == (
            "online", "offline")
        assert config["device"]["identifiers"] == ["cbs-agent/S1/desk1"]
    unique = [config["unique_id"] for _, config in found]
    assert len(set(unique)) == len(unique)
    other = [json.loads(p)["unique_id"] for _, p in
             discovery_messages(Topics("cbs/v1", "S1", "desk2"), "S1", "desk2")]
    assert not set(unique) & set(other), "two readers never share an entity"


def test_names_that_would_collide_get_distinct_nodes() -> None:
    assert node_id_for("a_b", "c") != node_id_for("a", "b_c")


def test_removal_and_bad_arguments() -> None:
    removal = removal_messages(TOPICS, "S1", "desk1")
    assert [t for t, _ in removal] == [t for t, _ in messages()]
    assert all(payload == "" for _, payload in removal)
    with pytest.raises(ValueError):
        discovery_messages(TOPICS, "S2", "desk1")
    with pytest.raises(ValueError):
        discovery_messages(TOPICS, "S1", "desk1", prefix="home/#")


# -- the templates against real payloads ------------------------------------------------------


def _payloads() -> dict[str, list[dict[str, Any]]]:
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from integrator_reference import example_payloads

    examples = example_payloads()
    offline = {"schema": "cbs.status/1", "state": "offline"}
    readout = examples["readout"]
    nothing_due = {**readout, "summary": {**readout["summary"], "next_due": None}}
    return {TOPICS.status: [examples["status"], offline],
            TOPICS.readout: [readout, nothing_due], TOPICS.rejected: [examples["rejected"]]}


_PATH = re.compile(r"value_json((?:\.[a-z_]+)+)")


def test_template_paths_exist_in_real_payloads() -> None:
    payloads = _payloads()
    for _topic, config in messages():
        for key in ("value_template", "json_attributes_template"):
            template = config.get(key)
            if not template:
                continue
            sample = payloads[config["state_topic"]][0]
            for match in _PATH.finditer(template):
                node: Any = sample
                for part in match.group(1).strip(".").split("."):
                    assert isinstance(node, dict) and part in node, (template, match.group(0))
                    node = node[part]


def test_templates_render_with_jinja() -> None:
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    environment.filters.setdefault("tojson", lambda value: json.dumps(value))
    payloads = _payloads()
    for _topic, config in messages():
        for key in ("value_template", "json_attributes_template", "availability_template"):
            template = config.get(key)
            if not template:
                continue
            topic = config["availability_topic"] if key == "availability_template" \
                else config["state_topic"]
            for sample in payloads[topic]:  # the offline status too: no key may be missing
                rendered = environment.from_string(template).render(value_json=sample)
                if key == "json_attributes_template":
                    assert isinstance(json.loads(rendered), dict), rendered
                elif key == "availability_template":
                    assert rendered in ("online", "offline")
                elif config.get("payload_on"):
                    assert rendered in ("ON", "OFF"), (template, rendered)
                else:
                    assert rendered != "", (template, sample)
    # The sensor values from the worked example, as Home Assistant would show them.
    rendered = {config["unique_id"].rsplit("/", 1)[1]:
                environment.from_string(config["value_template"]).render(
                    value_json=payloads[config["state_topic"]][0])
                for _, config in messages()}
    assert rendered["last_vin"] == "WBA8E5107FK123456"
    assert rendered["last_mileage"] == "48371"
    assert rendered["last_service_status"] == "due_soon"
    assert rendered["reader_connected"] == "ON"
    assert rendered["readouts"] == "12"
    assert rendered["last_rejection"] == "crc_mismatch"
