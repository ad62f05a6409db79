"""The report's rules (shared/spec/diagnostics.md, "The report"), on plain values: outcome,
the VIN most ECUs agree on, KOMBI's mileage, the summary, the DTC form; the payload validates
against the published schema; the key readout of the same VIN is linked."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema

from agent.contract.diagnosis import DiagnoseTopics, diagnosis_payload, vehicle_diagnosis_topic
from agent.contract.schemas import payload_schema
from agent.diagnostics.reporting import key_readout_id
from agent.domain.diagnosis import EcuReading, VehicleTest, bmw_ecu_names
from agent.domain.models import to_json
from agent.store.history import VehicleHistory
from agent.tools.diagnose import parse_addresses
from protocols.dtc import OBD_PERMANENT, DtcRecord
from simulators.fleet import Fleet

AT = datetime(2026, 12, 6, 9, 20, 1, 4000, tzinfo=timezone.utc)
VIN = "WBA8E5107FK123456"


def _test(*ecus: EcuReading, protocol: str = "bmw") -> VehicleTest:
    return VehicleTest(protocol, AT, AT + timedelta(milliseconds=866), list(ecus),  # type: ignore[arg-type]
                       absent=[19, 1])


def test_the_spec_example() -> None:
    dme = EcuReading(0x12, "DME", VIN, "8631234", "SW 12.4.1", "HW 03", "A1B2C3D4",
                     dtcs=[DtcRecord(0x03011F, 3, 47)], occurrences={0x03011F: 3})
    report = diagnosis_payload(_test(dme), diagnosis_id="d1", site="S1", reader="desk1",
                               key_readout_id="r1")
    data = json.loads(to_json(report))
    jsonschema.validate(data, payload_schema("diagnosis"))
    assert data["started_at"] == "2026-12-06T09:20:01.004Z"
    assert data["finished_at"] == "2026-12-06T09:20:01.870Z"
    assert data["outcome"] == "complete" and data["absent"] == [1, 19]
    assert data["ecus"][0]["dtcs"] == [{
        "code": "03011F", "sae": "P0301", "failure_type": 31, "status": 47, "confirmed": True,
        "pending": True, "warning_lamp": False, "permanent": False, "ecu": 18, "occurrences": 3,
        "recurring": False}]
    assert data["summary"] == {"ecus_present": 1, "ecus_failed": 0, "dtcs": 1, "confirmed": 1,
                               "warning_lamp": False}
    assert data["vehicle"] == {"vin": VIN, "vin_consistent": True, "mileage_km": None}


def test_outcomes() -> None:
    ok = EcuReading(0x12, vin=VIN)
    failed = EcuReading(0x18, vin=VIN)
    failed.fail("ident", bytes.fromhex("22F187"), "timeout", "no answer")
    assert _test(ok).outcome == "complete"
    assert _test(ok, failed).outcome == "partial"
    assert _test().outcome == "no_response"
    aborted = _test(ok)
    aborted.aborted = True
    assert aborted.outcome == "aborted"
    report = diagnosis_payload(_test(ok, failed), diagnosis_id="d", site="S", reader="R")
    assert report.summary.ecus_failed == 1
    assert report.ecus[1].errors[0].model_dump() == {
        "step": "ident", "request": "22F187", "kind": "timeout", "nrc": None,
        "detail": "no answer"}


def test_vin_majority_and_consistency() -> None:
    other = "WBA8E5107FK999999"
    test = _test(EcuReading(0x10, vin=other), EcuReading(0x12, vin=VIN),
                 EcuReading(0x18, vin=VIN), EcuReading(0x29))
    assert test.vin() == (VIN, False)
    assert _test(EcuReading(0x12, vin=VIN), EcuReading(0x29)).vin() == (VIN, True)
    assert _test(EcuReading(0x12)).vin() == (None, True)
    tie = _test(EcuReading(0x40, vin=VIN), EcuReading(0x12, vin=other))
    assert tie.vin() == (other, False)  # a tie: the lowest address's


def test_mileage_is_kombis_and_lamp() -> None:
    test = _test(EcuReading(0x12, mileage_km=5), EcuReading(0x60, mileage_km=48412,
                 dtcs=[DtcRecord(0x800001, 3, 0x88)]))
    assert test.mileage_km() == 48412 and test.warning_lamp()
    obd = _test(EcuReading(0x7E9, mileage_km=7, mil_on=True), protocol="obd2")
    assert obd.mileage_km() == 7 and obd.warning_lamp()


def test_obd2_dtcs_have_four_digits_and_no_status() -> None:
    ecu = EcuReading(0x7E8, dtcs=[DtcRecord(0x0420, 2, None, OBD_PERMANENT)])
    (dtc,) = diagnosis_payload(_test(ecu, protocol="obd2"), diagnosis_id="d", site="S",
                               reader="R").ecus[0].dtcs or []
    assert (dtc.code, dtc.sae, dtc.failure_type, dtc.status) == ("0420", "P0420", None, None)
    assert dtc.confirmed and dtc.permanent and not dtc.pending and dtc.occurrences is None


def test_topics() -> None:
    topics = DiagnoseTopics("cbs/v1", "S1", "desk1")
    assert topics.diagnosis == "cbs/v1/S1/desk1/diagnosis"
    assert vehicle_diagnosis_topic(topics.vehicle(VIN)) == f"cbs/v1/S1/vehicles/{VIN}/diagnosis"
    assert topics.status == "cbs/v1/S1/desk1/diagnose/status"


def test_addresses_by_name_or_number() -> None:
    names = bmw_ecu_names()
    assert names[0x60] == "KOMBI" and len(names) == 20
    assert parse_addresses("dme,0x60, 18", names) == [0x12, 0x60, 18]


def test_the_key_readout_of_the_same_vin_is_linked(tmp_path: Path) -> None:
    fleet = Fleet(3)
    session = fleet.session(0)
    window = timedelta(hours=2)
    path = tmp_path / "history.sqlite3"
    with VehicleHistory(tmp_path / "history.sqlite3") as history:
        history.record(session, AT - timedelta(hours=3), "old")
        history.record(session, AT - timedelta(minutes=30), "recent")
    assert key_readout_id(path, session.vin, AT, window=window) == "recent"
    assert key_readout_id(path, session.vin, AT + timedelta(hours=3), window=window) is None
    assert key_readout_id(path, "WBA8E5107FK000000", AT, window=window) is None
    assert key_readout_id(tmp_path / "none.sqlite3", session.vin, AT, window=window) is None


def test_the_report_history_marks_a_fault_seen_again(tmp_path: Path) -> None:
    from agent.diagnostics.reporting import make_report
    from agent.store.diagnoses import DiagnosisHistory

    def visit(at: datetime, *codes: int) -> dict[str, object]:
        dme = EcuReading(0x12, "DME", VIN, dtcs=[DtcRecord(c, 3, 0x2F) for c in codes])
        test = VehicleTest("bmw", at, at, [dme])
        report = make_report(test, site="S1", reader="desk1", history_path=tmp_path / "h",
                             key_window=timedelta(hours=2),
                             reports_path=tmp_path / "diagnoses.sqlite3")
        return json.loads(to_json(report))

    first = visit(AT, 0x03011F, 0x048000)
    assert not any(d["recurring"] for d in first["ecus"][0]["dtcs"])  # type: ignore[index]
    second = visit(AT + timedelta(days=90), 0x03011F, 0x0A0000)
    assert [(d["code"], d["recurring"]) for d in second["ecus"][0]["dtcs"]] == [  # type: ignore[index]
        ("03011F", True), ("0A0000", False)]
    with DiagnosisHistory(tmp_path / "diagnoses.sqlite3") as history:
        assert len(history.reports(VIN)) == 2


def test_the_spec_examples_shape_is_valid_against_the_schema() -> None:
    """The contract's example report (as the desk's fixtures have it) validates: the keys this
    build adds to the DTC form (``ecu``, ``permanent``, ``recurring``) are optional."""
    from desk_payloads import diagnosis

    jsonschema.validate(diagnosis(VIN), payload_schema("diagnosis"))
