"""The diagnosis report ``cbs.diagnosis/1`` (shared/spec/diagnostics.md, "The report").

The models are the contract (``cbs-agent schema diagnosis``, docs/schemas/); the builder
:func:`diagnosis_payload` turns a :class:`~agent.domain.diagnosis.VehicleTest` into one.

    {prefix}/{site}/{reader}/diagnosis          QoS 1, not retained, one per test
    {prefix}/{site}/vehicles/{vin}/diagnosis    QoS 1, retained, the latest (VIN known)
"""

from __future__ import annotations

from collections.abc import Set
from datetime import datetime
from typing import Final, Literal

from pydantic import ConfigDict, Field, field_serializer

from agent.contract.topics import Topics
from agent.domain.diagnosis import EcuReading, FailureKind, Outcome, Protocol, Step, VehicleTest
from agent.domain.models import Transport, _Payload, format_timestamp
from protocols.dtc import DtcRecord

DIAGNOSIS_SCHEMA: Final = "cbs.diagnosis/1"
DIAGNOSIS_LEVEL: Final = "diagnosis"


class DiagnosisDtc(_Payload):
    code: str = Field(description="6 upper-case hex digits (UDS, 3 bytes) or 4 (OBD-II, 2 bytes).",
                      pattern=r"^([0-9A-F]{4}|[0-9A-F]{6})$")
    sae: str = Field(description="SAE J2012 reading of the first two bytes, e.g. P0301.")
    failure_type: int | None = Field(description="Third byte (UDS); null for OBD-II.", ge=0, le=255)
    status: int | None = Field(description="ISO 14229-1 status byte; null for OBD-II.", ge=0, le=255)
    confirmed: bool = Field(description="Status bit 3; OBD-II: reported by service 03 or 0A.")
    pending: bool = Field(description="Status bit 2; OBD-II: reported by service 07.")
    warning_lamp: bool = Field(description="Status bit 7 (warningIndicatorRequested).")
    permanent: bool = Field(False, description="OBD-II: reported by service 0A (added to the "
                                               "spec's form; false for bmw).")
    ecu: int | None = Field(None, description="Address of the ECU that stored it (as the ECU's "
                                              "address; added to the spec's form, always set).",
                            ge=0)
    occurrences: int | None = Field(description="From ReadDTCInformation 06; null when unknown.",
                                    ge=0)
    recurring: bool = Field(False, description="Confirmed in this vehicle's previous report too "
                                               "(same ECU, same code): seen again at this visit.")


class DiagnosisError(_Payload):
    step: Step = Field(description="The step that failed: ident, faults, counts or mileage.")
    request: str = Field(description="The request as upper-case hex, e.g. 22F190.")
    kind: FailureKind = Field(description="timeout, nrc or transport.")
    nrc: int | None = Field(description="The negative response code (kind nrc), else null.",
                            ge=0, le=255)
    detail: str = Field(description="Human-readable.")


class DiagnosisEcu(_Payload):
    address: int = Field(description="Diagnostic address (bmw) or response id 0x7E8-0x7EF (obd2).",
                         ge=0)
    name: str | None = Field(description="Workshop name of the address (bmw); null for obd2.")
    vin: str | None = Field(description="The VIN this ECU reports (DID 0xF190 / OBD 09 02); null "
                                        "when it gave none.")
    part_number: str | None = Field(description="Part number (DID 0xF187); null for obd2 or when "
                                                "not given.")
    software: str | None = Field(description="Software version (DID 0xF189); null for obd2 or "
                                             "when not given.")
    hardware: str | None = Field(description="Hardware version (DID 0xF191); null for obd2 or "
                                             "when not given.")
    serial: str | None = Field(description="ECU serial number (DID 0xF18C); null for obd2 or "
                                           "when not given.")
    dtcs: list[DiagnosisDtc] | None = Field(description="null when the fault memory was not read.")
    errors: list[DiagnosisError] = Field(description="Requests of this ECU that failed; empty when "
                                                     "every step was answered.")
    km_since_cleared: int | None = Field(None, description="OBD-II PID 31: km since the fault "
                                                           "memory was cleared; null for bmw.")


class DiagnosisVehicle(_Payload):
    vin: str | None = Field(description="The VIN most ECUs agree on; null if none answered it.")
    vin_consistent: bool = Field(description="False when any ECU reports another VIN.")
    mileage_km: int | None = Field(description="KOMBI's figure (bmw), the odometer (obd2), or null.",
                                   ge=0)


class DiagnosisSummary(_Payload):
    ecus_present: int = Field(description="ECUs that answered (the length of ecus).", ge=0)
    ecus_failed: int = Field(description="ECUs with at least one entry in errors.", ge=0)
    dtcs: int = Field(description="DTCs over all ECUs.", ge=0)
    confirmed: int = Field(description="Of those, confirmed DTCs.", ge=0)
    warning_lamp: bool = Field(description="Any DTC with status bit 7 (bmw) or the MIL (obd2).")


