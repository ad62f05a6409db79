"""The agent's configuration: command line beats environment (``CBS_*``) beats the TOML file.

Top-level keys mirror the command-line options (``site``, ``reader``, ``serial``, ``broker``,
...); the rarer knobs live in sections (``[mqtt]``, ``[forecast]``, ``[outbox]``,
``[history]``) and their variables use ``__`` (``CBS_MQTT__USERNAME``). Every problem becomes one
:class:`~agent.errors.ConfigError` line that says what and where; the CLI exits 2 on it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from agent.contract.topics import validate_name
from agent.diagnostics.settings import DiagnosticsSettings
from agent.domain.catalogue import CatalogueSettings
from agent.domain.forecast import ForecastSettings
from agent.domain.i18n import Language
from agent.domain.proposal import ProposalSettings
from agent.domain.reminders import ReminderSettings
from agent.errors import ConfigError
from agent.mqtt.settings import MqttSettings


class OutboxSettings(BaseModel):
    model_config = {"extra": "forbid"}
    max_messages: int = Field(100_000, ge=10, description="Outbox bound by count; see docs/outbox.md.")
    max_age_days: float = Field(30.0, gt=0, description="Outbox bound by age.")


class HistorySettings(BaseModel):
    model_config = {"extra": "forbid"}
    retention_days: int = Field(3 * 365, ge=1, description="How long readouts are kept per vehicle.")
    max_per_vehicle: int = Field(50, ge=2, description="Readouts kept per vehicle.")


class AgentSettings(BaseSettings):
    """Everything ``cbs-agent run`` needs. See examples/cbs-agent.toml for every option."""

    model_config = SettingsConfigDict(env_prefix="CBS_", env_nested_delimiter="__",
                                      extra="forbid", case_sensitive=False)

    site: str = Field(description="Site name, [A-Za-z0-9_-]{1,64}.")
    reader: str = Field(description="Reader name, [A-Za-z0-9_-]{1,64}.")
    serial: str | None = Field(None, description="Serial port of the key reader, e.g. /dev/ttyUSB0.")
    baudrate: int = Field(115200, gt=0, description="Serial baud rate (8N1).")
    can_interface: str | None = Field(None, description="python-can interface (socketcan, slcan, ...).")
    can_channel: str | None = Field(None, description="python-can channel (can0, /dev/ttyACM0, ...).")
    can_bitrate: int = Field(500_000, gt=0, description="CAN bit rate, bit/s.")
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


_config_file: Path | None = None


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the file named by :func:`load_settings` (parsing is :func:`parse_config_text`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if _config_file is None:
            return {}
        try:
            text = _config_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{_config_file}: cannot read config file: {exc}") from exc
        return parse_config_text(text, source=str(_config_file))


def parse_config_text(text: str, *, source: str = "<config>") -> dict[str, Any]:
    """TOML text to a dict; raises ConfigError naming the source, line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc


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


def load_settings(config_file: Path | None = None, **overrides: Any) -> AgentSettings:
    """Load settings from ``config_file`` (optional), ``CBS_*`` variables and ``overrides``
    (the command line; ``None`` values are ignored). Raises :class:`ConfigError`."""
    global _config_file
    _config_file = config_file
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return AgentSettings(**given)
    except ValidationError as exc:
        source = f" (in {config_file})" if config_file else ""
        raise ConfigError(_describe(exc.errors()[0], source)) from exc
    except SettingsError as exc:  # a CBS_* variable of a section that is not valid JSON
        reason = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise ConfigError(f"{exc}{reason}") from exc
    finally:
        _config_file = None
