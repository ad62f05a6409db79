"""The MQTT payloads of ``shared/spec/mqtt-contract.md`` as pydantic models.

These models are the contract: the JSON Schemas under ``docs/schemas/`` are generated from
them (``cbs-agent schema``) and a test fails when the two drift apart. A later compatible
version only adds keys, so integrators must ignore keys they do not know.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

READOUT_SCHEMA = "cbs.readout/1"
REJECTED_SCHEMA = "cbs.rejected/1"
STATUS_SCHEMA = "cbs.status/1"

ForecastStatus = Literal["ok", "due_soon", "overdue"]
ForecastBasis = Literal["distance", "time", "wear"]
KmPerDayBasis = Literal["history", "vehicle_age", "default"]
Transport = Literal["serial", "can"]


def format_timestamp(moment: datetime) -> str:
    """UTC with milliseconds and a ``Z``: ``2026-11-27T09:15:02.123Z``."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyInfo(_Payload):
    key_id: int = Field(description="Transponder id of the key (u32).", ge=0, le=0xFFFFFFFF)
    slot: int = Field(description="Which of the vehicle's keys (0-9).", ge=0, le=9)


class VehicleInfo(_Payload):
    vin: str = Field(description="Vehicle identification number, 17 characters of A-HJ-NPR-Z0-9.",
                     pattern=r"^[A-HJ-NPR-Z0-9]{17}$")
    mileage_km: int = Field(description="Odometer when the vehicle last wrote the key, km.", ge=0)
    data_date: date = Field(description="Day the vehicle last wrote the key (ISO date).")
    build_month: str | None = Field(description="Production month YYYY-MM; null when the key has none.",
                                    pattern=r"^\d{4}-\d{2}$")
    fuel_level_pct: int | None = Field(description="Fuel level, %; null when not available.", ge=0, le=100)


class UsageInfo(_Payload):
    ambient_avg_c: float | None = Field(description="Average ambient temperature since the last service, °C.")
    ambient_min_c: float | None = Field(description="Minimum ambient temperature, °C.")
    ambient_max_c: float | None = Field(description="Maximum ambient temperature, °C.")
    hot_share_pct: int = Field(description="% of driving time at ambient above 30 °C.", ge=0, le=100)
    cold_share_pct: int = Field(description="% of driving time at ambient below 0 °C.", ge=0, le=100)
    short_trip_pct: int = Field(description="% of trips shorter than 8 km.", ge=0, le=100)
    severe_duty_pct: int = Field(description="% of distance under severe duty (towing, dust, mountain).",
                                 ge=0, le=100)
    avg_trip_km: float = Field(description="Average trip length, km (0.1 km resolution).", ge=0)


class LastService(_Payload):
    mileage_km: int = Field(description="Odometer at the last service, km.", ge=0)
    month: str | None = Field(description="Month of the last service YYYY-MM; null when the key has none.",
                              pattern=r"^\d{4}-\d{2}$")


class ServiceForecast(_Payload):
    status: ForecastStatus = Field(description="overdue, due_soon (within the horizon) or ok.")
    due_date: date = Field(description="Forecast day the item falls due.")
    basis: ForecastBasis = Field(description="Which limit comes first: distance, time or wear.")
    days_left: int = Field(description="Days from the read date to due_date; negative when overdue.")
    km_left: int | None = Field(description="Remaining km per the key (null when not distance-based).")


class ServiceEntry(_Payload):
    index: int = Field(description="Item index on the key (0-15).", ge=0, le=15)
    type: str = Field(description="Service type name from the protocol's CBS table, or 'unknown'.")
    code: int = Field(description="BMW CBS type code (CBSKENNUNG).", ge=0, le=255)
    availability_pct: int | None = Field(description="Remaining availability, % (0-250); null when not available.",
                                         ge=0, le=250)
    remaining_km: int | None = Field(description="Km left; negative = overdue by that much; null when not available.")
    due_month: str | None = Field(description="Due month YYYY-MM; null when the item has no due date.",
                                  pattern=r"^\d{4}-\d{2}$")
    service_count: int = Field(description="Times this service has been done.", ge=0)
    last_service: LastService | None = Field(
        description="Last service; null without a history frame or when never serviced.")
    interval_km: int | None = Field(description="Nominal interval, km; null when not distance-based or unknown.")
    interval_months: int | None = Field(description="Nominal interval, months; null when not time-based or unknown.")
    forecast: ServiceForecast | None = Field(
        description="When the item falls due; null only when the key gives neither distance, date nor availability.")


class CheckControlEntry(_Payload):
    id: int = Field(description="Check-control message id.", ge=0, le=0xFFFF)
    status: Literal["active", "stored"] = Field(description="active, or stored (no longer active).")
    mileage_km: int = Field(description="Odometer when it was raised, km.", ge=0)


