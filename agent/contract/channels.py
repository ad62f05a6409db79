"""Every MQTT channel of the contract, in one table: address, QoS, retain flag, payload.

The AsyncAPI document (:mod:`agent.contract.asyncapi`, kept as ``docs/asyncapi.yaml``) is
generated from this table, so the machine-readable contract and the prose one
(``shared/spec/mqtt-contract.md``, ``shared/spec/diagnostics.md``) are held together by one
test. Addresses use the default prefix ``cbs/v1``; ``{site}``, ``{reader}``, ``{vin}`` and
``{name}`` are one topic level each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.contract.topics import DEFAULT_PREFIX, NAME_PATTERN

Sender = Literal["agent", "desk", "integrator"]


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel. ``payload`` is the short schema name (``readout`` is ``cbs.readout/1``,
    kept as ``docs/schemas/cbs.readout-1.schema.json``). ``address`` is ``None`` where the
    topic is chosen at run time (the requester's MQTT 5 ResponseTopic)."""

    name: str
    address: str | None
    qos: int
    retain: bool
    payload: str
    sender: Sender
    summary: str


COMMAND_NAMES = ("ping", "status", "diagnose", "republish", "clear_faults")

CHANNELS: tuple[Channel, ...] = (
    Channel("status", f"{DEFAULT_PREFIX}/{{site}}/{{reader}}/status", 1, True, "status", "agent",
            "The agent's state: on connect, on every change, periodically, and offline on "
            "clean shutdown (also the last will)."),
    Channel("readout", f"{DEFAULT_PREFIX}/{{site}}/{{reader}}/readout", 1, False, "readout",
            "agent", "One per complete, valid key session."),
    Channel("rejected", f"{DEFAULT_PREFIX}/{{site}}/{{reader}}/rejected", 1, False, "rejected",
            "agent", "One per key session that was started but not accepted."),
    Channel("vehicle", f"{DEFAULT_PREFIX}/{{site}}/vehicles/{{vin}}", 1, True, "readout", "agent",
            "The latest readout of a vehicle (the readout payload); can be switched off."),
    Channel("reminder", f"{DEFAULT_PREFIX}/{{site}}/reminders", 1, False, "reminder", "agent",
            "A service falling due soon: once per vehicle, item and due event."),
    Channel("diagnosis", f"{DEFAULT_PREFIX}/{{site}}/{{reader}}/diagnosis", 1, False,
            "diagnosis", "agent", "One report per vehicle test over the OBD socket."),
    Channel("vehicleDiagnosis", f"{DEFAULT_PREFIX}/{{site}}/vehicles/{{vin}}/diagnosis", 1, True,
            "diagnosis", "agent", "The latest diagnosis report of a vehicle whose VIN is known."),
    Channel("approval", f"{DEFAULT_PREFIX}/{{site}}/{{reader}}/approval", 1, False, "approval",
            "desk", "The customer's approval of a proposal, recorded at the reception desk."),
    Channel("command", f"{DEFAULT_PREFIX}/{{site}}/{{reader}}/command/{{name}}", 1, False,
            "command", "integrator",
            "A request to the agent (MQTT 5, with ResponseTopic and CorrelationData)."),
    Channel("response", None, 1, False, "response", "agent",
            "The answer to a command, on the requester's ResponseTopic with its "
            "CorrelationData."),
)

#: The short names of every payload a channel carries, in a stable order.
CHANNEL_PAYLOADS: tuple[str, ...] = tuple(dict.fromkeys(c.payload for c in CHANNELS))

PARAMETERS: dict[str, str] = {
    "site": f"The configured site name, {NAME_PATTERN}.",
    "reader": f"The configured reader name, {NAME_PATTERN} (not 'vehicles' or 'reminders').",
    "vin": "The vehicle identification number (17 characters).",
    "name": "The command: " + ", ".join(COMMAND_NAMES) + ".",
}


def schema_file(payload: str) -> str:
    """``cbs.readout-1.schema.json``: the file name of a payload's JSON Schema in docs/schemas."""
    return f"cbs.{payload}-1.schema.json"
