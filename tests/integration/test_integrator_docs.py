"""The integrator and operator documentation stays true to the code.

* docs/integrators.md's field reference is what tests/integration/integrator_reference.py
  generates from the payload models now (every field, with type, unit, nullability, example);
* every topic of the contract and every published JSON Schema is documented;
* the example payloads in it are valid against the published JSON Schemas;
* relative links in the docs written for integrators and operators point at files that exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from integrator_reference import (
    BEGIN,
    DOC,
    END,
    current_block,
    example_payloads,
    field_rows,
    reference_markdown,
)

from agent.contract.schemas import PAYLOAD_MODELS

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / name for name in ("integrators.md", "operations.md", "multi-site.md")]


def test_field_reference_is_current() -> None:
    block = current_block(DOC.read_text(encoding="utf-8"))
    assert block is not None, f"{DOC} lost its markers {BEGIN} ... {END}"
    assert block == reference_markdown(), (
        "docs/integrators.md is stale: "
        "run python tests/integration/integrator_reference.py --write")


def test_every_field_is_described() -> None:
    for name in PAYLOAD_MODELS:
        undescribed = [path for path, _, _, _, description in field_rows(name) if not description]
        assert not undescribed, (f"{name}: describe these fields in the model "
                                 f"(Field(description=...)) or in "
                                 f"integrator_reference.SUPPLEMENT: {undescribed}")


def test_every_topic_and_schema_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for topic in ("{prefix}/{site}/{reader}/status", "{prefix}/{site}/{reader}/readout",
                  "{prefix}/{site}/{reader}/rejected", "{prefix}/{site}/vehicles/{vin}",
                  "{prefix}/{site}/reminders"):
        assert f"`{topic}`" in text, topic
    for schema in sorted((ROOT / "docs" / "schemas").glob("*.schema.json")):
        assert f"schemas/{schema.name}" in text, schema.name
    for name in PAYLOAD_MODELS:
        assert f"### `cbs.{name}/1` fields" in text


def test_examples_are_valid_against_the_published_schemas() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for name, payload in example_payloads().items():
        schema = json.loads((ROOT / "docs" / "schemas" / f"cbs.{name}-1.schema.json").read_text())
        jsonschema.validate(payload, schema)
        payload_with_addition = {**payload, "a_key_added_later": {"x": 1}}
        jsonschema.validate(payload_with_addition, schema)  # later revisions only add keys


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    broken = [target for target in _LINK.findall(text)
              if "://" not in target and not (doc.parent / target).exists()]
    assert not broken, f"{doc.name}: broken links {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_repository_paths_mentioned_exist(doc: Path) -> None:
    """`examples/...`, `agent/...`, `tests/...` paths in code spans name real files."""
    text = doc.read_text(encoding="utf-8")
    mentioned = set(re.findall(r"(?<![\w/.-])((?:examples|agent|tests|docs|\.ci)/[\w./-]+\.\w+)",
                               text))
    missing = sorted(p for p in mentioned if not (ROOT / p).exists())
    assert not missing, f"{doc.name} mentions files that do not exist: {missing}"
