"""State is private whatever the umask, and what exposes it is said.

Before: under umask 022 the databases were 0644 (VINs and key ids readable by every local
user); a 0777 state directory, a 0644 password file and a password over plain ``mqtt://``
passed without a word.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import load_settings, security_warnings
from agent.store.history import VehicleHistory
from agent.store.outbox import Outbox
from agent.store.reminders import ReminderService
from agent.store.sqlite import create_private_file, make_private_dir


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_stores_create_their_files_0600_and_the_directory_0700(tmp_path: Path,
                                                               umask_022: None) -> None:
    state = tmp_path / "deep" / "state"
    make_private_dir(state)
    with Outbox(state / "outbox.sqlite3") as outbox:
        outbox.put("t", b"p", retain=False, schema="s", message_id="m")
        VehicleHistory(state / "history.sqlite3").close()
        ReminderService(state / "reminders.sqlite3", site="S", reader="R", topic="t").close()
        created = sorted(state.iterdir())  # with the outbox's -wal and -shm, while it is open
        modes = {p.name: _mode(p) for p in created}
    assert _mode(state) == 0o700
    assert {p.name for p in created} >= {"outbox.sqlite3", "outbox.sqlite3-wal",
                                         "history.sqlite3", "reminders.sqlite3"}
    assert modes == {p.name: 0o600 for p in created}


def test_an_existing_store_file_open_to_others_is_narrowed(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        create_private_file(path)
    assert _mode(path) == 0o600 and "0644" in caplog.text


def test_the_agent_creates_private_state_under_umask_022(tmp_path: Path) -> None:
    """The real process, as systemd-less installs start it."""
    state = tmp_path / "state"
    code = ("import os, sys; os.umask(0o022); from agent.config import load_settings; "
            "from agent.wiring import build_service; "
            f"s = build_service(load_settings(None, site='S', reader='R', serial='/dev/null', "
            f"state_dir={str(state)!r})); s.outbox.depth(); s.outbox.close()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=tmp_path)
    assert _mode(state) == 0o700
    files = [p for p in state.iterdir()]
    assert files and all(_mode(p) == 0o600 for p in files), {p.name: oct(_mode(p)) for p in files}


def _settings(tmp_path: Path, **options: object):  # type: ignore[no-untyped-def]
    return load_settings(None, site="S", reader="R", state_dir=tmp_path / "state", **options)


def test_warnings_for_an_open_state_dir_password_file_and_plain_mqtt(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    os.chmod(tmp_path / "state", 0o777)
    password = tmp_path / "password"
    password.write_text("secret\n")
    os.chmod(password, 0o644)
    warnings = security_warnings(_settings(
        tmp_path, broker="mqtt://broker.example:1883",
        mqtt={"username": "u", "password_file": str(password)}))
    text = "\n".join(warnings)
    assert len(warnings) == 3, text
    assert "writable by every user (mode 0777)" in text
    assert f"password_file {password} is readable by other users (mode 0644)" in text
    assert "clear text to mqtt://broker.example:1883" in text
    assert "secret" not in text


def test_no_warnings_for_a_private_setup(tmp_path: Path) -> None:
    make_private_dir(tmp_path / "state")
    password = tmp_path / "password"
    password.write_text("secret\n")
    os.chmod(password, 0o600)
    assert security_warnings(_settings(tmp_path)) == []
    assert security_warnings(_settings(tmp_path, mqtt={"username": "u",
                                                       "password_file": str(password)})) != []
    # mqtts:// with a private password file: nothing to say
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert security_warnings(_settings(
        tmp_path, broker="mqtts://broker.example:8883",
        mqtt={"username": "u", "password_file": str(password)})) == []


def test_check_config_and_run_say_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBS_")}
    check = subprocess.run([sys.executable, "-m", "agent", "check-config", "--site", "S",
                            "--reader", "R", "--state-dir", str(state), "--broker",
                            "mqtt://127.0.0.1:9"], capture_output=True, text=True, timeout=60,
                           env=env, cwd=tmp_path)
    assert "WARN config: state_dir" in check.stdout, check.stdout
    assert "mode 0777" in check.stdout
