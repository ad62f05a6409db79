"""Run Home Assistant's own MQTT discovery checks on discovery messages; runs in a Python
that has the ``homeassistant`` package (tests/integration/test_ha_schemas.py makes one).

Reads a JSON list of ``[topic, payload_text]`` on stdin and follows what Home Assistant does
with a message on its discovery topic (``homeassistant/components/mqtt/discovery.py``): the
topic must match its TOPIC_MATCHER and name a supported component, abbreviations are
expanded, ``origin`` must pass MQTT_ORIGIN_INFO_SCHEMA and the payload the component's
DISCOVERY_SCHEMA. That schema drops unknown keys silently (``extra=REMOVE_EXTRA``): a dropped
key is reported too, since it is a typo or a key this Home Assistant does not know.

Prints one JSON object: ``{"version": ..., "results": [{"topic", "errors", "dropped"}]}``.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from typing import Any


def main() -> int:
    warnings.simplefilter("ignore")
    from homeassistant.components.mqtt import discovery
    from homeassistant.components.mqtt.abbreviations import (
        ABBREVIATIONS,
        DEVICE_ABBREVIATIONS,
        ORIGIN_ABBREVIATIONS,
    )
    from homeassistant.const import __version__

    messages = json.load(sys.stdin)
    prefix = "homeassistant/"
    results = []
    for topic, text in messages:
        errors: list[str] = []
        dropped: list[str] = []
        match = discovery.TOPIC_MATCHER.match(topic.removeprefix(prefix)) \
            if topic.startswith(prefix) else None
        if match is None:
            errors.append("not a discovery topic Home Assistant reads")
        else:
            component = match.group("component")
            if component not in discovery.SUPPORTED_COMPONENTS:
                errors.append(f"component {component} is not supported")
            elif text:
                errors, dropped = _check_payload(component, json.loads(text), ABBREVIATIONS,
                                                 DEVICE_ABBREVIATIONS, ORIGIN_ABBREVIATIONS,
                                                 discovery)
        results.append({"topic": topic, "errors": errors, "dropped": dropped})
    print(json.dumps({"version": __version__, "results": results}))
    return 0


def _check_payload(component: str, payload: dict[str, Any], abbreviations: dict[str, str],
                   device_abbreviations: dict[str, str], origin_abbreviations: dict[str, str],
                   discovery: Any) -> tuple[list[str], list[str]]:
    import voluptuous as vol

    payload = {abbreviations.get(k, k): v for k, v in payload.items()}
    if isinstance(payload.get("device"), dict):
        payload["device"] = {device_abbreviations.get(k, k): v
                             for k, v in payload["device"].items()}
    errors: list[str] = []
    if "origin" in payload:
        payload["origin"] = {origin_abbreviations.get(k, k): v
                             for k, v in payload["origin"].items()}
        try:
            discovery.MQTT_ORIGIN_INFO_SCHEMA(payload["origin"])
        except vol.Invalid as exc:
            errors.append(f"origin: {exc}")
    payload["platform"] = "mqtt"
    module = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    try:
        config = module.DISCOVERY_SCHEMA(dict(payload))
    except vol.Invalid as exc:
        errors.append(str(exc))
        return errors, []
    dropped = sorted(set(payload) - set(config) - {"platform"})
    for block in ("device", "origin"):
        if isinstance(payload.get(block), dict) and isinstance(config.get(block), dict):
            dropped += sorted(f"{block}.{k}" for k in set(payload[block]) - set(config[block]))
    return errors, dropped


if __name__ == "__main__":
    sys.exit(main())
