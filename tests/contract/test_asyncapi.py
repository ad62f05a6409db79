"""docs/asyncapi.yaml: generated from the channel table, current, and valid by the AsyncAPI
project's own parser (@asyncapi/parser on node)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.cli import SCHEMA_NAMES, main
from agent.contract.channels import CHANNELS
from agent.contract.schemas import PAYLOAD_MODELS, PENDING_PAYLOADS
from agent.tools.contract_docs import contract_files

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_kept_contract_files_are_current() -> None:
    stale = [relative for relative, text in contract_files().items()
             if not (DOCS / relative).is_file()
             or (DOCS / relative).read_text(encoding="utf-8") != text]
    assert not stale, (f"stale in docs/: {', '.join(stale)}; run "
                       "`cbs-agent schema --write-docs docs`")


def test_every_channel_of_the_issue_is_described() -> None:
    names = {channel.name for channel in CHANNELS}
    assert {"status", "readout", "rejected", "vehicle", "reminder", "diagnosis", "approval",
            "command", "response"} <= names
    text = contract_files()["asyncapi.yaml"]
    for channel in CHANNELS:
        assert f"\n  {channel.name}:\n    address: " in text


def test_qos_and_retain_agree_with_the_readme_table() -> None:
    rows = re.findall(r"^\| `([^`]+)` \| (\d) \| (yes|no) \|", (ROOT / "README.md").read_text(),
                      re.M)
    assert len(rows) >= 5
    by_address = {c.address: c for c in CHANNELS if c.address}
    for topic, qos, retained in rows:
        channel = by_address[topic]
        assert (channel.qos, channel.retain) == (int(qos), retained == "yes"), topic


def test_schema_names_cover_the_models_and_the_pending_payloads() -> None:
    assert set(SCHEMA_NAMES) == set(PAYLOAD_MODELS)
    assert not set(PENDING_PAYLOADS) & set(PAYLOAD_MODELS), (
        "a payload has its model now: drop it from PENDING_PAYLOADS")
    assert {c.payload for c in CHANNELS} <= set(PAYLOAD_MODELS) | set(PENDING_PAYLOADS)


def test_schema_asyncapi_prints_the_kept_document() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["schema", "asyncapi"]) == 0
    assert out.getvalue() == contract_files()["asyncapi.yaml"]


def _parser_modules() -> str:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (tests/run.sh installs them from Debian)")
    done = subprocess.run(["bash", str(ROOT / ".ci" / "asyncapi-parser.sh")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"installing @asyncapi/parser failed: {done.stderr[-2000:]}"
    return done.stdout.strip()


def _validate(document: Path, modules: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(ROOT / "tests" / "contract" / "asyncapi_validate.cjs"),
                           str(document)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NODE_PATH": modules})


def test_the_asyncapi_parser_accepts_the_document(tmp_path: Path) -> None:
    modules = _parser_modules()
    for relative, text in contract_files().items():  # what the code writes, not the copy
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text, encoding="utf-8")
    done = _validate(tmp_path / "asyncapi.yaml", modules)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"valid: AsyncAPI 3.0.0, {len(CHANNELS)} channels" in done.stdout


def test_the_asyncapi_parser_rejects_a_broken_document(tmp_path: Path) -> None:
    """The check has teeth: a QoS of 3 and a missing schema file are both errors."""
    modules = _parser_modules()
    for relative, text in contract_files().items():
        if relative.endswith("cbs.approval-1.schema.json"):
            continue
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text.replace("qos: 1", "qos: 3"), encoding="utf-8")
    done = _validate(tmp_path / "asyncapi.yaml", modules)
    assert done.returncode == 1, done.stdout
    assert "qos" in done.stdout and "cbs.approval-1.schema.json" in done.stdout
