"""Group commit in the service loop: what one read turn completes is committed together, and
a second readout of the same vehicle starts a new batch, so its forecast sees the first one
in the vehicle history, exactly as when every session was committed on its own.

A scripted reader hands the service whole reads; the rest is real (assembler, pipeline with
a vehicle history, SQLite outbox). The publisher is never started: nothing is sent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agent.contract.topics import Topics
from agent.domain.forecast import ForecastSettings
from agent.mqtt.publisher import MqttPublisher
from agent.mqtt.settings import MqttSettings
from agent.pipeline import ReadoutPipeline
from agent.readers.base import KeyReader, ReaderEvent
from agent.service import AgentService
from agent.store.history import VehicleHistory
from agent.store.outbox import Outbox
from protocols.encoder import encode_session
from protocols.session import SessionAssembler
from simulators.fleet import Fleet


class ScriptedReader(KeyReader):
    transport = "can"

    def __init__(self, reads: list[list[ReaderEvent]]) -> None:
        super().__init__()
        self.reads = reads

    @property
    def port_name(self) -> str:
        return "script"

    def _open(self) -> None:
        pass

    def _read_internal(self, timeout_s: float) -> list[ReaderEvent]:
        return self.reads.pop(0) if self.reads else []

    def _close(self) -> None:
        pass


def test_a_vehicle_read_twice_in_one_turn_is_committed_in_two_batches(tmp_path: Path) -> None:
    fleet = list(Fleet(3, None, vehicle_count=50).sessions(20))
    first = fleet[0]
    other = next(s for s in fleet if s.vin != first.vin)
    again = dataclasses.replace(first, session_seq=(first.session_seq + 1) % 256,
                                vehicle=dataclasses.replace(
                                    first.vehicle, mileage_km=first.vehicle.mileage_km + 500))
    frames = []
    for n, session in enumerate((first, other, again)):
        frames += encode_session(session, start_time=1.8e9 + n * 0.05, frame_gap_s=0.001)

    history = VehicleHistory(tmp_path / "history.sqlite3")
    seen: list[tuple[str, int]] = []
    readings = history.readings

    def spy(vin: str):  # type: ignore[no-untyped-def]
        got = readings(vin)
        seen.append((vin, len(got)))
        return got

    history.readings = spy  # type: ignore[method-assign]
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    topics = Topics("cbs/v1", "S1", "desk1")
    service = AgentService(
        reader=ScriptedReader([frames]), assembler=SessionAssembler(),
        pipeline=ReadoutPipeline(site="S1", reader="desk1", transport="can",
                                 forecast=ForecastSettings(), history=history),
        outbox=outbox, publisher=MqttPublisher(MqttSettings(), outbox, topics), topics=topics,
        wall_clock=lambda: 1.8e9 + 1.0)
    try:
        service.step(0.0)
        assert service.readouts == 3
        # The second read of the first vehicle saw the first one in the history.
        assert seen == [(first.vin, 0), (other.vin, 0), (first.vin, 1)]
        rows = outbox.pending(limit=10)
        assert [r.topic for r in rows] == [topics.readout, topics.vehicle(first.vin),
                                           topics.readout, topics.vehicle(other.vin),
                                           topics.readout, topics.vehicle(first.vin)]
        # The history is written on the next quiet turn (the readouts are on their way to the
        # broker meanwhile), or before a forecast needs it: the first batch's two readouts went
        # in before the third one was forecast, the third waits for the quiet turn.
        assert len(history.readings(first.vin)) == 1 and len(history.readings(other.vin)) == 1
        service.step(0.0)  # the reader has nothing
        assert len(history.readings(first.vin)) == 2
    finally:
        outbox.close()
        history.close()
