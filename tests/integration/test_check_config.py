"""``cbs-agent check-config``: one ``ok``/``FAIL`` line per finding, exit 0 only when all are ok.

Everything it checks is real: a private mosquitto (with passwords, with TLS), a pseudo-terminal
serial port, python-can's virtual interface, the state directory on disk.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import serial
from broker import free_port, make_certificates
from site_rig import PtyKeyReader, clean_environment

from agent.config import load_settings
from agent.tools.check_config import check_config

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "cbs-agent-S1-desk1", "pw-secret-4711"


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(config)],
                          capture_output=True, text=True, timeout=120, env=clean_environment(),
                          cwd=config.parent)


def write_config(path: Path, **values: object) -> Path:
    sections: dict[str, dict[str, object]] = {"": {}, "mqtt": {}}
    for key, value in values.items():
        section, _, name = key.rpartition("__")
        sections[section][name] = value
    lines = []
    for section, entries in sections.items():
        if section:
            lines.append(f"[{section}]")
        for name, value in entries.items():
            lines.append(f"{name} = {_toml(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def findings(output: str) -> dict[str, list[str]]:
    lines = [line for line in output.splitlines() if not line.startswith("WARN ")]  # advice
    assert lines and all(line.startswith(("ok ", "FAIL ")) for line in lines), output
    by_subject: dict[str, list[str]] = {}
    for line in lines:
        verdict, rest = line.split(" ", 1)
        subject = rest.split(":", 1)[0]
        by_subject.setdefault(subject, []).append(f"{verdict} {rest}")
    return by_subject


@pytest.fixture
def port() -> PtyKeyReader:
    reader = PtyKeyReader()
    yield reader
    reader.close()


def test_all_ok_with_password_and_serial_port(tmp_path: Path, make_broker, port) -> None:
    broker = make_broker(allow_anonymous=False, users={USER: PASSWORD})
    (tmp_path / "password").write_text(PASSWORD + "\n")
    config = write_config(tmp_path / "cbs-agent.toml", site="S1", reader="desk1",
                          serial=port.path, broker=broker.url, state_dir=str(tmp_path / "state"),
                          mqtt__username=USER, mqtt__password_file=str(tmp_path / "password"))
    done = run_check(config)
    assert done.returncode == 0, done.stdout + done.stderr
    found = findings(done.stdout)
    assert set(found) == {"config", "dbc", "catalogue", "state_dir", "reader", "broker"}
    assert all(line.startswith("ok ") for lines in found.values() for line in lines)
    assert f"serial port {port.path} opens" in found["reader"][0]
    assert "fault finding for 20 control units, 30 min for others" in found["catalogue"][0]
    assert found["broker"][-1].startswith(f"ok broker: MQTT 5 as user '{USER}': CONNACK accepted")
    assert PASSWORD not in done.stdout + done.stderr
    assert (tmp_path / "state").is_dir() and not list((tmp_path / "state").iterdir())


def test_wrong_password_missing_port_and_unwritable_state_fail(tmp_path: Path, make_broker) -> None:
    broker = make_broker(allow_anonymous=False, users={USER: PASSWORD})
    (tmp_path / "password").write_text("Zq9-not-it\n")
    (tmp_path / "state").write_text("a file where the directory should be")
    config = write_config(tmp_path / "cbs-agent.toml", site="S1", reader="desk1",
                          serial=str(tmp_path / "no-such-tty"), broker=broker.url,
                          state_dir=str(tmp_path / "state"), mqtt__username=USER,
                          mqtt__password_file=str(tmp_path / "password"))
    done = run_check(config)
    assert done.returncode == 1
    found = findings(done.stdout)
    assert found["config"][0].startswith("ok ") and found["dbc"][0].startswith("ok ")
    assert found["state_dir"][0].startswith("FAIL state_dir: ")
    assert found["reader"][0].startswith("FAIL reader: cannot open serial port ")
    assert found["broker"][0].startswith("ok broker: TCP connection")
    assert found["broker"][1].startswith(f"FAIL broker: MQTT 5 as user '{USER}': CONNACK refused")
    assert "Zq9-not-it" not in done.stdout


def test_unreachable_broker_and_busy_port(tmp_path: Path, port) -> None:
    nobody = free_port()
    config = write_config(tmp_path / "cbs-agent.toml", site="S1", reader="desk1",
                          serial=port.path, broker=f"mqtt://127.0.0.1:{nobody}",
                          state_dir=str(tmp_path / "state"))
    with serial.Serial(port.path, exclusive=True):  # as a running agent holds it
        done = run_check(config)
    assert done.returncode == 1
    found = findings(done.stdout)
    assert found["reader"][0].startswith("FAIL reader:") and "already running" in found["reader"][0]
    assert found["broker"] == [f"FAIL broker: no TCP connection to 127.0.0.1:{nobody}: "
                               "Connection refused"]


def test_tls_broker_and_can_interface(tmp_path: Path, make_broker) -> None:
    certificates = make_certificates(tmp_path / "certs")
    broker = make_broker(tls=certificates)
    settings = load_settings(None, site="S1", reader="desk1", can_interface="virtual",
                             can_channel="check-config-test", broker=broker.url,
                             state_dir=tmp_path / "state",
                             mqtt={"ca_file": certificates.ca_cert})
    out = io.StringIO()
    assert check_config(settings, out) == 0, out.getvalue()
    found = findings(out.getvalue())
    assert found["reader"] == ["ok reader: CAN interface virtual:check-config-test opens at "
                               "500000 bit/s"]
    assert found["broker"][-1].startswith("ok broker: MQTT 5 over TLS without credentials: "
                                          "CONNACK accepted")

    # The same broker with a CA that did not sign its certificate: the TLS handshake fails.
    other = make_certificates(tmp_path / "other-ca")
    settings = load_settings(None, site="S1", reader="desk1", can_interface="virtual",
                             can_channel="check-config-test", broker=broker.url,
                             state_dir=tmp_path / "state", mqtt={"ca_file": other.ca_cert})
    out = io.StringIO()
    assert check_config(settings, out, broker_timeout_s=5) == 1
    assert findings(out.getvalue())["broker"][-1].startswith(
        "FAIL broker: MQTT 5 over TLS without credentials: TLS handshake failed")


def test_invalid_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "cbs-agent.toml"
    config.write_text('site = "S1"\nreader = "desk1"\nbaudrate = "fast"\n')
    done = run_check(config)
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "baudrate" in done.stderr


def test_a_missing_catalogue_or_a_wrong_currency_fails(tmp_path: Path) -> None:
    """check-config loads the catalogue as run does: what would stop run stops it too."""
    for name, section in {"missing": f'path = "{tmp_path / "nope.toml"}"',
                          "currency": 'currency = "USD"'}.items():
        config = tmp_path / f"{name}.toml"
        config.write_text(f'site = "S1"\nreader = "desk1"\nserial = "/dev/null"\n'
                          f'broker = "mqtt://127.0.0.1:9"\nstate_dir = "{tmp_path / "state"}"\n'
                          f"[catalogue]\n{section}\n")
        done = run_check(config)
        found = findings(done.stdout)
        assert done.returncode != 0, done.stdout
        assert found["catalogue"][0].startswith("FAIL catalogue"), done.stdout


def test_a_broken_fault_finding_section_fails_with_the_entry_named(tmp_path: Path) -> None:
    """The catalogue's [fault_finding] is checked like its services: one line saying what
    and where, and run and the desk would stop on it alike."""
    shipped = (Path(__file__).resolve().parents[2] / "agent" / "domain" / "data"
               / "catalogue.toml").read_text(encoding="utf-8")
    dealer = tmp_path / "dealer.toml"
    dealer.write_text(shipped.replace("DME = 60", "DMW = 60"), encoding="utf-8")
    config = tmp_path / "cbs-agent.toml"
    config.write_text(f'site = "S1"\nreader = "desk1"\nserial = "/dev/null"\n'
                      f'broker = "mqtt://127.0.0.1:9"\nstate_dir = "{tmp_path / "state"}"\n'
                      f'[catalogue]\npath = "{dealer}"\n')
    done = run_check(config)
    found = findings(done.stdout)
    assert done.returncode != 0, done.stdout
    (line,) = found["catalogue"]
    assert line.startswith(f"FAIL catalogue: catalogue {dealer}: fault_finding.ecus.DMW: not a control "
                           "unit of the diagnostic table"), line
