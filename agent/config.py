"""The agent's configuration: command line beats environment (``CBS_*``) beats the TOML file.

Top-level keys mirror the command-line options (``site``, ``reader``, ``serial``, ``broker``,
...); the rarer knobs live in sections (``[mqtt]``, ``[forecast]``, ``[outbox]``,
``[history]``) and their variables use ``__`` (``CBS_MQTT__USERNAME``). Every problem becomes one
:class:`~agent.errors.ConfigError` line that says what and where; the CLI exits 2 on it.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from stat import S_ISDIR
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from agent.contract.commands import CommandSettings
from agent.contract.topics import validate_name
from agent.diagnostics.settings import DiagnosticsSettings
from agent.domain.catalogue import CatalogueSettings
from agent.domain.forecast import ForecastSettings
from agent.domain.i18n import Language
from agent.domain.proposal import ProposalSettings
from agent.domain.reminders import ReminderSettings
from agent.errors import ConfigError
from agent.mqtt.settings import MqttSettings

MIN_BAUDRATE, MAX_BAUDRATE = 50, 12_000_000
MIN_CAN_BITRATE, MAX_CAN_BITRATE = 5_000, 1_000_000
MAX_NESTING = 32  # tables and arrays in a config file or a CBS_* variable: far beyond any real one

# Bounds of the numeric options of sections whose models live elsewhere (the [mqtt] link, the
# domain's settings), as (low, high), inclusive; a bound the model already holds is repeated so
# that every numeric option has both here or in its Field. They keep every number in the range
# the agent computes with: an interval of 1e-9 s would flood the broker, 1e15 days overflow
# SQLite's integers and ``datetime``. tests/agent/test_config_hardening.py checks that no numeric
# option is left unbounded.
SECTION_LIMITS: dict[str, dict[str, tuple[float, float]]] = {
    "mqtt": {"status_interval_s": (1.0, 3600.0), "reconnect_min_s": (0.01, 3600.0),
             "reconnect_max_s": (0.01, 3600.0), "stop_timeout_s": (0.0, 300.0)},
    "forecast": {"default_km_per_day": (0.001, 2000.0), "horizon_days": (0, 3650),
                 "horizon_km": (0, 100_000), "min_history_days": (1, 3650),
                 "min_history_km": (1, 1_000_000), "history_half_life_days": (0.001, 36_500.0),
                 "history_prior_days": (0.0, 36_500.0),
                 "max_plausible_km_per_day": (0.001, 5000.0),
                 "min_vehicle_age_days": (1, 36_500), "min_ratio_km": (1, 1_000_000),
                 "min_item_ratio": (0.001, 100.0), "max_item_ratio": (0.001, 100.0),
                 "max_climate_factor": (1.0, 100.0), "min_wear_km": (1, 1_000_000),
                 "min_wear_days": (1, 36_500), "min_wear_drop_pct": (1, 100),
                 "nominal_wear_life_days": (1, 36_500), "max_projection_days": (1, 36_500)},
    "forecast.climate": {"short_trip_mean_km": (0.001, 1000.0),
                         "cold_short_trip_multiplier": (1.0, 100.0)},
    "proposal": {"look_ahead_days": (0, 3650), "express_budget_minutes": (0, 1440)},
    "reminders": {"max_overdue_days": (0, 3650)},
}


class OutboxSettings(BaseModel):
    model_config = {"extra": "forbid"}
    max_messages: int = Field(100_000, ge=10, le=10_000_000,
                              description="Outbox bound by count; see docs/outbox.md.")
    max_age_days: float = Field(30.0, gt=0, le=3650, description="Outbox bound by age.")


class HistorySettings(BaseModel):
    model_config = {"extra": "forbid"}
    retention_days: int = Field(3 * 365, ge=1, le=36_500,
                                description="How long readouts are kept per vehicle.")
    max_per_vehicle: int = Field(50, ge=2, le=100_000, description="Readouts kept per vehicle.")


class DeskSettings(BaseModel):
    """The ``[desk]`` section: ``cbs-agent desk``, the reception desk in a browser (docs/desk.md)."""

    model_config = {"extra": "forbid"}
    host: str = Field("127.0.0.1", description="Address the desk listens on; any but loopback "
                                                "requires a login.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the desk.")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                             description="The desk's name in approvals (default: desk-HOSTNAME).")
    password_hash: str | None = Field(None, description="Hash of the desk password (`cbs-agent "
                                                        "desk --hash-password`).")
    require_login: bool = Field(False, description="Require the login on loopback too.")


class AgentSettings(BaseSettings):
    """Everything ``cbs-agent run`` needs. See examples/cbs-agent.toml for every option."""

    model_config = SettingsConfigDict(env_prefix="CBS_", env_nested_delimiter="__",
                                      extra="forbid", case_sensitive=False)

    site: str = Field(description="Site name, [A-Za-z0-9_-]{1,64}.")
    reader: str = Field(description="Reader name, [A-Za-z0-9_-]{1,64}.")
    serial: str | None = Field(None, description="Serial port of the key reader, e.g. /dev/ttyUSB0.")
    # What a UART and the kernel's termios take: 50 baud (B50) up to the 12 Mbaud of the
    # fastest USB UARTs; beyond 2**31 the port's ioctl overflows.
    baudrate: int = Field(115200, ge=MIN_BAUDRATE, le=MAX_BAUDRATE,
                          description="Serial baud rate (8N1).")
    can_interface: str | None = Field(None, description="python-can interface (socketcan, slcan, ...).")
    can_channel: str | None = Field(None, description="python-can channel (can0, /dev/ttyACM0, ...).")
    # Classical CAN (ISO 11898): 1 Mbit/s at most; the slowest rate adapters offer is 5 kbit/s.
    can_bitrate: int = Field(500_000, ge=MIN_CAN_BITRATE, le=MAX_CAN_BITRATE,
                             description="CAN bit rate, bit/s.")
    broker: str = Field("mqtt://127.0.0.1:1883", description="mqtt://HOST:PORT or mqtts://HOST:PORT.")
    state_dir: Path = Field(Path("state"), description="Outbox and vehicle history live here.")
    session_timeout_s: float = Field(0.5, gt=0, le=60, description="The protocol's session timeout.")
    dbc_file: Path | None = Field(None, description="Override the shipped DBC (must describe the same messages).")
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    catalogue: CatalogueSettings = Field(default_factory=CatalogueSettings)
    proposal: ProposalSettings = Field(default_factory=ProposalSettings)
    reminders: ReminderSettings = Field(default_factory=ReminderSettings)
    commands: CommandSettings = Field(default_factory=CommandSettings)
    metrics_port: int | None = Field(None, ge=0, le=65535, description=(
        "Serve Prometheus/OpenMetrics metrics on this port (off when unset; 0 picks a free "
        "port)."))
    metrics_host: str = Field("127.0.0.1", min_length=1, max_length=255,
                              description="Address the metrics endpoint listens on.")
    desk: DeskSettings = Field(default_factory=DeskSettings)
    diagnostics: DiagnosticsSettings = Field(default_factory=DiagnosticsSettings)
    language: Language = Field("en", description="Language of the reception view and the "
                                                 "proposal: en, de or zh.")

    @field_validator("site", "reader")
    @classmethod
    def _name(cls, value: str, info: Any) -> str:
        validate_name(info.field_name, value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _broker_is_the_mqtt_url(cls, data: Any) -> Any:
        """``broker`` is ``[mqtt] url``: apply it before ``[mqtt]`` is validated, so that TLS
        options there (ca_file, ...) are checked against the URL that will be used."""
        if isinstance(data, dict) and data.get("broker") is not None:
            mqtt = data.get("mqtt")
            if mqtt is None or isinstance(mqtt, dict):
                data = {**data, "mqtt": {**(mqtt or {}), "url": data["broker"]}}
        return data

    @model_validator(mode="after")
    def _one_reader(self) -> AgentSettings:
        if self.serial and self.can_interface:
            raise ValueError("choose one reader: serial or can_interface, not both")
        if self.can_interface and not self.can_channel:
            raise ValueError("can_interface needs can_channel")
        return self

    @model_validator(mode="after")
    def _numbers_in_range(self) -> AgentSettings:
        for section, limits in SECTION_LIMITS.items():
            model: Any = self
            for part in section.split("."):
                model = getattr(model, part)
            for name, (low, high) in limits.items():
                value = getattr(model, name)
                if not low <= value <= high:  # NaN fails too
                    raise ValueError(f"{section}.{name}: must be between {low:g} and {high:g}, "
                                     f"not {value!r}")
        return self

    @property
    def transport(self) -> Literal["serial", "can"]:
        return "can" if self.can_interface else "serial"

    def effective_mqtt(self) -> MqttSettings:
        """The MQTT settings with the top-level ``broker`` applied (``[mqtt] url`` counts only
        when no ``broker`` is given anywhere)."""
        if "broker" not in self.model_fields_set or self.mqtt.url == self.broker:
            return self.mqtt
        return self.mqtt.with_url(self.broker)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


#: The file the current :func:`load_settings` call reads. pydantic-settings builds its sources
#: in a classmethod with no way to hand it per-call arguments, so the call's file travels in a
#: context variable: set and reset by that one call, private to its thread and context.
_LOADING: ContextVar[Path | None] = ContextVar("cbs_config_file", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the file named by :func:`load_settings` (parsing is :func:`parse_config_text`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        config_file = _LOADING.get()
        if config_file is None:
            return {}
        try:
            text = config_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_file}: cannot read config file: {exc}") from exc
        return parse_config_text(text, source=str(config_file))


def parse_config_text(text: str, *, source: str = "<config>") -> dict[str, Any]:
    """TOML text to a dict; raises ConfigError naming the source, line and column, or saying
    that tables and arrays nest deeper than :data:`MAX_NESTING` (tomllib recurses per level)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{source}: invalid TOML: tables or arrays nested deeper than "
                          f"{MAX_NESTING} levels") from None
    if _nesting(data) > MAX_NESTING:
        raise ConfigError(f"{source}: tables or arrays nested deeper than {MAX_NESTING} levels")
    return data


