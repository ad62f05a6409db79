"""The service loop's own rate, in process: the same sessions against an empty state and a big
history, with nothing else on the machine's cores.

    python bench/loop_throughput.py STATE_DIR [--sessions 3000] [--rounds 2]

STATE_DIR is filled by bench/big_history.py; its history and reminder store are copied to a
scratch directory for each run (the run writes into them). The loop is the agent's
``AgentService`` with its real assembler, pipeline, vehicle history, reminder store and SQLite
outbox, and the stores' background checkpoints; a scripted reader hands it the pre-encoded
frames of ``--sessions`` sessions of STATE_DIR's fleet (half as many vehicles, each read
twice) in reads of 400 frames, as a backlog arrives. The publisher is not started: the
outbox keeps what it commits. The reminder pass is held off (bench/latency.py measures it).

Why beside bench/throughput.py (2c): at saturation the agent's loop is the bound, and its
rate there moves with the broker, the subscriber and the pty writer on the same two cores
(the same code measured 400-870/s within an hour). Here the loop runs alone: readouts per
second of wall time, and process CPU per readout, the two alternated ``--rounds`` times.
Goal (docs/performance.md, "Years at a busy site", 2c): with the history within 10 % of the
empty state.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, fleet_sessions, machine, result, table  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RATIO = 0.90
FRAMES_PER_READ = 400


def run(state_dir: Path | None, sessions: list, meta: dict,  # type: ignore[type-arg]
        retention_days: int | None = None) -> tuple[float, float, int]:
    """(readouts/s of wall time, ms of process CPU per readout, rejected) on a copy of
    ``state_dir`` (None: empty)."""
    from agent.contract.topics import Topics
    from agent.domain.forecast import ForecastSettings
    from agent.domain.proposal import default_proposal_context
    from agent.domain.reminders import ReminderSettings
    from agent.mqtt.publisher import MqttPublisher
    from agent.mqtt.settings import MqttSettings
    from agent.pipeline import ReadoutPipeline
    from agent.readers.base import KeyReader, ReaderEvent
    from agent.service import AgentService
    from agent.store.history import VehicleHistory
    from agent.store.outbox import Outbox
    from agent.store.reminders import ReminderService
    from agent.store.sqlite import BackgroundCheckpointer
    from protocols.encoder import encode_session
    from protocols.session import SessionAssembler

    class Backlog(KeyReader):
        """The frames, FRAMES_PER_READ at a time, as a reader holding a backlog gives them."""

        transport = "serial"

        def __init__(self, reads: list[list[ReaderEvent]]) -> None:
            super().__init__()
            self.reads = reads

        @property
        def port_name(self) -> str:
            return "backlog"

        def _open(self) -> None:
            pass

        def _read_internal(self, timeout_s: float) -> list[ReaderEvent]:
            return self.reads.pop(0) if self.reads else []

        def _close(self) -> None:
            pass

    work = Path(tempfile.mkdtemp(prefix="cbs-bench-loop-"))
    try:
        if state_dir is not None:
            for name in ("history.sqlite3", "reminders.sqlite3"):
                shutil.copyfile(state_dir / name, work / name)
        t0 = time.time()
        frames: list[ReaderEvent] = []
        for n, session in enumerate(sessions):
            frames += encode_session(session, start_time=t0 + n * 0.0005, frame_gap_s=0.00002)
        reads = [frames[i:i + FRAMES_PER_READ] for i in range(0, len(frames), FRAMES_PER_READ)]
        retention = retention_days or int(meta.get("retention_days", 3650))
        forecast, context = ForecastSettings(), default_proposal_context()
        history = VehicleHistory(work / "history.sqlite3", retention_days=retention,
                                 synchronous="NORMAL", settings=forecast)
        reminders = ReminderService(work / "reminders.sqlite3", site="bench", reader="loop",
                                    topic="cbs/v1/bench/reminders", settings=ReminderSettings(),
                                    forecast=forecast, context=context, retention_days=retention)
        outbox = Outbox(work / "outbox.sqlite3", max_messages=10 ** 6)
        topics = Topics("cbs/v1", "bench", "loop")
        checkpoints = BackgroundCheckpointer([work / name for name in (
            "history.sqlite3", "reminders.sqlite3", "outbox.sqlite3")])
        checkpoints.start()
        service = AgentService(
            reader=Backlog(reads), assembler=SessionAssembler(timeout_s=3600),
            pipeline=ReadoutPipeline(site="bench", reader="loop", transport="serial",
                                     forecast=forecast, history=history, proposal=context),
            outbox=outbox, publisher=MqttPublisher(MqttSettings(), outbox, topics), topics=topics,
            reminders=reminders, wall_clock=lambda: time.time() + 3600)
        reminders.poll = lambda *args, **kwargs: 0  # type: ignore[method-assign]
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        while service.reader.reads:  # type: ignore[attr-defined]
            service.step(0.0)
        for _ in range(3):
            service.step(0.0)  # quiet turns: the last readouts written to the stores
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        readouts, rejected = service.readouts, service.rejected
        checkpoints.stop()
        outbox.close()
        history.close()
        reminders.close()
        return readouts / wall, cpu / max(1, readouts) * 1e3, rejected
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--retention-days", type=int, default=None,
                        help="the history's age bound (default: the big history's own, 10 years); "
                             "the agent's default of 3 years prunes a returning vehicle's oldest "
                             "visit at most of its readouts")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # stale keys of the replayed fleet: not the point here
    meta = json.loads((args.state_dir / "big_history.json").read_text())
    print(f"loop throughput in process, empty state against {args.state_dir}; {machine()}")
    sessions = fleet_sessions(args.sessions, seed=meta["seed"], vehicles=max(1, args.sessions // 2),
                              base_date=date.fromisoformat(meta["base_date"]))
    rows, rates, cpus = [], {"empty": [], "history": []}, {"empty": [], "history": []}
    for n in range(args.rounds):
        for name, state in (("empty", None), ("history", args.state_dir)):
            rate, cpu, rejected = run(state, sessions, meta, args.retention_days)
            rates[name].append(rate)
            cpus[name].append(cpu)
            rows.append((f"{n + 1}", name, f"{rate:,.0f}/s", f"{cpu:.2f} ms", str(rejected)))
    table(rows, ["round", "state", "readouts/s (wall)", "CPU per readout", "rejected"])
    empty, full = statistics.median(rates["empty"]), statistics.median(rates["history"])
    ratio = full / empty
    print(f"  median: {empty:,.0f}/s empty, {full:,.0f}/s with the history; CPU "
          f"{statistics.median(cpus['empty']):.2f} against {statistics.median(cpus['history']):.2f} "
          f"ms a readout")
    result("loop throughput, history / empty (in process)", ratio, "x",
           f">= {TARGET_RATIO:.2f}", ratio >= TARGET_RATIO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