class DtcEntry(_Payload):
    code: str = Field(description="The 3 DTC bytes as 6 upper-case hex digits.", pattern=r"^[0-9A-F]{6}$")
    sae: str = Field(description="SAE J2012 reading of the first two bytes, e.g. P0301.")
    failure_type: int = Field(description="Third byte of the DTC: the failure type.", ge=0, le=255)
    status: int = Field(description="ISO 14229-1 status byte.", ge=0, le=255)
    confirmed: bool = Field(description="Status bit 3 (confirmedDTC).")
    ecu: int = Field(description="Diagnostic address of the ECU that stored it.", ge=0, le=255)
    occurrences: int = Field(description="Occurrence counter.", ge=0, le=0xFFFF)


class Estimate(_Payload):
    km_per_day: float = Field(description="Expected daily distance used by the forecast, km.", ge=0)
    km_per_day_basis: KmPerDayBasis = Field(description="history, vehicle_age or default.")
    climate_factor: float = Field(description="Wear acceleration of distance-driven items (>= 1.0).", ge=1.0)


class NextDue(_Payload):
    type: str = Field(description="Service type of the earliest due item.")
    due_date: date = Field(description="Its forecast due day.")


class Summary(_Payload):
    status: ForecastStatus = Field(description="Worst item status.")
    next_due: NextDue | None = Field(description="Earliest due item; null when there is no item.")
    express_eligible: bool = Field(
        description="At least one item due soon or overdue, all of them in the express set, no active "
                    "check-control message and no confirmed DTC.")


class Readout(_Payload):
    """``{prefix}/{site}/{reader}/readout`` and ``{prefix}/{site}/vehicles/{vin}``."""

    schema_: Literal["cbs.readout/1"] = Field(READOUT_SCHEMA, alias="schema")
    readout_id: str = Field(description="Unique; the same on every redelivery. Deduplicate on it.")
    site: str
    reader: str
    transport: Transport
    read_at: datetime = Field(description="Agent's UTC clock when the END frame arrived, ms precision.")
    key: KeyInfo
    vehicle: VehicleInfo
    usage: UsageInfo | None = Field(description="Null when the session had no KEY_USAGE.")
    services: list[ServiceEntry] = Field(description="Ordered by index.")
    check_control: list[CheckControlEntry] = Field(description="Ordered by index.")
    dtcs: list[DtcEntry] = Field(description="Ordered by index.")
    estimate: Estimate
    summary: Summary

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_serializer("read_at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)


class Rejected(_Payload):
    """``{prefix}/{site}/{reader}/rejected``: a session that was started but not accepted."""

    schema_: Literal["cbs.rejected/1"] = Field(REJECTED_SCHEMA, alias="schema")
    rejection_id: str = Field(description="Unique; the same on every redelivery.")
    site: str
    reader: str
    transport: Transport
    at: datetime = Field(description="When the session was rejected (UTC, ms precision).")
    reason: Literal["unsupported_version", "seq_mismatch", "frame_count_mismatch", "crc_mismatch",
                    "missing_vin", "missing_vehicle", "duplicate_frame", "orphan_history",
                    "invalid_value", "timeout", "interrupted", "key_removed"]
    detail: str = Field(description="Human-readable; names the frame and the field.")
    key_id: int | None = Field(description="Transponder id from START; null if START never came.")
    frames_received: int = Field(description="Data frames received before the rejection.", ge=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_serializer("at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)


class ReaderStatus(_Payload):
    transport: Transport
    port: str = Field(description="Serial port path, or CAN interface:channel.")
    connected: bool


class OutboxStatus(_Payload):
    depth: int = Field(description="Messages waiting for the broker's PUBACK.", ge=0)
    oldest_age_s: float | None = Field(description="Age of the oldest waiting message, s; null when empty.")


class Counters(_Payload):
    readouts: int = 0
    rejected: int = 0
    frames: int = 0
    bad_frames: int = 0
    ignored_bytes: int = 0
    stray_frames: int = 0


class Status(_Payload):
    """``{prefix}/{site}/{reader}/status``, retained."""

    schema_: Literal["cbs.status/1"] = Field(STATUS_SCHEMA, alias="schema")
    state: Literal["online", "offline"]
    agent_version: str | None = None
    since: datetime | None = None
    reader: ReaderStatus | None = None
    outbox: OutboxStatus | None = None
    counters: Counters | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_serializer("since")
    def _ts(self, value: datetime | None) -> str | None:
        return None if value is None else format_timestamp(value)


def to_json(model: BaseModel) -> str:
    """The wire JSON of a payload model: aliases (``schema``), compact, UTF-8."""
    return model.model_dump_json(by_alias=True)


OFFLINE_STATUS_JSON = '{"schema": "cbs.status/1", "state": "offline"}'