class Diagnosis(_Payload):
    """``{prefix}/{site}/{reader}/diagnosis`` and ``{prefix}/{site}/vehicles/{vin}/diagnosis``."""

    schema_: Literal["cbs.diagnosis/1"] = Field(DIAGNOSIS_SCHEMA, alias="schema")
    diagnosis_id: str = Field(description="Unique; the same on every redelivery.")
    site: str
    reader: str
    transport: Transport
    protocol: Protocol = Field(description="bmw (UDS over ISO-TP, extended addressing) or obd2 "
                                           "(generic OBD-II).")
    started_at: datetime = Field(description="When the test began (UTC, ms).")
    finished_at: datetime = Field(description="When the test ended (UTC, ms).")
    outcome: Outcome = Field(description="complete, partial (see errors), no_response (no ECU "
                                         "answered the probe; ecus empty) or aborted (the "
                                         "interface went away; what was read is kept).")
    vehicle: DiagnosisVehicle
    key_readout_id: str | None = Field(
        description="readout_id of this VIN's latest key readout at this reader within the "
                    "link window, else null.")
    ecus: list[DiagnosisEcu] = Field(description="Ordered by address.")
    absent: list[int] = Field(description="Probed addresses that did not answer, ascending.")
    summary: DiagnosisSummary

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_serializer("started_at", "finished_at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)


def _dtc(record: DtcRecord, ecu: EcuReading, before: Set[tuple[int, str]]) -> DiagnosisDtc:
    return DiagnosisDtc(code=record.code_hex, sae=record.sae, failure_type=record.failure_type,
                        status=record.status, confirmed=record.confirmed, pending=record.pending,
                        warning_lamp=record.warning_lamp, permanent=record.permanent,
                        ecu=ecu.address, occurrences=ecu.occurrences.get(record.code),
                        recurring=record.confirmed and (ecu.address, record.code_hex) in before)


def _ecu(ecu: EcuReading, before: Set[tuple[int, str]]) -> DiagnosisEcu:
    return DiagnosisEcu(
        address=ecu.address, name=ecu.name, vin=ecu.vin, part_number=ecu.part_number,
        software=ecu.software, hardware=ecu.hardware, serial=ecu.serial,
        dtcs=None if ecu.dtcs is None else [_dtc(d, ecu, before) for d in ecu.dtcs],
        errors=[DiagnosisError(step=e.step, request=e.request, kind=e.kind, nrc=e.nrc,
                               detail=e.detail) for e in ecu.errors],
        km_since_cleared=ecu.km_since_cleared)


def diagnosis_payload(test: VehicleTest, *, diagnosis_id: str, site: str, reader: str,
                      transport: Transport = "can", key_readout_id: str | None = None,
                      confirmed_before: Set[tuple[int, str]] = frozenset()) -> Diagnosis:
    """``confirmed_before``: (ECU, code) confirmed in the vehicle's previous report; those
    confirmed again are ``recurring``."""
    ecus = [_ecu(ecu, confirmed_before) for ecu in sorted(test.ecus, key=lambda e: e.address)]
    vin, consistent = test.vin()
    dtcs = [d for ecu in ecus for d in ecu.dtcs or ()]
    finished = test.finished_at or test.started_at
    return Diagnosis(
        diagnosis_id=diagnosis_id, site=site, reader=reader, transport=transport,
        protocol=test.protocol, started_at=test.started_at, finished_at=finished,
        outcome=test.outcome,
        vehicle=DiagnosisVehicle(vin=vin, vin_consistent=consistent,
                                 mileage_km=test.mileage_km()),
        key_readout_id=key_readout_id, ecus=ecus, absent=sorted(test.absent),
        summary=DiagnosisSummary(ecus_present=len(ecus),
                                 ecus_failed=sum(1 for ecu in ecus if ecu.errors),
                                 dtcs=len(dtcs), confirmed=sum(1 for d in dtcs if d.confirmed),
                                 warning_lamp=test.warning_lamp()))


def diagnosis_topic(prefix: str, site: str, reader: str) -> str:
    return f"{prefix}/{site}/{reader}/{DIAGNOSIS_LEVEL}"


def vehicle_diagnosis_topic(vehicle_topic: str) -> str:
    """``{prefix}/{site}/vehicles/{vin}/diagnosis`` from the vehicle's topic
    (:meth:`agent.contract.topics.Topics.vehicle`)."""
    return f"{vehicle_topic}/{DIAGNOSIS_LEVEL}"


class DiagnoseTopics(Topics):
    """The topics of ``cbs-agent diagnose``'s own MQTT session: the reader's, except that its
    link status (``online``/``offline``, last will) is ``{prefix}/{site}/{reader}/diagnose/status``
    rather than the reader's status, which belongs to the daemon."""

    __slots__ = ()

    @property
    def status(self) -> str:
        return f"{self.base}/diagnose/status"

    @property
    def diagnosis(self) -> str:
        return diagnosis_topic(self.prefix, self.site, self.reader)
