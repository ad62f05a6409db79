"""Writes the machine-readable contract into the docs: ``asyncapi.yaml`` and the JSON Schema
of every payload it references (``schemas/``). ``cbs-agent schema --write-docs docs``; a test
fails when the kept copies drift from what this writes."""

from __future__ import annotations

import json
from pathlib import Path

from agent.contract.asyncapi import asyncapi_document, to_yaml
from agent.contract.channels import CHANNEL_PAYLOADS, schema_file
from agent.contract.schemas import published_schema

ASYNCAPI_FILE = "asyncapi.yaml"
SCHEMA_DIR = "schemas"


def contract_files() -> dict[str, str]:
    """Relative path (under docs/) to text, for the AsyncAPI document and every schema."""
    files = {ASYNCAPI_FILE: to_yaml(asyncapi_document(f"./{SCHEMA_DIR}"))}
    for payload in CHANNEL_PAYLOADS:
        files[f"{SCHEMA_DIR}/{schema_file(payload)}"] = schema_text(payload)
    return files


def schema_text(payload: str) -> str:
    """What ``cbs-agent schema NAME`` prints (and docs/schemas keeps), newline-terminated."""
    return json.dumps(published_schema(payload), indent=2, ensure_ascii=False) + "\n"


def write_contract_docs(docs: Path) -> list[Path]:
    """Write :func:`contract_files` under ``docs``; return the paths that changed."""
    changed = []
    for relative, text in contract_files().items():
        path = docs / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
