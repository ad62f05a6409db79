"""The vehicle test end to end: ``cbs-sim vehicle`` on a real pseudo-terminal (SLCAN), a real
mosquitto, and ``cbs-agent diagnose`` run exactly as the contract's checker runs it
(shared/spec/diagnostics.md): the spec's behaviours and every fault of its last section."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from broker import MosquittoBroker, free_port
from processes import SimulatorProcess

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "cbs.diagnosis-1.schema.json").read_text())
TABLE = [0x01, 0x10, 0x12, 0x13, 0x18, 0x1C, 0x29, 0x2A, 0x30, 0x38, 0x40, 0x56, 0x5D, 0x60,
         0x63, 0x64, 0x67, 0x6D, 0x72, 0x78]
CAR = [0x01, 0x10, 0x12, 0x18, 0x1C, 0x29, 0x30, 0x38, 0x40, 0x56, 0x5D, 0x60, 0x63, 0x78]


class Car:
    """``cbs-sim vehicle`` with a capture of every frame and its truth."""

    def __init__(self, workdir: Path, *args: str, name: str = "car") -> None:
        self.capture = workdir / f"{name}-frames.txt"
        self.stats = workdir / f"{name}-stats.json"
        self.sim = SimulatorProcess(workdir, "vehicle", "--capture", str(self.capture),
                                    "--stats", str(self.stats), *args, name=name)
        self.port = self.sim.port

    def truth(self) -> dict[int, dict[str, Any]]:
        return {e["address"]: e for e in json.loads(self.sim.truth_path.read_text())}

    def stop(self) -> dict[str, Any]:
        self.sim.stop()
        return json.loads(self.stats.read_text()) if self.stats.exists() else {}

    def frames(self) -> list[tuple[float, str, int, bytes]]:
        out = []
        for line in self.capture.read_text().splitlines():
            at, direction, frame = line.split()
            ident, _, data = frame.partition("#")
            out.append((float(at), direction, int(ident, 16), bytes.fromhex(data)))
        return out


def diagnose(workdir: Path, port: str, broker_port: int, *extra: str, protocol: str = "bmw",
             state: str = "state", timeout_s: float = 90.0) -> tuple[int, list[dict[str, Any]], str]:
    """Run the checker's exact command (plus ``--json`` and ``extra``); (rc, reports, stderr)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "agent", "diagnose", "--can-interface", "slcan", "--can-channel",
         port, "--can-bitrate", "500000", "--broker", f"mqtt://127.0.0.1:{broker_port}",
         "--site", "S1", "--reader", "desk1", "--state-dir", str(workdir / state),
         "--protocol", protocol, "--json", *extra],
        capture_output=True, text=True, timeout=timeout_s, cwd=workdir)
    (workdir / "diagnose.log").write_text(done.stderr)
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    for report in reports:
        jsonschema.validate(report, SCHEMA)
        report["_took_s"] = time.monotonic() - started
    return done.returncode, reports, done.stderr


@pytest.fixture
def broker(mosquitto: MosquittoBroker) -> MosquittoBroker:
    return mosquitto


