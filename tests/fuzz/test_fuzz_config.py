"""Hostile configuration: whatever a config file, a ``CBS_*`` variable or the command line
says, loading the settings ends in settings or in one :class:`ConfigError` line (the CLI
prints it and exits 2) — never a traceback, which systemd would answer with a restart loop.

Three kinds of input, bounded for CI (``CBS_HYPOTHESIS_SCALE=100`` for a hundred times more,
see docs/robustness.md):

* arbitrary text as the TOML file;
* a valid configuration (site, reader, serial) with a few options — every option the models
  know, in every section, plus unknown ones — set to hostile values: huge or negative
  numbers, NaN, infinities, NUL bytes, very long strings, wrong types, arrays, tables, dates;
* the same hostile values given as ``CBS_*`` environment variables and command-line options.

After a successful load, what the agent derives from the settings at start-up
(``effective_mqtt()``, the proposal's price catalogue) may fail only with ConfigError too.
"""

from __future__ import annotations

import math
import os
import tempfile
import types
import typing
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.config import AgentSettings, load_settings, security_warnings
from agent.errors import ConfigError
from agent.wiring import proposal_context

SCALE = float(os.environ.get("CBS_HYPOTHESIS_SCALE", "1"))
FUZZ = settings(max_examples=max(1, round(150 * SCALE)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BASE = {"site": "S1", "reader": "desk1", "serial": "/dev/ttyUSB0"}
CLI_OPTIONS = ("site", "reader", "serial", "baudrate", "can_interface", "can_channel",
               "can_bitrate", "broker", "state_dir", "log_format", "log_level")


def _option_paths(model: type[pydantic.BaseModel], prefix: tuple[str, ...] = ()
                  ) -> dict[tuple[str, ...], Any]:
    """Every option of the settings models by its path, with its annotation."""
    paths: dict[tuple[str, ...], Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            paths.update(_option_paths(annotation, (*prefix, name)))
        else:
            paths[(*prefix, name)] = annotation
    return paths


OPTIONS = _option_paths(AgentSettings)
SECTIONS = sorted({path[:-1] for path in OPTIONS if len(path) > 1})

# -- values ---------------------------------------------------------------------------------------

toml_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
hostile_strings = st.sampled_from(["", " ", "\x00", "a\x00b", "/dev/null", "/", "/etc/passwd",
                                   "/nonexistent/file", "../../etc/shadow", "x" * 5000, "C:\\x",
                                   "mqtt://", "mqtts://", "mqtt://[::1", "mqtt://h:99999",
                                   "mqtt://h:-1", "http://h:1", "\u202e", "☃", "+", "#", "a/b",
                                   "Europe/Nowhere", "UTC", "1e999", "nan", "-1", "0x10",
                                   "true", "[]", "{}"])
hostile_numbers = st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, -(2**63), 2**64, 10**30,
                                   0.0, -0.0, 0.5, 1e-320, 1e308, -1e308, math.inf, -math.inf,
                                   math.nan])
scalars = st.one_of(hostile_strings, hostile_numbers, toml_text, st.booleans(),
                    st.integers(), st.floats(), st.dates(min_value=date(1, 1, 1)))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["a", "url", "path", "enabled", "x y"]), inner, max_size=3)),
    max_leaves=8)


