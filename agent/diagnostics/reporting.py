"""From a finished vehicle test to outbox rows: the report, its link to the key readout, and
its two topics. Used by ``cbs-agent diagnose`` and by the daemon's vehicle watcher alike."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from agent.contract.diagnosis import (
    DIAGNOSIS_SCHEMA,
    DiagnoseTopics,
    Diagnosis,
    diagnosis_payload,
    vehicle_diagnosis_topic,
)
from agent.domain.diagnosis import VehicleTest
from agent.domain.models import format_timestamp, to_json
from agent.store.diagnoses import DiagnosisHistory, DiagnosisHistoryError
from agent.store.history import HistoryError, VehicleHistory
from agent.store.outbox import OutboxMessage

log = logging.getLogger(__name__)


def key_readout_id(history_path: Path, vin: str | None, at: datetime, *,
                   window: timedelta) -> str | None:
    """The readout_id of this VIN's latest key readout in this agent's vehicle history (one
    reader's) within ``window`` before ``at``, else None. Never creates the history file."""
    if vin is None or not history_path.exists():
        return None
    try:
        with VehicleHistory(history_path) as history:
            readings = list(history.readings(vin))  # read while open: they load lazily
    except HistoryError as exc:
        log.warning("vehicle history unreadable, no key readout linked: %s", exc)
        return None
    recent = [r for r in readings if at - window <= r.read_at <= at + timedelta(minutes=5)]
    return max(recent, key=lambda r: r.read_at).readout_id if recent else None


def make_report(test: VehicleTest, *, site: str, reader: str, history_path: Path,
                key_window: timedelta, reports_path: Path | None = None) -> Diagnosis:
    """The report of ``test``. With ``reports_path`` (the vehicle's report history), faults
    confirmed in the vehicle's previous report too are marked ``recurring``, and the report
    is kept there."""
    vin, _ = test.vin()
    started = format_timestamp(test.started_at)
    before: set[tuple[int, str]] = set()
    history: DiagnosisHistory | None = None
    if reports_path is not None and vin is not None:
        try:
            history = DiagnosisHistory(reports_path)
            before = history.confirmed_before(vin, started)
        except DiagnosisHistoryError as exc:
            log.warning("report history unusable, no recurring faults marked: %s", exc)
    report = diagnosis_payload(test, diagnosis_id=str(uuid.uuid4()), site=site, reader=reader,
                               transport="can", confirmed_before=before,
                               key_readout_id=key_readout_id(history_path, vin, test.started_at,
                                                             window=key_window))
    if history is not None:
        try:
            history.record(report.diagnosis_id, vin or "", started, to_json(report))
        except DiagnosisHistoryError as exc:
            log.warning("report %s not kept in the vehicle's history: %s", report.diagnosis_id,
                        exc)
        finally:
            history.close()
    return report


def report_messages(report: Diagnosis, prefix: str) -> list[OutboxMessage]:
    """The reader's ``diagnosis`` row and, with a VIN, the vehicle's retained copy."""
    topics = DiagnoseTopics(prefix, report.site, report.reader)
    payload = to_json(report).encode("utf-8")
    messages = [OutboxMessage(topics.diagnosis, payload, False, DIAGNOSIS_SCHEMA,
                              report.diagnosis_id)]
    if report.vehicle.vin is not None:
        try:
            vehicle = vehicle_diagnosis_topic(topics.vehicle(report.vehicle.vin))
        except ValueError:
            log.warning("VIN %r cannot be a topic level: no retained copy", report.vehicle.vin)
        else:
            messages.append(OutboxMessage(vehicle, payload, True, DIAGNOSIS_SCHEMA,
                                          report.diagnosis_id))
    return messages


def summary_line(report: Diagnosis) -> str:
    s = report.summary
    return (f"{report.outcome}: {s.ecus_present} ECUs present ({s.ecus_failed} with errors), "
            f"{len(report.absent)} absent, {s.dtcs} DTCs ({s.confirmed} confirmed)"
            f"{', warning lamp on' if s.warning_lamp else ''}; VIN "
            f"{report.vehicle.vin or 'unknown'}"
            f"{'' if report.vehicle.vin_consistent else ' (ECUs disagree)'}")
