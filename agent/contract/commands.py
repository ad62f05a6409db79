"""Integrator commands over MQTT 5 request/response: the requests we accept and the answers
we give (``cbs.response/1``), without I/O.

A request is a PUBLISH on ``{prefix}/{site}/{reader}/command/{name}`` (QoS 1) whose payload is
the command's arguments as a JSON object (empty payload: no arguments), with the MQTT 5
properties ``ResponseTopic`` and ``CorrelationData``. The answer goes to the response topic
with the same correlation data::

    {"schema": "cbs.response/1", "command": "ping", "ok": true, "result": {...}, "error": null}
    {"schema": "cbs.response/1", "command": "ping", "ok": false, "result": null,
     "error": {"code": "bad_arguments", "detail": "..."}}

:func:`parse_request` never raises: whatever arrives (bytes of any size and shape) becomes a
:class:`CommandRequest` or a :class:`CommandRefused` with an error code. :class:`RateLimiter`
is a token bucket fed the time by its caller. docs/integrators.md ("Commands") is the
integrator's view.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RESPONSE_SCHEMA: Final = "cbs.response/1"
MAX_REQUEST_BYTES = 64 * 1024
COMMANDS = ("ping", "status", "diagnose", "republish", "clear_faults")
ErrorCode = Literal["malformed", "unknown_command", "bad_arguments", "too_large", "rate_limited",
                    "disabled", "unavailable", "not_found", "failed", "busy"]


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoArguments(_Arguments):
    """``ping`` and ``status`` take none."""


class DiagnoseArguments(_Arguments):
    protocol: Literal["bmw", "obd2"] | None = Field(
        None, description="The vehicle test's protocol (default: the configured one).")


class RepublishArguments(_Arguments):
    vin: str = Field(description="The vehicle whose retained topic to publish again.",
                     pattern=r"^[A-HJ-NPR-Z0-9]{17}$")


class ClearFaultsArguments(_Arguments):
    protocol: Literal["bmw", "obd2"] | None = Field(None, description="As for diagnose.")
    ecu: int | None = Field(None, ge=0, le=0xFF,
                            description="Only this ECU's address (bmw); default: every ECU.")


ARGUMENTS: dict[str, type[_Arguments]] = {
    "ping": NoArguments, "status": NoArguments, "diagnose": DiagnoseArguments,
    "republish": RepublishArguments, "clear_faults": ClearFaultsArguments,
}


class ResponseError(BaseModel):
    code: ErrorCode = Field(description="Machine-readable reason.")
    detail: str = Field(description="What went wrong, in words.")

    model_config = ConfigDict(extra="forbid", frozen=True)


class Response(BaseModel):
    """``cbs.response/1``: the answer to one command, on the request's response topic."""

    schema_: Literal["cbs.response/1"] = Field(RESPONSE_SCHEMA, alias="schema")
    command: str = Field(description="The command's name, as in the request topic.")
    ok: bool = Field(description="True when the command was carried out (see result), false when not (see error).")
    result: dict[str, Any] | None = Field(description="The command's result when ok, else null.")
    error: ResponseError | None = Field(description="Why not, when not ok, else null.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A well-formed request: its name and its validated arguments."""

    name: str
    arguments: _Arguments


@dataclass(frozen=True, slots=True)
class CommandRefused:
    """A request we do not carry out, and why (becomes the error answer)."""

    name: str
    code: ErrorCode
    detail: str


def parse_request(name: str, payload: bytes) -> CommandRequest | CommandRefused:
    """The request on ``.../command/{name}`` with ``payload``; never raises."""
    shown = name if name.isprintable() and len(name) <= 64 else repr(name[:64])
    if len(payload) > MAX_REQUEST_BYTES:
        return CommandRefused(shown, "too_large",
                              f"request of {len(payload)} bytes; at most {MAX_REQUEST_BYTES}")
    model = ARGUMENTS.get(name)
    if model is None:
        return CommandRefused(shown, "unknown_command",
                              f"no command {shown!r}; commands: {', '.join(COMMANDS)}")
    if payload.strip() == b"":
        raw: object = {}
    else:
        try:
            raw = json.loads(payload)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            return CommandRefused(name, "malformed", f"payload is not JSON: {exc}"[:300])
    if not isinstance(raw, dict):
        return CommandRefused(name, "bad_arguments",
                              f"arguments must be a JSON object, not {type(raw).__name__}")
    try:
        return CommandRequest(name, model.model_validate(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "arguments"
        return CommandRefused(name, "bad_arguments", f"{where}: {first['msg']}"[:300])
    except RecursionError:
        return CommandRefused(name, "bad_arguments", "arguments nested too deeply")


def ok_response(command: str, result: dict[str, Any]) -> bytes:
    return Response(command=command, ok=True, result=result, error=None).model_dump_json(
        by_alias=True).encode()


def error_response(command: str, code: ErrorCode, detail: str) -> bytes:
    return Response(command=command, ok=False, result=None,
                    error=ResponseError(code=code, detail=detail)).model_dump_json(
        by_alias=True).encode()


class RateLimiter:
    """A token bucket: ``rate_per_s`` requests a second on average, bursts of ``burst``.
    The caller gives the time (monotonic seconds), so tests need no clock."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now if self._at is None else max(self._at, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class CommandSettings(BaseModel):
    """``[commands]``: integrator commands over MQTT 5 (docs/integrators.md)."""

    enabled: bool = Field(True, description="Subscribe to {prefix}/{site}/{reader}/command/+.")
    clear_faults: bool = Field(False, description="Allow clear_faults (UDS 0x14 / OBD mode 04 "
                                                  "erases the car's fault memory).")
    rate_per_s: float = Field(5.0, gt=0, le=1000, description="Requests per second, on average.")
    burst: int = Field(20, ge=1, le=10_000, description="Requests accepted at once.")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="Longest a command may take "
                                                               "(a vehicle test) before it "
                                                               "is answered as failed.")

    model_config = ConfigDict(extra="forbid", frozen=True)
