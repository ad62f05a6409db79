"""A configuration error names where the bad value came from (a flag, a CBS_* variable or
the file), and the file itself is found by --config, CBS_CONFIG, /etc/cbs-agent/agent.toml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config
from agent.config import discover_config_file, load_settings
from agent.errors import ConfigError

GOOD = 'site = "S1"\nreader = "desk1"\nserial = "/dev/ttyUSB0"\n'


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    return path


def _error(*args: object, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_a_bad_variable_is_named_not_the_file(good: Path, monkeypatch) -> None:
    monkeypatch.setenv("CBS_BAUDRATE", "fast")
    message = _error(good)
    assert message.endswith("(from CBS_BAUDRATE)") and "good.toml" not in message
    monkeypatch.delenv("CBS_BAUDRATE")
    monkeypatch.setenv("CBS_MQTT__KEEPALIVE_S", "1")
    assert _error(good).endswith("(from CBS_MQTT__KEEPALIVE_S)")
    monkeypatch.delenv("CBS_MQTT__KEEPALIVE_S")
    monkeypatch.setenv("cbs_broker", "http://broker")  # variables are case-insensitive
    assert _error(good).endswith("(from cbs_broker)")


def test_a_bad_flag_is_named_not_the_file(good: Path) -> None:
    assert _error(good, baudrate=-5).endswith("(from --baudrate)")
    assert _error(good, broker="http://broker").endswith("(from --broker)")
    assert _error(good, site="a b").endswith("(from --site)")


def test_a_bad_value_in_the_file_still_names_the_file(good: Path) -> None:
    good.write_text(GOOD + "baudrate = -1\n")
    assert _error(good).endswith(f"(in {good})")


def _check_config(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "check-config", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**{k: v for k, v in os.environ.items()
                                  if not k.upper().startswith("CBS_")}, **env})


def test_the_cli_names_the_variable(good: Path, tmp_path: Path) -> None:
    done = _check_config("--config", str(good), env={"CBS_BAUDRATE": "fast"}, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("(from CBS_BAUDRATE)"), done.stderr


def test_discovery_order(good: Path, tmp_path: Path, monkeypatch) -> None:
    system = tmp_path / "etc-agent.toml"
    monkeypatch.setattr(config, "SYSTEM_CONFIG_FILE", system)
    monkeypatch.delenv("CBS_CONFIG", raising=False)
    assert discover_config_file(None) is None  # nothing anywhere
    system.write_text(GOOD)
    assert discover_config_file(None) == system
    named = tmp_path / "named.toml"
    monkeypatch.setenv("CBS_CONFIG", str(named))
    assert discover_config_file(None) == named
    assert discover_config_file(good) == good  # --config beats everything
    monkeypatch.setenv("CBS_CONFIG", "")
    assert discover_config_file(None) is None  # set but empty: no file at all


def test_cbs_config_is_read_by_the_cli(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD + "baudrate = -1\n")
    done = _check_config(env={"CBS_CONFIG": str(bad)}, cwd=tmp_path)
    assert done.returncode == 2 and f"(in {bad})" in done.stderr, done.stderr
    # --config comes first: the good file is read, and CBS_CONFIG's bad one is not.
    done = _check_config("--config", str(good), env={"CBS_CONFIG": str(bad)}, cwd=tmp_path)
    assert "bad.toml" not in done.stdout + done.stderr
