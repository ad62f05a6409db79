"""How the agent reaches its MQTT broker: ``[mqtt]`` in the config file.

Everything is checked when the settings load, so that a typo stops the agent at start-up with
one line (the CLI exits 2) instead of surfacing as reconnect noise an hour later:

* ``url`` is ``mqtt://HOST[:PORT]`` (plain, port 1883) or ``mqtts://HOST[:PORT]`` (TLS, port
  8883). Credentials never go in the URL: URLs end up in logs.
* TLS files (``ca_file``, ``certfile``, ``keyfile``) and ``password_file`` must exist and be
  readable now; ``password_file`` is read once, here, and its first line is the password.
* The password (given inline or read from the file) is a ``SecretStr``: it shows as
  ``**********`` in ``repr``, logs and ``model_dump``; :meth:`MqttSettings.password_value`
  is the only way to the clear text, and only the publisher calls it.

The server's host name is checked against its certificate unless ``tls_insecure`` is set
(the chain is still verified against ``ca_file`` or the system's CAs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.contract.topics import DEFAULT_PREFIX, validate_prefix
from agent.errors import ConfigError

DEFAULT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def _split_url(url: str) -> SplitResult:
    """Parse and check a broker URL; raises ValueError with one readable line."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r} is invalid: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("broker URL must not contain credentials; use username and "
                         "password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r} must be only scheme://host:port")
    if port == 0:
        raise ValueError(f"broker URL {url!r}: port 0 is not a port")
    return parts


def _check_readable(path: Path) -> Path:
    """Refuse a file that is missing, not a regular file or unreadable (root ignores mode
    bits, so try to open it rather than trusting ``os.access``)."""
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except IsADirectoryError:
        raise ValueError(f"file '{path}' is a directory") from None
    except OSError as exc:
        raise ValueError(f"file '{path}' cannot be read: {exc.strerror or exc}") from None
    return path


class MqttSettings(BaseModel):
    """Broker connection and publishing options (see the module docstring for the checks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(DEFAULT_URL, description="mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS.")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version.")
    client_id: str | None = Field(None, min_length=1, max_length=256,
                                  description="Default: cbs-agent-{site}-{reader}.")
    username: str | None = Field(None, min_length=1)
    password: SecretStr | None = Field(None, repr=False,
                                       description="Prefer password_file; never logged.")
    password_file: Path | None = Field(None, description="File whose first line is the password.")
    ca_file: Path | None = Field(None, description="CA bundle for the broker's certificate "
                                                   "(default: the system's CAs).")
    certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    keyfile: Path | None = Field(None, description="Key of certfile, if not inside certfile.")
    tls_insecure: bool = Field(False, description="Do not check the broker's host name against "
                                                  "its certificate (the chain is still checked).")
    keepalive_s: int = Field(30, ge=5, le=65535)
    prefix: str = Field(DEFAULT_PREFIX, description="Root of the topic tree.")
    status_interval_s: float = Field(30.0, gt=0, description="Status republish period, s.")
    retain_vehicles: bool = Field(True, description="Publish {prefix}/{site}/vehicles/{vin}.")
    max_inflight: int = Field(100, ge=1, le=65535,
                              description="Messages sent and not yet acknowledged (PUBACK).")
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay, s.")
    reconnect_max_s: float = Field(60.0, gt=0, description="Reconnect delay cap, s (doubling).")
    stop_timeout_s: float = Field(5.0, ge=0, description="How long stop() waits for the "
                                                         "broker to take the offline status.")
    home_assistant_discovery: bool = Field(
        False, description="Publish Home Assistant MQTT discovery messages (retained) for this reader.")
    home_assistant_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix.")

    _file_password: SecretStr | None = PrivateAttr(None)

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_text(cls, value: Any) -> Any:
        # TOML and environment variables give 5 or 5.0 or "5"; 3.1.1 only as text.
        if isinstance(value, int | float) and not isinstance(value, bool) and value == 5:
            return "5"
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _split_url(value)
        return value

    @field_validator("prefix", "home_assistant_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return validate_prefix(value)

    @field_validator("password_file", "ca_file", "certfile", "keyfile")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        return None if value is None else _check_readable(value)

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and self.username is None:
            raise ValueError("a password needs a username")
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("keyfile needs certfile")
        tls_options = [name for name in ("ca_file", "certfile", "tls_insecure")
                       if getattr(self, name)]
        if tls_options and not self.tls:
            raise ValueError(f"{', '.join(tls_options)} given but the broker URL is not "
                             "mqtts:// (TLS)")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.password_file is not None:
            self._file_password = SecretStr(self._read_password_file(self.password_file))
        return self

    @staticmethod
    def _read_password_file(path: Path) -> str:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"password_file '{path}' cannot be read: {exc}") from None
        password = text.splitlines()[0] if text else ""
        if not password:
            raise ValueError(f"password_file '{path}' is empty")
        return password

    @classmethod
    def load(cls, data: dict[str, Any]) -> MqttSettings:
        """Validate ``data``; raise :class:`ConfigError` with one line naming the option
        (``mqtt.ca_file: file '/x' cannot be read: No such file or directory``)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(["mqtt", *(str(part) for part in error["loc"])])
            message = str(error["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"{where}: {message}") from exc

    # -- derived values (computed on access, so model_copy(update=...) stays consistent) -----

    @property
    def host(self) -> str:
        return _split_url(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = _split_url(self.url)
        return parts.port or DEFAULT_PORTS[parts.scheme]

    @property
    def tls(self) -> bool:
        return _split_url(self.url).scheme == "mqtts"

    def password_value(self) -> str | None:
        """The clear-text password (inline or from password_file), or None. Never log it."""
        secret = self.password if self.password is not None else self._file_password
        return None if secret is None else secret.get_secret_value()

    def client_id_for(self, site: str, reader: str) -> str:
        """The configured client id, else ``cbs-agent-{site}-{reader}`` (the contract's)."""
        return self.client_id or f"cbs-agent-{site}-{reader}"

    def with_url(self, url: str) -> MqttSettings:
        """A validated copy with another broker URL (``model_copy(update=...)`` does not
        validate). Raises pydantic's ValidationError like any load."""
        data = self.model_dump(exclude={"url"})
        data["url"] = url
        return type(self).model_validate(data)
