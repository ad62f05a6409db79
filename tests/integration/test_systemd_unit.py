"""examples/systemd/cbs-agent.service: a valid, hardened unit for a daemon that reads one serial
port (or CAN interface) and talks to one broker; and the agent behaves as that unit expects
(READY=1 once connected, WATCHDOG=1 pings, state in $CBS_STATE_DIR, exit 0 on SIGTERM).

``systemd-analyze verify`` and ``systemd-analyze security --offline`` check the unit where
systemd-analyze is installed (they need no running systemd); the rest runs everywhere.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import MosquittoBroker, Subscriber
from site_rig import AgentRun, PtyKeyReader, clean_environment, fleet_sessions

from agent.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "examples" / "systemd" / "cbs-agent.service"
EXAMPLE_CONFIG = ROOT / "examples" / "cbs-agent.toml"
MAX_EXPOSURE = 2.5  # systemd-analyze security: below 3.0 is "OK"; the unit scores about 1.7


def directives() -> dict[str, list[str]]:
    """``Section.Key`` -> every value (systemd allows repeating most keys)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def one(found: dict[str, list[str]], key: str) -> str:
    values = found.get(key)
    assert values, f"{UNIT.name} has no {key}"
    return values[-1]


def test_unit_restarts_watches_and_hardens() -> None:
    found = directives()
    assert one(found, "Service.Type") == "notify"
    assert one(found, "Service.Restart") in ("always", "on-failure")
    assert one(found, "Service.RestartPreventExitStatus") == "2"  # a config error stays failed
    assert one(found, "Service.WatchdogSec").endswith("s")
    argv = one(found, "Service.ExecStart").split()
    assert argv[0].startswith("/") and argv[0].endswith("/cbs-agent")
    args = build_parser().parse_args(argv[1:])  # the command line the unit runs is valid
    assert args.command == "run" and str(args.config) == "/etc/cbs-agent/cbs-agent.toml"
    assert one(found, "Service.DynamicUser") == "yes"
    assert "dialout" in one(found, "Service.SupplementaryGroups")
    assert one(found, "Service.StateDirectory") == "cbs-agent"
    assert "CBS_STATE_DIR=%S/cbs-agent" in found["Service.Environment"]
    assert one(found, "Service.ProtectSystem") == "strict"
    assert one(found, "Service.PrivateTmp") == "yes"
    assert one(found, "Service.NoNewPrivileges") == "yes"
    assert one(found, "Service.DevicePolicy") == "closed"
    assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(found["Service.DeviceAllow"])
    assert set(one(found, "Service.RestrictAddressFamilies").split()) == {
        "AF_INET", "AF_INET6", "AF_UNIX", "AF_CAN", "AF_NETLINK"}
    assert one(found, "Service.CapabilityBoundingSet") == ""
    assert one(found, "Install.WantedBy") == "multi-user.target"


def _runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks)."""
    executable = shutil.which("cbs-agent") or sys.executable
    text = UNIT.read_text().replace("/opt/cbs-agent/.venv/bin/cbs-agent", executable)
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed")
    return found


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    done = subprocess.run([analyze, "verify", "--man=no", str(_runnable_copy(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cbs-agent.service" not in done.stderr, done.stderr  # no warnings about our unit


def test_systemd_analyze_security_exposure(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    done = subprocess.run([analyze, "security", "--offline=true", "--no-pager",
                           str(_runnable_copy(tmp_path))], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0 and "offline" in done.stderr:
        pytest.skip(f"this systemd-analyze cannot assess offline: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    summary = next(line for line in done.stdout.splitlines() if "Overall exposure level" in line)
    exposure = float(summary.split(":", 1)[1].split()[0])
    assert exposure <= MAX_EXPOSURE, summary


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(30)
    yield sock, path
    sock.close()


def test_agent_runs_as_the_unit_runs_it(tmp_path: Path, mosquitto: MosquittoBroker,
                                        notify_socket) -> None:
    """The example config, the unit's environment (state directory, NOTIFY_SOCKET, a 2 s
    watchdog) and SIGTERM: READY=1 once connected, WATCHDOG=1 pings, keys read and
    published, state where the unit puts it, exit 0."""
    sock, path = notify_socket
    state = tmp_path / "var-lib-cbs-agent"
    reader = PtyKeyReader()
    env = clean_environment(CBS_STATE_DIR=str(state), NOTIFY_SOCKET=path,
                            WATCHDOG_USEC="2000000")
    subscriber = Subscriber.for_broker(mosquitto, "cbs/v1/S1/desk1/readout").start()
    agent = AgentRun(tmp_path, "--config", str(EXAMPLE_CONFIG), "--serial", reader.path,
                     "--broker", mosquitto.url, env=env)
    try:
        messages: list[str] = []
        while not ("READY=1" in messages and messages.count("WATCHDOG=1") >= 2):
            try:
                datagram = sock.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(f"systemd got only {messages}\n{agent.tail()}") from None
            messages += datagram.split("\n")
        reader.wait_connected()
        reader.lay_keys(fleet_sessions(3, 2))
        subscriber.wait_for_count(2)
        assert (state / "outbox.sqlite3").exists()
        assert agent.stop() == 0
    finally:
        agent.stop()
        subscriber.stop()
        reader.close()
