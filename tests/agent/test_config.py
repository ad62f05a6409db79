"""Configuration: command line beats environment beats file; every mistake is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import load_settings
from agent.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    for name in list(os.environ):
        if name.startswith("CBS_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cbs-agent.toml"
    path.write_text(text)
    return path


def test_precedence_cli_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, 'site = "file-site"\nreader = "file-reader"\nbaudrate = 9600\n'
                             'serial = "/dev/file"\n[mqtt]\nkeepalive_s = 42\n')
    monkeypatch.setenv("CBS_READER", "env-reader")
    monkeypatch.setenv("CBS_BAUDRATE", "57600")
    monkeypatch.setenv("CBS_MQTT__KEEPALIVE_S", "17")
    settings = load_settings(config, baudrate=230400, serial=None)
    assert settings.site == "file-site"
    assert settings.reader == "env-reader"
    assert settings.baudrate == 230400
    assert settings.serial == "/dev/file"
    assert settings.mqtt.keepalive_s == 17


def test_broker_option_reaches_mqtt_settings(tmp_path: Path) -> None:
    settings = load_settings(None, site="s", reader="r", broker="mqtt://127.0.0.1:18830")
    assert settings.effective_mqtt().url == "mqtt://127.0.0.1:18830"


@pytest.mark.parametrize(("text", "expected"), [
    ('site = "x"\nreader = \n', "invalid TOML"),
    ('site = "x"\nreader = "y"\nbogus = 1\n', "unknown option 'bogus'"),
    ('site = "a b"\nreader = "y"\n', "site"),
    ('site = "x"\nreader = "y"\nbaudrate = "fast"\n', "baudrate"),
    ('site = "x"\nreader = "y"\n[mqtt]\nprotocol = "4"\n', "mqtt.protocol"),
    ('reader = "y"\n', "site is not set"),
    ('site = "x"\nreader = "y"\nserial = "/dev/a"\ncan_interface = "virtual"\ncan_channel = "0"\n',
     "choose one reader"),
])
def test_config_errors_are_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("argv", [
    ["run", "--config", "/nonexistent/cbs.toml"],
    ["run", "--site", "bad site", "--reader", "r", "--serial", "/dev/null"],
    ["run", "--frobnicate"],
    ["run", "--site", "s", "--reader", "r"],
    ["decode", "/nonexistent/capture.log"],
])
def test_cli_refuses_with_one_line_and_exit_2(argv: list[str], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent", *argv], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cbs-agent")
    assert "Traceback" not in done.stderr


def test_broken_dbc_file_is_one_line(tmp_path: Path) -> None:
    dbc = tmp_path / "broken.dbc"
    dbc.write_text('VERSION ""\nBO_ 1776 KEY_SESSION_START: 8 KeyReader\n SG_ oops\n')
    config = write(tmp_path, f'site = "s"\nreader = "r"\nserial = "/dev/null"\ndbc_file = "{dbc}"\n')
    done = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "broken.dbc" in done.stderr