def _nesting(value: Any) -> int:
    """How deep dicts and lists nest in ``value`` (iterative: any depth is safe)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else None)
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _json_nesting(text: str) -> int:
    """How deep ``[`` and ``{`` nest in JSON-like text, strings skipped: a bound checked before
    the text reaches ``json.loads``, which recurses per level."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _check_environment_nesting() -> None:
    """A ``CBS_*`` variable nested too deeply is refused by name, before pydantic-settings
    parses it as JSON."""
    for name, value in os.environ.items():
        if name.upper().startswith("CBS_") and value.lstrip()[:1] in ("[", "{") \
                and _json_nesting(value) > MAX_NESTING:
            raise ConfigError(f"{name}: JSON nested deeper than {MAX_NESTING} levels")


#: The configuration file used when neither ``--config`` nor ``CBS_CONFIG`` names one.
SYSTEM_CONFIG_FILE = Path("/etc/cbs-agent/agent.toml")
CONFIG_ENV = "CBS_CONFIG"


def discover_config_file(explicit: Path | None) -> Path | None:
    """The configuration file to read: ``--config`` (``explicit``), else the ``CBS_CONFIG``
    variable (set but empty: none), else :data:`SYSTEM_CONFIG_FILE` if it exists, else none."""
    if explicit is not None:
        return explicit
    named = os.environ.get(CONFIG_ENV)
    if named is not None:
        return Path(named) if named.strip() else None
    return SYSTEM_CONFIG_FILE if SYSTEM_CONFIG_FILE.is_file() else None


def _source_of(loc: tuple[Any, ...], given: dict[str, Any], config_file: Path | None) -> str:
    """Where the value an error is about came from: a flag, a variable or the file."""
    parts = [str(part) for part in loc if isinstance(part, str)]
    if not parts:
        return f" (in {config_file})" if config_file else ""
    if parts[:2] == ["mqtt", "url"] and ("broker" in given or _env_name(["broker"])):
        parts = ["broker"]  # ``broker`` is copied into [mqtt] url before validation
    if parts[0] in given:
        return f" (from --{parts[0].replace('_', '-')})"
    name = _env_name(parts)
    if name is not None:
        return f" (from {name})"
    return f" (in {config_file})" if config_file else ""


def _env_name(parts: list[str]) -> str | None:
    """The ``CBS_*`` variable that sets ``parts`` (or a section holding it), if one is set."""
    present = {key.upper(): key for key in os.environ}
    for depth in range(len(parts), 0, -1):
        name = "CBS_" + "__".join(parts[:depth]).upper()
        if name in present:
            return present[name]
    return None


def _describe(error: dict[str, Any], source: str) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "config"
    if error["type"] == "missing":
        flag = location.replace("_", "-")
        return (f"{location} is not set (use --{flag}, CBS_{location.upper()} or "
                f"'{location} = ...' in the config file)")
    if error["type"] == "extra_forbidden":
        return f"unknown option '{location}'{source}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{location}: {message}{source}" if error["loc"] else f"{message}{source}"


def security_warnings(settings: AgentSettings) -> list[str]:
    """What in these settings exposes the agent's data or its broker password, one line each
    (none refuse to start: an appliance set up that way has run so, and a warning at every
    start and in ``check-config`` is what makes someone fix it):

    * a state directory other users may write to (they could swap the outbox) or read (VINs
      and key ids);
    * a password file or TLS key readable by group or others;
    * a password sent in clear over ``mqtt://``.
    """
    warnings = []
    try:
        stat = settings.state_dir.stat()
        mode = stat.st_mode & 0o777 if S_ISDIR(stat.st_mode) else None
    except OSError:
        mode = None  # not there yet: the agent creates it 0700
    if mode is not None and mode & 0o002:
        warnings.append(f"state_dir {settings.state_dir} is writable by every user (mode "
                        f"{mode:04o}): anyone may replace the outbox; chmod 700 it")
    elif mode is not None and mode & 0o005:
        warnings.append(f"state_dir {settings.state_dir} is open to every user (mode "
                        f"{mode:04o}); its files are 0600, but chmod 700 it")
    mqtt = settings.effective_mqtt()
    for option in ("password_file", "keyfile"):
        path = getattr(mqtt, option)
        try:
            file_mode = path.stat().st_mode & 0o777 if path is not None else 0
        except OSError:
            continue
        if file_mode & 0o077:
            warnings.append(f"mqtt.{option} {path} is readable by other users (mode "
                            f"{file_mode:04o}); chmod 600 it")
    if mqtt.password_value() is not None and not mqtt.tls:
        warnings.append(f"the MQTT password goes in clear text to {mqtt.url}: anyone on the "
                        "network path can read it; use mqtts://")
    return warnings


def load_settings(config_file: Path | None = None, **overrides: Any) -> AgentSettings:
    """Load settings from ``config_file`` (optional), ``CBS_*`` variables and ``overrides``
    (the command line; ``None`` values are ignored). Raises :class:`ConfigError`."""
    loading = _LOADING.set(config_file)
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        _check_environment_nesting()
        return AgentSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_describe(first, _source_of(first["loc"], given, config_file))) from exc
    except SettingsError as exc:  # a CBS_* variable of a section that is not valid JSON
        reason = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise ConfigError(f"{exc}{reason}") from exc
    except RecursionError:  # a path the checks above do not foresee: still one line, exit 2
        raise ConfigError(f"configuration nested too deeply (more than {MAX_NESTING} levels)"
                          ) from None
    finally:
        _LOADING.reset(loading)
