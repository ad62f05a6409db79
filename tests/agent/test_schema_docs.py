"""The JSON Schemas under docs/schemas are what `cbs-agent schema` prints: no drift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.contract.schemas import PAYLOAD_MODELS, payload_schema

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@pytest.mark.parametrize("name", sorted(PAYLOAD_MODELS))
def test_docs_schema_matches_models(name: str) -> None:
    kept = json.loads((DOCS / f"cbs.{name}-1.schema.json").read_text())
    assert kept == payload_schema(name), (
        f"docs/schemas/cbs.{name}-1.schema.json is stale: run "
        f"`cbs-agent schema {name} > docs/schemas/cbs.{name}-1.schema.json`")


def test_schema_command_prints_json() -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "schema", "readout"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["properties"]["schema"]["const"] == "cbs.readout/1"
    assert "additionalProperties" not in json.dumps(schema)  # later versions only add keys
