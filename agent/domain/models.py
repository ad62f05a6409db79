"""The MQTT payloads of ``shared/spec/mqtt-contract.md`` as pydantic models.

These models are the contract: the JSON Schemas under ``docs/schemas/`` are generated from
them (``cbs-agent schema``) and a test fails when the two drift apart. A later compatible
version only adds keys, so integrators must ignore keys they do not know.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from operator import methodcaller
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_serializer,
    model_validator,
)

from agent.domain.i18n import Language

READOUT_SCHEMA: Final = "cbs.readout/1"
REJECTED_SCHEMA: Final = "cbs.rejected/1"
STATUS_SCHEMA: Final = "cbs.status/1"
REMINDER_SCHEMA: Final = "cbs.reminder/1"

ForecastStatus = Literal["ok", "due_soon", "overdue"]
ForecastBasis = Literal["distance", "time", "wear"]
KmPerDayBasis = Literal["history", "vehicle_age", "default"]
Transport = Literal["serial", "can"]


def event_time(timestamp: float) -> datetime:
    """A frame timestamp (epoch seconds) as an aware UTC datetime, truncated to milliseconds."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def format_timestamp(moment: datetime) -> str:
    """UTC with milliseconds and a ``Z``: ``2026-11-27T09:15:02.123Z``."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# format(value, "f"): never exponent notation ("1E+2" -> "100"). A C-level callable, not a
# Python function: pydantic calls it for every amount of every proposal it serialises, and a
# Python frame per call was a third of a readout's JSON time.
_decimal_text = methodcaller("__format__", "f")


# Money and quantities are exact decimals, published as JSON strings ("129.90"): a JSON number
# would be read back as a binary float by most parsers, and cents would drift.
DecimalText = Annotated[
    Decimal,
    PlainSerializer(_decimal_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}),
]


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
    due_date_early: date = Field(
        description="10th percentile of the day the item falls due: about 1 in 10 items falls due "
                    "before it. Never after due_date. docs/forecast.md, 'The interval'.")
    due_date_late: date = Field(
        description="90th percentile of the day the item falls due: about 1 in 10 items falls due "
                    "after it. Never before due_date, never after the item's due month.")

    @model_validator(mode="before")
    @classmethod
    def _interval_of_an_earlier_version(cls, data: Any) -> Any:
        """A forecast published before the interval existed (kept readouts, older agents) has
        none: both ends are its due date, which keeps the behaviour it was published with."""
        if isinstance(data, dict) and "due_date" in data and (
                "due_date_early" not in data or "due_date_late" not in data):
            data = {**data}
            data.setdefault("due_date_early", data["due_date"])
            data.setdefault("due_date_late", data["due_date"])
        return data


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


class ProposalPart(_Payload):
    number: str = Field(description="Part number, as in the catalogue.")
    description: str = Field(description="Part description in the proposal's language.")
    quantity: DecimalText = Field(description="Quantity (decimal string; litres may be fractional).")
    unit_price: DecimalText = Field(description="Net price per unit (decimal string, e.g. \"17.90\").")
    amount: DecimalText = Field(description="quantity x unit_price, rounded half-up to the currency's "
                                            "minor unit (decimal string).")


class ProposalItem(_Payload):
    index: int = Field(description="Item index on the key (0-15), as in services[].", ge=0, le=15)
    type: str = Field(description="Service type name from the protocol's CBS table, or 'unknown'.")
    code: int = Field(description="BMW CBS type code (CBSKENNUNG).", ge=0, le=255)
    name: str = Field(description="Service name in the proposal's language.")
    status: ForecastStatus = Field(description="The item's forecast status.")
    due_date: date = Field(description="The item's forecast due day.")
    days_left: int = Field(description="Days from the read date to due_date; negative when overdue.")
    note: str = Field(description="One line for the advisor in the proposal's language, e.g. "
                                  "\"Brake fluid due in 60 days: do it now and save a visit\".")
    priced: bool = Field(description="False when the catalogue has no entry for the type: labour, "
                                     "parts and net are then null/empty (price on request).")
    labour_minutes: int | None = Field(description="Standard labour time, minutes.", ge=0)
    labour: DecimalText | None = Field(description="labour_rate_per_hour x labour_minutes / 60, "
                                                   "rounded half-up (decimal string, net).")
    parts: list[ProposalPart] = Field(description="Parts of the standard service.")
    net: DecimalText | None = Field(description="labour + sum of parts[].amount (decimal string).")


class ProposalTotals(_Payload):
    labour_minutes: int = Field(description="Sum of the priced items' labour time, minutes.", ge=0)
    labour: DecimalText = Field(description="Sum of the items' labour (decimal string, net).")
    parts: DecimalText = Field(description="Sum of the items' parts (decimal string, net).")
    net: DecimalText = Field(description="labour + parts (decimal string).")
    tax: DecimalText = Field(description="net x tax_rate_pct / 100, rounded half-up once on the "
                                         "total (decimal string).")
    gross: DecimalText = Field(description="net + tax: what the customer pays (decimal string).")
    complete: bool = Field(description="False when an item is not in the catalogue: the totals "
                                       "then leave it out.")


class ExpressLane(_Payload):
    budget_minutes: int = Field(description="The express lane's time budget, minutes (configured).",
                                ge=0)
    minutes: int = Field(description="Labour time of the required items, minutes.", ge=0)
    fits: bool = Field(description="The required items are all priced and minutes <= budget_minutes.")
    with_optional_minutes: int = Field(description="Labour time of required and optional items.", ge=0)
    with_optional_fits: bool = Field(description="The same check with the optional items added.")
    eligible: bool = Field(description="summary.express_eligible and fits: the visit can go to the "
                                       "express lane.")


class Proposal(_Payload):
    """A priced service proposal for the desk (docs/proposal.md)."""

    language: Language = Field(description="Language of name, note and parts[].description.")
    currency: str = Field(description="ISO 4217 currency of every amount.", pattern=r"^[A-Z]{3}$")
    labour_rate_per_hour: DecimalText = Field(description="Net labour rate of the catalogue.")
    tax_rate_pct: DecimalText = Field(description="Tax rate applied to the totals, % (decimal string).")
    look_ahead_days: int = Field(description="Optional items fall due within this many days.", ge=0)
    required: list[ProposalItem] = Field(
        description="Items due soon or overdue, earliest due first.")
    optional: list[ProposalItem] = Field(
        description="Items not yet due soon that fall due within look_ahead_days, earliest first.")
    totals: ProposalTotals = Field(description="Totals of the required items.")
    totals_with_optional: ProposalTotals = Field(description="Totals of required and optional items.")
    express: ExpressLane


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
    proposal: Proposal | None = Field(
        None, description="Priced service proposal (added in a compatible revision of cbs.readout/1; "
                          "null only when the agent prices nothing).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_serializer("read_at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)


class ReminderItem(_Payload):
    index: int = Field(description="Item index on the key (0-15).", ge=0, le=15)
    type: str = Field(description="Service type name from the protocol's CBS table, or 'unknown'.")
    code: int = Field(description="BMW CBS type code (CBSKENNUNG).", ge=0, le=255)
    name: str = Field(description="Service name in the configured language.")
    service_count: int = Field(description="Times the service had been done at the readout; the due "
                                           "event is the next one.", ge=0)


class Reminder(_Payload):
    """``{prefix}/{site}/reminders``: an item of a known vehicle falls due within the window."""

    schema_: Literal["cbs.reminder/1"] = Field(REMINDER_SCHEMA, alias="schema")
    reminder_id: str = Field(description="One per vehicle, item and due event; the same on every "
                                         "redelivery and from every agent of the site. Deduplicate on it.")
    site: str
    reader: str = Field(description="The agent that sent it.")
    created_at: datetime = Field(description="When the reminder pass ran (UTC, ms precision).")
    vin: str = Field(description="The vehicle.", pattern=r"^[A-HJ-NPR-Z0-9]{17}$")
    due_date: date = Field(description="Forecast day the item falls due.")
    days_left: int = Field(description="Days from created_at's date (site time zone) to due_date; "
                                       "negative when overdue.")
    window_days: int = Field(description="The configured reminder window, days.", ge=0)
    service: ReminderItem
    forecast: ServiceForecast = Field(description="The item's forecast as published at read_at.")
    readout_id: str = Field(description="The readout the forecast comes from.")
    read_at: datetime = Field(description="When that readout was taken (UTC, ms precision).")
    mileage_km: int = Field(description="Odometer at that readout, km.", ge=0)
    proposal: Proposal = Field(description="The priced proposal for this item alone (required), at "
                                           "today's catalogue prices.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_serializer("created_at", "read_at")
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
    # Additive keys (the schema stays cbs.status/1): how the outbox copes with its bounds and disk.
    evicted: int = Field(0, description="Messages dropped by the outbox's bounds since start (see docs/outbox.md).",
                         ge=0)
    full: bool = Field(False, description="The outbox has reached its size bound.")
    error: str | None = Field(None, description="Why the outbox cannot commit right now (disk full, "
                                                "read-only); null when it works. Messages are held in "
                                                "memory meanwhile and counted in depth.")
    quarantined: str | None = Field(None, description="A damaged store file moved aside since start "
                                                      "(which, where to, why, rows salvaged); null "
                                                      "when none was.")


class Counters(_Payload):
    """Monotonic since the agent started (``since``)."""

    readouts: int = Field(0, description="Readouts published (committed to the outbox).")
    rejected: int = Field(0, description="Sessions rejected.")
    frames: int = Field(0, description="CAN frames received from the reader (all identifiers).")
    bad_frames: int = Field(0, description="Serial frames discarded for a bad CRC, missing ETX or "
                                           "malformed CAN_FRAME payload.")
    ignored_bytes: int = Field(0, description="Serial bytes outside any intact frame.")
    stray_frames: int = Field(0, description="Key-reader frames outside a session, ignored.")
    # Additive keys (the schema stays cbs.status/1).
    other_frames: int = Field(0, description="Frames of other traffic on a shared bus (ids outside "
                                             "0x6F0-0x6FF), ignored.")
    reconnects: int = Field(0, description="Times the reader was lost and reopened.")


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


ModelT = TypeVar("ModelT", bound=BaseModel)
# Per class, the set of all its field names, shared by the instances ``construct`` makes:
# every field is set, and a frozen model never changes the set (``model_copy`` copies it).
_FIELDS_SET: dict[type[BaseModel], set[str]] = {}
# BaseModel's own slots, set through their descriptors (what object.__setattr__ finds, minus
# the search for them on every call).
_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def construct(cls: type[ModelT], values: dict[str, Any]) -> ModelT:
    """An instance of payload model ``cls`` from ``values`` that already meet its constraints.

    Why: the agent builds every readout from a :class:`~protocols.key_session.KeySession`,
    whose values the protocol layer has checked against the same limits the model states
    (ranges, sentinels, VIN alphabet; the DBC's bit widths bound the rest), and from forecast
    and proposal models that were validated when they were made. Validating the ~35 nested
    models of a readout again cost as much as decoding all of its frames with cantools.
    ``tests/agent/test_trusted_payloads.py`` holds every constructed payload equal to
    ``model_validate`` of its own dump over random valid sessions, so a value outside the
    model's limits fails a test, not an integrator.

    ``values`` must name every field by its Python name (``schema_``, not ``schema``) and
    hold nested payloads as model instances. What is left is what ``model_construct`` does
    at its end, without its per-field search for aliases and defaults (which made it slower
    than validation)."""
    fields_set = _FIELDS_SET.get(cls)
    if fields_set is None:
        fields_set = _check_constructible(cls, values)
    instance = _new(cls)
    _set_dict(instance, values)
    _set_fields_set(instance, fields_set)
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


def _check_constructible(cls: type[BaseModel], values: dict[str, Any]) -> set[str]:
    """The first call per class: ``construct`` suits only plain payload models, given every field."""
    if (cls.__pydantic_post_init__ or cls.__pydantic_root_model__
            or cls.model_config.get("extra") == "allow" or cls.__private_attributes__):
        raise TypeError(f"{cls.__name__} needs model_validate: it has a post-init, private or extra state")
    if list(values) != list(cls.model_fields):
        raise TypeError(f"{cls.__name__}: construct needs every field in order, "
                        f"got {list(values)}, fields are {list(cls.model_fields)}")
    if not cls.model_config.get("frozen"):
        raise TypeError(f"{cls.__name__}: construct shares the set of fields: frozen models only")
    fields_set = _FIELDS_SET[cls] = set(cls.model_fields)
    return fields_set


def to_json(model: BaseModel) -> str:
    """The wire JSON of a payload model: aliases (``schema``), compact, UTF-8."""
    return model.model_dump_json(by_alias=True)


_PROPOSAL_KEY = ',"proposal":'
if list(Readout.model_fields)[-1] != "proposal":  # without_proposal cuts the text there
    raise RuntimeError("Readout.proposal must stay the model's last field")


def without_proposal(readout_json: str) -> str:
    """A readout's wire JSON (``to_json``) with ``"proposal": null``: the reminders store
    keeps a vehicle's latest readout without its proposal.

    Why cut the text instead of serialising the readout again: the service has the wire JSON
    already, and the second serialisation was a twentieth of the agent's CPU at saturation.
    The proposal is the readout's last field (checked above) and no model inside a proposal
    has a field of that name (tests/agent/test_trusted_payloads.py checks both, and compares
    the result with ``to_json`` over any valid session); quotes inside JSON strings are
    escaped, so the last ``,"proposal":`` of the text is where the proposal starts."""
    cut = readout_json.rfind(_PROPOSAL_KEY)
    if cut < 0:
        raise ValueError("not a readout's wire JSON: no proposal field")
    return readout_json[:cut] + ',"proposal":null}'


OFFLINE_STATUS_JSON = '{"schema": "cbs.status/1", "state": "offline"}'
