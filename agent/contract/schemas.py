"""JSON Schemas of the payloads, generated from the models (docs/schemas/ keeps a copy)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agent.contract.diagnosis import Diagnosis
from agent.domain.models import Readout, Rejected, Reminder, Status

PAYLOAD_MODELS: dict[str, type[BaseModel]] = {"readout": Readout, "rejected": Rejected, "status": Status, "reminder": Reminder,
                                               "diagnosis": Diagnosis}


def payload_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of payload ``name`` as it appears on the wire."""
    model = PAYLOAD_MODELS[name]
    schema: dict[str, Any] = model.model_json_schema(by_alias=True, mode="serialization")
    _allow_additions(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://cbs-agent.example/schemas/cbs.{name}-1.json"
    return schema


def _allow_additions(node: Any) -> None:
    """Drop ``additionalProperties: false``: a later compatible version only adds keys, so the
    published schema must not make integrators' validators reject them."""
    if isinstance(node, dict):
        if node.get("additionalProperties") is False:
            del node["additionalProperties"]
        for value in node.values():
            _allow_additions(value)
    elif isinstance(node, list):
        for value in node:
            _allow_additions(value)