def plausible(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of roughly the right type, to get past type checks to the range checks."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(plausible(arg) for arg in args if arg is not type(None)))
    if origin is list:
        return st.lists(plausible(args[0]), max_size=4)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(-10, 10**6)
    if annotation is float:
        return st.floats(-10, 10**6)
    return st.one_of(hostile_strings, toml_text)


def option_value(path: tuple[str, ...]) -> st.SearchStrategy[Any]:
    annotation = OPTIONS.get(path)
    return values if annotation is None else st.one_of(plausible(annotation), values)


option_paths = st.one_of(
    st.sampled_from(sorted(OPTIONS)),
    st.tuples(st.sampled_from(SECTIONS), st.sampled_from(["unknown", "url", "x"]))
    .map(lambda t: (*t[0], t[1])),
    st.sampled_from([("unknown",), ("mqtt",), ("forecast",), ("site", "x"), ("mqtt", "url", "x")]))


@st.composite
def configurations(draw: st.DrawFn) -> dict[str, Any]:
    """The valid base with a few options set to drawn values (or removed)."""
    config: dict[str, Any] = dict(BASE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(option_paths)
        if draw(st.integers(0, 9)) == 0:
            _remove(config, path)
        else:
            _set(config, path, draw(option_value(path)))
    return config


def _set(config: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = config
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _remove(config: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = config
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


# -- a small TOML writer (the standard library reads TOML but does not write it) -------------------


def to_toml(config: dict[str, Any]) -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            tables.append((_key(key), value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    while tables:
        name, table = tables.pop(0)
        lines.append(f"[{name}]")
        for key, value in table.items():
            if isinstance(value, dict):
                tables.append((f"{name}.{_key(key)}", value))
            else:
                lines.append(f"{_key(key)} = {_value(value)}")
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _string(key)


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _env_text(value: Any) -> str:
    """How a value would be spelled in an environment variable (complex ones as JSON-ish)."""
    if isinstance(value, str):
        return value.replace("\x00", "")  # the OS cannot carry NUL in the environment
    return _value(value).replace("\x00", "")


# -- the checks ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cbs-fuzz-config-") as directory:
        yield Path(directory)


@pytest.fixture(scope="module", autouse=True)
def clean_environment() -> Iterator[None]:
    """No CBS_* variable of the machine running the tests leaks into these loads."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.upper().startswith("CBS_"):
                patch.delenv(name)
        yield


def load_only_config_errors(config_file: Path | None = None, **overrides: Any) -> None:
    try:
        loaded = load_settings(config_file, **overrides)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip(), f"not one line: {message!r}"
        return
    # What start-up derives from the settings must fail cleanly too.
    try:
        loaded.effective_mqtt()
        proposal_context(loaded)
        security_warnings(loaded)
    except ConfigError:
        pass
    # Every number that loaded is one the agent can compute with (defect: 1e15 days once
    # overflowed SQLite's integers, 1e-9 s flooded the broker).
    for number in _numbers(loaded):
        assert math.isfinite(number) and abs(number) <= 10**9, number
    timedelta(days=loaded.history.retention_days + loaded.forecast.max_projection_days)
    assert loaded.mqtt.status_interval_s >= 1


def _numbers(model: pydantic.BaseModel) -> Iterator[float]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, pydantic.BaseModel):
            yield from _numbers(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield value


def test_the_base_configuration_loads(workdir: Path) -> None:
    path = workdir / "base.toml"
    path.write_text(to_toml(BASE))
    loaded = load_settings(path)
    assert (loaded.site, loaded.reader, loaded.serial) == ("S1", "desk1", "/dev/ttyUSB0")


@FUZZ
@given(st.text(max_size=400))
@example("site = \"S1\"\nreader = \"desk1\"\n[mqtt\n")
@example("\x00")
@example("site = 1e999")
def test_fuzz_config_text(workdir: Path, text: str) -> None:
    path = workdir / "text.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    load_only_config_errors(path)


@FUZZ
@given(configurations())
@example({**BASE, "mqtt": {"keepalive_s": 2**64}})
@example({**BASE, "forecast": {"timezone": "a\x00b"}})
@example({**BASE, "outbox": {"max_age_days": math.inf}})
@example({**BASE, "mqtt": {"ca_file": "\x00"}})
def test_fuzz_config_values(workdir: Path, config: dict[str, Any]) -> None:
    path = workdir / "values.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    load_only_config_errors(path)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(sorted(OPTIONS)), values), min_size=1, max_size=3),
       st.dictionaries(st.sampled_from(CLI_OPTIONS), st.one_of(hostile_strings, toml_text),
                       max_size=2))
@example([(("mqtt",), "{")], {})
@example([(("forecast", "express_types"), "[")], {})
def test_fuzz_environment_and_command_line(workdir: Path, env: list[tuple[tuple[str, ...], Any]],
                                           cli: dict[str, str]) -> None:
    variables = {"CBS_" + "__".join(path).upper(): _env_text(value) for path, value in env}
    with pytest.MonkeyPatch.context() as patch:
        for name, text in variables.items():
            patch.setenv(name, text)
        load_only_config_errors(None, **{**BASE, **cli})


nestings = st.tuples(st.integers(1, 3000), st.sampled_from(["array", "table", "mixed"]))


def _nested_toml(depth: int, shape: str) -> str:
    opens = {"array": "[", "table": "{a = ", "mixed": "[{a = "}[shape]
    closes = {"array": "]", "table": "}", "mixed": "}]"}[shape]
    return opens * depth + ("1" if shape != "array" else "") + closes * depth


def _nested_json(depth: int, shape: str) -> str:
    opens = {"array": "[", "table": '{"a": ', "mixed": '[{"a": '}[shape]
    closes = {"array": "]", "table": "}", "mixed": "}]"}[shape]
    return opens * depth + ("1" if shape != "array" else "") + closes * depth


@FUZZ
@given(nestings, st.sampled_from(sorted(OPTIONS) + [("x",), ("mqtt", "x")]))
@example((3000, "array"), ("site",))
@example((40, "mixed"), ("mqtt", "url"))
def test_fuzz_deep_nesting_in_the_file(workdir: Path, nesting: tuple[int, str],
                                       path: tuple[str, ...]) -> None:
    """Deep nesting once ended in a RecursionError traceback and exit 1."""
    table = f"[{'.'.join(path[:-1])}]\n" if len(path) > 1 else ""
    body = f"{_key(path[-1])} = {_nested_toml(*nesting)}\n"
    text = ('site = "S1"\nreader = "desk1"\n' + table + body if table
            else body + 'site = "S1"\nreader = "desk1"\n')
    config = workdir / "deep.toml"
    config.write_text(text)
    load_only_config_errors(config)


@FUZZ
@given(nestings, st.sampled_from(sorted({("CBS_" + "__".join(p[:-1])).upper() for p in OPTIONS
                                         if len(p) > 1} | {"CBS_SITE", "CBS_MQTT__URL"})))
@example((5000, "table"), "CBS_MQTT")
@example((5000, "array"), "CBS_FORECAST__EXPRESS_TYPES")
def test_fuzz_deep_nesting_in_the_environment(nesting: tuple[int, str], name: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(name, _nested_json(*nesting))
        load_only_config_errors(None, **BASE)
