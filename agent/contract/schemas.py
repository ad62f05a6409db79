"""JSON Schemas of the payloads, generated from the models (docs/schemas/ keeps a copy)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agent.contract.commands import Response
from agent.contract.diagnosis import Diagnosis
from agent.domain.approval import Approval
from agent.domain.models import Readout, Rejected, Reminder, Status

PAYLOAD_MODELS: dict[str, type[BaseModel]] = {
    "readout": Readout,
    "rejected": Rejected,
    "status": Status,
    "reminder": Reminder,
    "response": Response,
    "approval": Approval,  # the desk's cbs.approval/1 (docs/approval.md)
    "diagnosis": Diagnosis,  # the vehicle test's cbs.diagnosis/1 (docs/diagnostics.md)
}


def payload_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of payload ``name`` as it appears on the wire."""
    model = PAYLOAD_MODELS[name]
    schema: dict[str, Any] = model.model_json_schema(by_alias=True, mode="serialization")
    _allow_additions(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://cbs-agent.example/schemas/cbs.{name}-1.json"
    return schema


#: Payloads whose channels are in the contract (agent/contract/channels.py) before their models
#: are in this build: their schema files are placeholders that accept any such object, so the
#: AsyncAPI document's references resolve. A model added to PAYLOAD_MODELS replaces its entry.
PENDING_PAYLOADS: dict[str, str] = {
    "command": "The arguments of a command request, e.g. {\"vin\": ...} for republish.",
}


def published_schema(name: str) -> dict[str, Any]:
    """The schema kept in docs/schemas for payload ``name``: :func:`payload_schema` where the
    model exists, else the placeholder of a pending payload. Raises KeyError for others."""
    if name in PAYLOAD_MODELS:
        return payload_schema(name)
    description = PENDING_PAYLOADS[name]
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://cbs-agent.example/schemas/cbs.{name}-1.json",
        "title": f"cbs.{name}/1",
        "description": f"{description} Placeholder: this build does not define the payload's "
                       "fields yet; any JSON object is accepted.",
        "type": "object",
    }
    if name != "command":  # a request carries only its arguments
        schema["properties"] = {"schema": {"const": f"cbs.{name}/1", "type": "string"}}
        schema["required"] = ["schema"]
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
