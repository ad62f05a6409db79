"""examples/subscriber.py, the integrators' starting point, run as they would run it: against a
real mosquitto, fed by the real agent reading a pseudo-terminal key reader.

It prints every readout and rejection once, resumes its persistent session after being down
(nothing read meanwhile is lost), and drops a redelivered readout (same ``readout_id``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from broker import MosquittoBroker, Subscriber, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from site_rig import clean_environment, fleet_sessions, key_bytes

from protocols.can_frame import CanFrame
from protocols.encoder import encode_session
from protocols.key_session import KeySession
from protocols.serial_framing import FrameType, encode_can_frame, encode_frame

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "subscriber.py"
SITE, READER = "S1", "desk1"
TIMEOUT_S = 60.0


class ExampleRun:
    """``python examples/subscriber.py ARGS``; stdout and stderr in files."""

    def __init__(self, workdir: Path, broker: MosquittoBroker, *args: str, name: str) -> None:
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(EXAMPLE), "--broker", broker.url, "--client-id", "dms-test",
                 *args], stdout=out, stderr=err, env=clean_environment(), cwd=workdir)

    def stderr(self) -> str:
        return self.err_path.read_text()

    def lines(self) -> list[str]:
        return self.out_path.read_text().splitlines()

    def wait_exit(self, timeout_s: float = TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"the example did not finish within {timeout_s} s; stdout:\n"
                                 f"{self.out_path.read_text()}\nstderr:\n{self.stderr()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _corrupted(session: KeySession) -> bytes:
    """The key bytes of ``session`` with one bit of the mileage flipped: the serial frame is
    re-encoded (its CRC-16 is fine) but the session's CRC-32 no longer matches."""
    frames = encode_session(session)
    frames = [CanFrame(f.arbitration_id, bytes([f.data[0] ^ 1]) + f.data[1:], f.timestamp)
              if f.arbitration_id == 0x6F2 else f for f in frames]
    return (encode_frame(FrameType.KEY_PRESENT) + b"".join(encode_can_frame(f) for f in frames)
            + encode_frame(FrameType.KEY_REMOVED))


def _wait_started(example: ExampleRun) -> None:
    wait_until(lambda: "connected to" in example.stderr() or example.process.poll() is not None,
               TIMEOUT_S, what="the example to connect")
    assert example.process.poll() is None, example.stderr()


def _readout_lines(lines: list[str]) -> list[list[str]]:
    return [line.split() for line in lines if line.startswith("readout ")]


def test_example_prints_every_key_once_and_resumes_its_session(tmp_path: Path, site) -> None:
    broker, reader, agent = site
    sessions = fleet_sessions(7, 6)
    seen = Subscriber.for_broker(broker, f"cbs/v1/{SITE}/{READER}/readout").start()
    try:
        # 1. Running: three good keys and one that cannot be read.
        first = ExampleRun(tmp_path, broker, "--count", "4", name="first")
        try:
            _wait_started(first)
            reader.lay_keys(sessions[:3])
            reader.write(_corrupted(sessions[3]))
            assert first.wait_exit() == 0
        finally:
            first.stop()
        lines = first.lines()
        readouts = _readout_lines(lines)
        assert [r[4] for r in readouts] == [s.vin for s in sessions[:3]]
        assert all(r[2] == f"{SITE}/{READER}" for r in readouts)
        rejected = [line for line in lines if line.startswith("rejected ")]
        assert len(rejected) == 1 and " crc_mismatch: " in rejected[0]
        assert "session resumed: False" in first.stderr()

        # 2. Down: two more keys are read; the broker keeps them for the example's session.
        reader.lay_keys(sessions[4:6])
        seen.wait_for(lambda ms: len(ms) >= 5, TIMEOUT_S, what="5 readouts at the broker")

        # 3. Back: it gets both, then a redelivery of the first is dropped, then a new key.
        second = ExampleRun(tmp_path, broker, "--count", "3", name="second")
        try:
            _wait_started(second)
            wait_until(lambda: len(_readout_lines(second.lines())) >= 2, TIMEOUT_S,
                       what="the readouts queued while the example was down")
            redelivered = seen.snapshot()[3]  # sessions[4]'s readout, published again as is
            _publish(broker, redelivered.topic, redelivered.payload)
            newest = fleet_sessions(8, 1)[0]
            reader.write(key_bytes(newest))
            assert second.wait_exit() == 0
        finally:
            second.stop()
        readouts = _readout_lines(second.lines())
        assert [r[4] for r in readouts] == [sessions[4].vin, sessions[5].vin, newest.vin]
        assert len({r[1] for r in readouts}) == 3
        assert json.loads(redelivered.payload)["readout_id"] == readouts[0][1]
        assert "session resumed: True" in second.stderr()
    finally:
        seen.stop()


def _publish(broker: MosquittoBroker, topic: str, payload: bytes) -> None:
    """Publish at QoS 1 and wait for the PUBACK: the broker has queued it for the example
    before anything the agent publishes afterwards."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-redeliver",
                         protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT_S)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