def _ecus(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {e["address"]: e for e in report["ecus"]}


def test_a_whole_car(tmp_path: Path, broker: MosquittoBroker, make_subscriber: Any) -> None:
    subscriber = make_subscriber(broker, "cbs/v1/#")
    car = Car(tmp_path, "--dtcs", "0x12:200", "--no-padding")
    rc, (report,), err = diagnose(tmp_path, car.port, broker.port)
    assert rc == 0, err
    truth = car.truth()
    stats = car.stop()
    assert report["outcome"] == "complete", report
    assert [e["address"] for e in report["ecus"]] == CAR
    assert report["absent"] == sorted(set(TABLE) - set(CAR))
    vin = truth[0x12]["vin"]
    assert report["vehicle"] == {"vin": vin, "vin_consistent": True, "mileage_km": 48412}
    for address, ecu in _ecus(report).items():
        expected = truth[address]
        assert ecu["errors"] == []
        for key in ("vin", "part_number", "software", "hardware", "serial"):
            assert ecu[key] == expected[key], (address, key)
        assert [d["code"] for d in ecu["dtcs"]] == [d["code"] for d in expected["dtcs"]]
        for dtc, want in zip(ecu["dtcs"], expected["dtcs"]):
            assert dtc["status"] == want["status"]
            assert dtc["confirmed"] == bool(want["status"] & 0x08)
            assert dtc["pending"] == bool(want["status"] & 0x04)
            assert dtc["warning_lamp"] == bool(want["status"] & 0x80)
            assert dtc["occurrences"] == (want["occurrences"] if dtc["confirmed"] else None)
    assert _ecus(report)[0x12]["name"] == "DME" and len(_ecus(report)[0x12]["dtcs"]) == 200
    all_dtcs = [d for e in report["ecus"] for d in e["dtcs"]]
    assert report["summary"] == {
        "ecus_present": 14, "ecus_failed": 0, "dtcs": len(all_dtcs),
        "confirmed": sum(d["confirmed"] for d in all_dtcs),
        "warning_lamp": any(d["warning_lamp"] for d in all_dtcs)}
    # The wire: every tester frame 8 bytes padded with 0xCC; at most 8 requests in flight
    # after the probe; one at a time per ECU.
    assert stats["badly_padded"] == 0 and stats["tester_frames"] > 0
    _check_concurrency(car.frames())
    # Delivered through the outbox: the reader's topic and the vehicle's (retained).
    got = subscriber.wait_for(lambda ms: len({m.topic for m in ms if "diagnosis" in m.topic})
                              >= 2)
    topics = {m.topic: m for m in got}
    assert json.loads(topics["cbs/v1/S1/desk1/diagnosis"].payload)["diagnosis_id"] == \
        report["diagnosis_id"]
    assert f"cbs/v1/S1/vehicles/{vin}/diagnosis" in topics
    assert "cbs/v1/S1/desk1/status" not in topics  # the daemon's status is left alone


def _check_concurrency(frames: list[tuple[float, str, int, bytes]]) -> None:
    """From the capture: a request to ECU A is open from its single frame until A's final
    answer (anything but 7F xx 78) is complete, or P2 passed without a frame of A (the
    tester's clock runs ahead of the capture's by the simulator's latency: 60 ms of slack).
    The in-flight bound counts the requests after the probe; the probes (3E 00) go to every
    address at once (docs/diagnostics.md, "Readings of the spec")."""
    open_requests: dict[int, float | None] = {}
    probing: set[int] = set()
    remaining: dict[int, int] = {}
    peak = 0
    probed: set[int] = set()

    def close(address: int) -> None:
        open_requests.pop(address, None)
        probing.discard(address)
        remaining.pop(address, None)

    for at, direction, ident, data in frames:
        for address, since in list(open_requests.items()):
            if since is not None and at - since > 0.15 - 0.06:
                close(address)  # timed out at the tester
        if direction == ">" and ident == 0x6F1 and data[1] >> 4 == 0:
            assert data[0] not in open_requests, f"two requests at once to 0x{data[0]:02X}"
            open_requests[data[0]] = at
            if data[2:4] == b"\x3e\x00":
                probing.add(data[0])
                probed.add(data[0])
            peak = max(peak, len(open_requests) - len(probing))
        elif direction == "<" and 0x600 <= ident <= 0x6FF:
            address, pci = ident - 0x600, data[1] >> 4
            if address in open_requests:
                open_requests[address] = None  # answering: open until the answer is complete
            if pci == 0:
                payload = data[2:2 + (data[1] & 0xF)]
                if not (payload[:1] == b"\x7f" and payload[2:3] == b"\x78"):
                    close(address)
            elif pci == 1:
                remaining[address] = ((data[1] & 0xF) << 8 | data[2]) - 5
            elif pci == 2 and address in remaining:
                remaining[address] -= 6
                if remaining[address] <= 0:
                    close(address)
    assert 1 < peak <= 8, peak
    assert probed == set(TABLE)


def test_every_fault_of_one_ecu_stays_with_that_ecu(tmp_path: Path,
                                                    broker: MosquittoBroker) -> None:
    car = Car(tmp_path, "--bus-load", "0.3",
              "--pending", "0x12:3",            # 3 x 0x78 before the DTC list: waited for
              "--pending", "0x01:11",           # 11 x 0x78: more than the 10 allowed
              "--busy", "0x18:2",               # 2 x 0x21: asked again, answered
              "--busy", "0x29:4",               # 4 x 0x21: more than 3 retries
              "--unsupported", "0x30:0xF18C",   # refused with 0x31: null, no error
              "--stop-after", "0x38:3",         # answers the probe and two DIDs, then nothing
              "--wrong-sequence", "0x40",
              "--lose-frame", "0x56",
              "--ignore-flow-control", "0x5D",
              "--vin-mismatch", "0x63",
              "--dtcs", "0x12:20", "--dtcs", "0x40:5", "--dtcs", "0x56:5")
    rc, (report,), err = diagnose(tmp_path, car.port, broker.port)
    truth = car.truth()
    car.stop()
    assert rc == 0, err
    ecus = _ecus(report)
    assert sorted(ecus) == CAR, "every ECU is in the report"
    assert report["outcome"] == "partial"
    failed = {a for a, e in ecus.items() if e["errors"]}
    assert failed == {0x01, 0x29, 0x38, 0x40, 0x56}, {a: ecus[a]["errors"] for a in failed}
    assert report["summary"]["ecus_failed"] == 5
    # Waited through 0x78 and retried 0x21: complete data.
    assert len(ecus[0x12]["dtcs"]) == 20 and ecus[0x12]["errors"] == []
    assert ecus[0x18]["vin"] == truth[0x18]["vin"]
    (pending,) = ecus[0x01]["errors"]
    assert (pending["step"], pending["request"], pending["kind"], pending["nrc"]) == (
        "faults", "1902FF", "nrc", 0x78)
    assert ecus[0x01]["dtcs"] is None and ecus[0x01]["vin"] == truth[0x01]["vin"]
    assert {(e["step"], e["kind"], e["nrc"]) for e in ecus[0x29]["errors"]} == {
        ("ident", "nrc", 0x21)}
    assert ecus[0x30]["serial"] is None and ecus[0x30]["errors"] == []
    assert ecus[0x30]["part_number"] == truth[0x30]["part_number"]
    stopped = ecus[0x38]  # answered the probe, its fault list and its VIN
    assert stopped["vin"] == truth[0x38]["vin"] and stopped["part_number"] is None
    assert [d["code"] for d in stopped["dtcs"]] == [d["code"] for d in truth[0x38]["dtcs"]]
    assert {e["kind"] for e in stopped["errors"]} == {"timeout"}
    assert [e["request"] for e in stopped["errors"]][:4] == ["22F187", "22F189", "22F191",
                                                             "22F18C"]
    for address in (0x40, 0x56):  # broken ISO-TP: every multi-frame answer fails
        kinds = {(e["request"], e["kind"]) for e in ecus[address]["errors"]}
        assert ("22F190", "transport") in kinds and ("1902FF", "transport") in kinds, kinds
        assert ecus[address]["vin"] is None and ecus[address]["dtcs"] is None
    assert ecus[0x5D]["errors"] == [] and ecus[0x5D]["vin"] == truth[0x5D]["vin"]
    # The mismatching unit: the car's VIN is the majority's; the desk sees which unit differs.
    assert report["vehicle"]["vin"] == truth[0x12]["vin"]
    assert report["vehicle"]["vin_consistent"] is False
    assert ecus[0x63]["vin"] != truth[0x12]["vin"]


def test_an_empty_bus_is_no_response_with_every_address_absent(tmp_path: Path,
                                                               broker: MosquittoBroker) -> None:
    # Every address is probed at once (bench/diagnostics.py prints how long this takes
    # against one P2).
    car = Car(tmp_path, "--ecus", "none")
    rc, (report,), err = diagnose(tmp_path, car.port, broker.port)
    car.stop()
    assert rc == 0, err
    assert report["outcome"] == "no_response" and report["ecus"] == []
    assert report["absent"] == TABLE
    assert report["vehicle"] == {"vin": None, "vin_consistent": True, "mileage_km": None}


def test_the_interface_unplugged_mid_test_keeps_what_was_read(tmp_path: Path,
                                                            broker: MosquittoBroker) -> None:
    car = Car(tmp_path, "--pace", "--dtcs", "0x12:200", "--cf-gap-s", "0x12:0.002",
              "--unplug-after-s", "0.5")
    rc, (report,), err = diagnose(tmp_path, car.port, broker.port)
    car.stop()
    assert rc == 0, err
    assert report["outcome"] == "aborted", report["outcome"]
    assert report["ecus"], "what was read before the unplug is kept"
    assert any(e["vin"] for e in report["ecus"])


def test_obd2_with_several_responders(tmp_path: Path, broker: MosquittoBroker) -> None:
    car = Car(tmp_path, "--protocol", "obd2", "--obd-ecus", "3", "--seed", "4")
    rc, (report,), err = diagnose(tmp_path, car.port, broker.port, protocol="obd2")
    truth = car.truth()
    car.stop()
    assert rc == 0, err
    assert report["outcome"] == "complete", report
    assert report["absent"] == []
    ecus = _ecus(report)
    assert sorted(ecus) == [0x7E8, 0x7E9, 0x7EA]
    engine = ecus[0x7E8]
    assert engine["name"] is None and engine["part_number"] is None
    assert engine["vin"] == truth[0]["vin"] and ecus[0x7E9]["vin"] is None  # no 09 02 there
    assert report["vehicle"]["mileage_km"] == 48412
    for index, address in enumerate((0x7E8, 0x7E9, 0x7EA)):
        want = sorted((d["code"], d["obd_mode"]) for d in truth[index]["dtcs"])
        got = ecus[address]["dtcs"]
        assert sorted((d["code"], {True: 0x0A}.get(d["permanent"], 0x07 if d["pending"]
                                                     else 0x03)) for d in got) == want
        for dtc in got:
            assert len(dtc["code"]) == 4 and dtc["failure_type"] is None and dtc["status"] is None
    stored = [d for e in report["ecus"] for d in e["dtcs"] if d["confirmed"] and not d["permanent"]]
    assert report["summary"]["warning_lamp"] == bool(stored)


def test_broker_away_the_report_is_stored_then_sent(tmp_path: Path, make_broker: Any,
                                                    make_subscriber: Any) -> None:
    car = Car(tmp_path, "--ecus", "0x12,0x60")
    away = free_port()
    started = time.monotonic()
    rc, (report,), err = diagnose(tmp_path, car.port, away, "--config",
                                  str(_config(tmp_path, publish_timeout_s=1.0)))
    assert rc == 0, err
    assert "stored in" in err and "will be sent" in err, err
    assert time.monotonic() - started < 30
    # The next run (the broker is back) delivers both reports: nothing was lost.
    broker = make_broker()
    subscriber = make_subscriber(broker, "cbs/v1/S1/desk1/diagnosis")
    rc, (second,), err = diagnose(tmp_path, car.port, broker.port)
    car.stop()
    assert rc == 0, err
    got = subscriber.wait_for_count(2)
    assert {json.loads(m.payload)["diagnosis_id"] for m in got} == {
        report["diagnosis_id"], second["diagnosis_id"]}


def _config(tmp_path: Path, **diagnostics: object) -> Path:
    path = tmp_path / "agent.toml"
    lines = ["[diagnostics]"] + [f"{k} = {v!r}" for k, v in diagnostics.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_clearing_faults_reads_again_and_publishes_a_second_report(
        tmp_path: Path, broker: MosquittoBroker) -> None:
    car = Car(tmp_path, "--ecus", "0x12,0x18,0x60", "--dtcs", "0x12:4", "--dtcs", "0x18:2")
    rc, reports, err = diagnose(tmp_path, car.port, broker.port, "--clear-faults", "DME",
                                "--yes")
    car.stop()
    assert rc == 0, err
    before, after = reports
    assert before["diagnosis_id"] != after["diagnosis_id"]
    assert len(_ecus(before)[0x12]["dtcs"]) == 4 and _ecus(after)[0x12]["dtcs"] == []
    assert len(_ecus(after)[0x18]["dtcs"]) == 2, "only the named ECU is cleared"
    # The vehicle's history keeps each report: what was confirmed in the first and is
    # confirmed again is recurring.
    again = [d for d in _ecus(after)[0x18]["dtcs"] if d["confirmed"]]
    assert again and all(d["recurring"] for d in again)
    assert not any(d["recurring"] for e in before["ecus"] for d in e["dtcs"] or [])
    assert "clearing fault memory on the operator's command: DME" in err


def test_clearing_needs_confirmation(tmp_path: Path, broker: MosquittoBroker) -> None:
    car = Car(tmp_path, "--ecus", "0x12", "--dtcs", "0x12:2")
    rc, reports, err = diagnose(tmp_path, car.port, broker.port, "--clear-faults", "all")
    car.stop()
    assert rc == 1 and len(reports) == 1 and "not cleared" in err


def test_bad_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "diagnose", "--site", "S1",
                           "--reader", "desk1", "--state-dir", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--can-interface" in done.stderr
    done = subprocess.run([sys.executable, "-m", "agent", "diagnose", "--can-interface", "slcan",
                           "--can-channel", str(tmp_path / "no-such-tty"), "--site", "S1",
                           "--reader", "desk1", "--state-dir", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no-such-tty" in done.stderr


def test_the_daemon_tests_a_car_once_per_ignition_cycle_and_links_the_key(
        tmp_path: Path, broker: MosquittoBroker, make_subscriber: Any) -> None:
    """``cbs-agent run`` with a key reader and a diagnostics channel of its own: a key read,
    then the car is plugged in: one report, linked to that key readout; plugged in again (a
    new ignition cycle): a second report."""
    from processes import AgentProcess

    subscriber = make_subscriber(broker, "cbs/v1/S1/#")
    keys = SimulatorProcess(tmp_path, "serial", "--seed", "5", "--sessions", "1",
                            "--vehicles", "1", "--interval-s", "0.05", "--dwell-s", "0.05",
                            "--baudrate", "0", name="keys")
    config = tmp_path / "agent.toml"
    config.write_text(f'[diagnostics]\ncan_interface = "slcan"\n'
                      f'can_channel = "{tmp_path / "car.tty"}"\nprobe_interval_s = 0.5\n')
    AgentProcess(tmp_path, "--config", str(config), "--serial", keys.port, "--broker",
                 broker.url, "--site", "S1", "--reader", "desk1", "--state-dir",
                 str(tmp_path / "state"))
    (readout,) = [m.json() for m in subscriber.wait_for_count(1, "cbs/v1/S1/desk1/readout",
                                                              timeout_s=30)]
    car = Car(tmp_path, "--seed", "5", "--ecus", "0x12,0x60", "--dtcs", "0x12:3")
    topic = "cbs/v1/S1/desk1/diagnosis"
    report = subscriber.wait_for_count(1, topic, timeout_s=60)[0].json()
    assert report["outcome"] == "complete" and len(report["ecus"]) == 2
    assert report["vehicle"]["vin"] == readout["vehicle"]["vin"]
    assert report["key_readout_id"] == readout["readout_id"]
    time.sleep(2.0)  # four more probes: the same ignition cycle, no second test
    assert len([m for m in subscriber.snapshot() if m.topic == topic]) == 1
    car.stop()
    car = Car(tmp_path, "--seed", "5", "--ecus", "0x12,0x60", "--dtcs", "0x12:3")
    second = subscriber.wait_for_count(2, topic, timeout_s=60)[1].json()
    assert second["diagnosis_id"] != report["diagnosis_id"]
    car.stop()


def test_integrators_ask_the_daemon_for_a_test_and_to_clear_faults(
        tmp_path: Path, broker: MosquittoBroker, make_subscriber: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``diagnose`` and ``clear_faults`` commands (MQTT 5 request/response) run a test on
    the daemon's diagnostics channel; the answer names the report, which is published."""
    import test_commands
    from processes import AgentProcess

    subscriber = make_subscriber(broker, "cbs/v1/S1/desk1/diagnosis")
    keys = SimulatorProcess(tmp_path, "serial", "--sessions", "0", "--baudrate", "0",
                            name="keys")
    car = Car(tmp_path, "--ecus", "0x12,0x60", "--dtcs", "0x12:3", "--dtcs", "0x60:1")
    config = tmp_path / "agent.toml"
    config.write_text(f'[diagnostics]\ncan_interface = "slcan"\ncan_channel = "{car.port}"\n'
                      "probe_interval_s = 0.5\n[commands]\nclear_faults = true\n")
    agent = AgentProcess(tmp_path, "--config", str(config), "--serial", keys.port, "--broker",
                         broker.url, "--site", "S1", "--reader", "desk1", "--state-dir",
                         str(tmp_path / "state"))
    subscriber.wait_for_count(1, timeout_s=60)  # the watcher's own test of this car
    requester = test_commands.Requester(broker)
    monkeypatch.setattr(test_commands, "BASE", "cbs/v1/S1/desk1")  # its requests' topics
    try:
        import processes
        processes.wait_until(lambda: "commands: listening" in agent.log_text(), 30,
                             "the command link")
        answer = _ask(requester, "diagnose", b"")
        assert answer["ok"], answer
        result = answer["result"]
        assert result["outcome"] == "complete" and result["summary"]["ecus_present"] == 2
        reports = subscriber.wait_for_count(2, timeout_s=30)
        assert reports[1].json()["diagnosis_id"] == result["diagnosis_id"]
        cleared = _ask(requester, "clear_faults", b'{"ecu": 18}')
        assert cleared["ok"], cleared
        report = subscriber.wait_for_count(3, timeout_s=30)[2].json()
        assert report["diagnosis_id"] == cleared["result"]["diagnosis_id"]
        ecus = _ecus(report)
        assert ecus[0x12]["dtcs"] == [] and len(ecus[0x60]["dtcs"]) == 1
        assert "fault memory of ECU 0x12 cleared" in agent.log_text()
    finally:
        requester.close()
        car.stop()


def _ask(requester: Any, command: str, payload: bytes) -> dict[str, Any]:
    import processes
    correlation = requester.send(command, payload)
    processes.wait_until(lambda: correlation in requester.answers, 60, f"the answer to {command}")
    return dict(requester.answers[correlation])


def test_diagnose_beside_the_daemons_config_file(tmp_path: Path, broker: MosquittoBroker) -> None:
    """The appliance's config file names the key reader (a serial port): ``diagnose``'s CAN
    options are the diagnostics channel, never the key reader's, which it refuses."""
    car = Car(tmp_path, "--ecus", "0x12")
    config = tmp_path / "agent.toml"
    config.write_text('serial = "/dev/ttyUSB7"\n[diagnostics]\np2_ms = 150\n')
    rc, (report,), err = diagnose(tmp_path, car.port, broker.port, "--config", str(config))
    assert rc == 0 and report["outcome"] == "complete", err
    rc, _, err = diagnose(tmp_path, "/dev/ttyUSB7", broker.port, "--config", str(config))
    car.stop()
    assert rc == 2 and "key reader" in err and len(err.strip().splitlines()) == 1, err
