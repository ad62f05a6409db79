"""Hostile configuration that once ended in a traceback or slipped through validation.

* Deeply nested TOML or ``CBS_*`` JSON: a RecursionError traceback and exit 1 (systemd
  restarts exit 1 forever). Now one line and exit 2, in ``run`` and ``check-config``.
* Numbers beyond what the hardware and the OS accept: ``--baudrate 2147483648`` passed and
  crashed with OverflowError when the port opened, ``check-config`` said ok; an interval of
  1e-9 s flooded the broker. Now every numeric option has both bounds.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest
from annotated_types import Ge, Gt, Le, Lt

from agent.config import SECTION_LIMITS, AgentSettings, load_settings
from agent.errors import ConfigError

BASE = ("--site", "S1", "--reader", "desk1")


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("CBS_")}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=60, env={**clean, **(env or {})}, cwd=cwd)


def _one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize("depth", [40, 5000])
def test_deeply_nested_toml_is_one_line_and_exit_2(tmp_path: Path, command: str,
                                                   depth: int) -> None:
    config = tmp_path / "deep.toml"
    config.write_text("site = 'S1'\nreader = 'desk1'\nx = " + "[" * depth + "]" * depth + "\n")
    line = _one_line_exit_2(_cli(command, "--config", str(config), cwd=tmp_path))
    assert "nested deeper" in line and str(config) in line


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize("value", ['{"a":' * 5000 + "1" + "}" * 5000,
                                   "[" * 40 + "]" * 40])
def test_deeply_nested_environment_json_is_one_line_and_exit_2(tmp_path: Path, command: str,
                                                               value: str) -> None:
    line = _one_line_exit_2(_cli(command, *BASE, env={"CBS_MQTT": value}, cwd=tmp_path))
    assert "CBS_MQTT" in line and "nested deeper" in line


def test_a_string_full_of_brackets_is_not_nesting() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        load_settings(None, site="S1", reader="desk1",
                      mqtt={"not_an_option": "[" * 100})
    os.environ["CBS_MQTT"] = '{"username": "' + "[{" * 100 + '"}'
    try:
        assert load_settings(None, site="S1", reader="desk1").mqtt.username == "[{" * 100
    finally:
        del os.environ["CBS_MQTT"]


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize("args", [("--baudrate", "2147483648"), ("--baudrate", "0"),
                                  ("--baudrate", "49"), ("--can-bitrate", "2000000")])
def test_out_of_range_rates_are_refused(tmp_path: Path, command: str,
                                        args: tuple[str, str]) -> None:
    line = _one_line_exit_2(_cli(command, *BASE, "--serial", str(tmp_path / "tty"), *args,
                                 cwd=tmp_path))
    assert args[0].removeprefix("--").replace("-", "_") in line


@pytest.mark.parametrize(("toml", "option"), [
    ("baudrate = 1e20", "baudrate"),
    ("baudrate = 2147483648", "baudrate"),
    ("[mqtt]\nstatus_interval_s = 1e-9", "mqtt.status_interval_s"),
    ("[mqtt]\nstatus_interval_s = inf", "mqtt.status_interval_s"),
    ("[mqtt]\nstatus_interval_s = nan", "mqtt.status_interval_s"),
    ("[mqtt]\nreconnect_max_s = 1e300", "mqtt.reconnect_max_s"),
    ("[history]\nretention_days = 1000000000000", "history.retention_days"),
    ("[outbox]\nmax_age_days = 1e300", "outbox.max_age_days"),
    ("[forecast]\nhorizon_days = 1000000000000", "forecast.horizon_days"),
])
def test_out_of_range_numbers_in_the_file_are_refused(tmp_path: Path, toml: str,
                                                      option: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f"site = 'S1'\nreader = 'desk1'\n{toml}\n")
    line = _one_line_exit_2(_cli("check-config", "--config", str(config), cwd=tmp_path))
    assert option in line


def _bounds(field: pydantic.fields.FieldInfo) -> tuple[float, float]:
    low, high = -math.inf, math.inf
    for item in field.metadata:
        if isinstance(item, Ge | Gt):
            low = float(getattr(item, "ge", getattr(item, "gt", low)))
        if isinstance(item, Le | Lt):
            high = float(getattr(item, "le", getattr(item, "lt", high)))
    return low, high


def _numeric_options(model: type[pydantic.BaseModel], prefix: str = ""
                     ) -> list[tuple[str, str, pydantic.fields.FieldInfo]]:
    found = []
    for name, field in model.model_fields.items():
        annotation: Any = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            found += _numeric_options(annotation, f"{prefix}{name}.")
        elif annotation in (int, float):
            found.append((prefix.rstrip("."), name, field))
    return found


def test_every_numeric_option_has_both_bounds() -> None:
    unbounded = []
    for section, name, field in _numeric_options(AgentSettings):
        low, high = _bounds(field)
        limit = SECTION_LIMITS.get(section, {}).get(name)
        if limit is not None:
            low, high = max(low, limit[0]), min(high, limit[1])
        if not (math.isfinite(low) and math.isfinite(high)):
            unbounded.append(f"{section}.{name}".lstrip("."))
    assert not unbounded, f"numeric options without a lower and an upper bound: {unbounded}"


def test_the_limits_name_real_options_and_keep_the_defaults() -> None:
    defaults = AgentSettings(site="S1", reader="desk1")
    for section, limits in SECTION_LIMITS.items():
        model: Any = defaults
        for part in section.split("."):
            model = getattr(model, part)
        for name, (low, high) in limits.items():
            assert low <= getattr(model, name) <= high, f"{section}.{name}"
