"""Soak: simulator -> agent -> broker for a long while, with faults on, counting every session.

    python bench/soak.py [--minutes 10] [--fault-rate 0.02] [--broker-restart-every-s 30]
                         [--broker-down-s 3] [--kill-every-s 0] [--baudrate 115200]

Real processes, as on the appliance: ``cbs-sim serial`` plays key reads without end on a
pseudo-terminal (behind a stable ``--link`` path) with reader faults (noise, bit flips, cut
sessions, wrong CRCs, ...; ``--fault-rate``); ``cbs-agent run`` reads it; a private mosquitto
(with persistence) is stopped for ``--broker-down-s`` every ``--broker-restart-every-s``; the
agent is optionally killed with SIGKILL every ``--kill-every-s`` and started again; a
subscriber with a persistent session counts what arrives.

At the end the simulator stops, the broker is up, and the soak waits (bounded) until the
agent's outbox has drained, then prints a table:

* sessions sent (the simulator's ground truth), the outcomes it promises;
* received readouts and rejections (distinct ids), duplicates (redeliveries);
* lost — must be 0. Without kills: a promised outcome that never arrived. With kills: a
  readout the agent logged as read (it logs after the outbox commit) that never arrived;
  sessions cut by a kill, or still unread when it came, were never read and do not count (see
  tests/e2e/test_fault_agent_kill.py);
* wrong — an outcome that is not what the ground truth says (other data, other reason), and
  out of reading order (outcomes and sessions are paired in order and by content:
  processes.pair_in_order);
* the agent's resident memory (VmRSS from /proc) after warm-up and at the end: it must not
  grow beyond noise over a long run.

Exit status 0 when nothing was lost, wrong or out of order and the agent never died by itself
(and, for a run of 5 minutes or more, its memory did not grow beyond noise), else 1. The work
directory keeps the logs, the ground truth, ``received.jsonl`` and ``rss.csv``. CI runs a
short version (tests/e2e/test_fault_soak.py) through :func:`run_soak`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "tests" / "e2e", ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from broker import MosquittoBroker, Subscriber
from processes import (
    AgentProcess,
    SimulatorProcess,
    first_deliveries,
    pair_in_order,
    wait_until,
)

SITE, READER = "soak", "desk1"
BASE = f"cbs/v1/{SITE}/{READER}"
SAMPLE_EVERY_S = 0.5
DRAIN_TIMEOUT_S = 120.0
RSS_NOISE_KIB = 4096  # or 10 % of the start, whichever is larger


@dataclass
class SoakOptions:
    seconds: float = 600.0
    fault_rate: float = 0.02
    broker_restart_every_s: float | None = 30.0
    broker_down_s: float = 3.0
    kill_every_s: float | None = None
    interval_s: float = 0.1
    baudrate: int = 115_200
    seed: int = 1
    reconnect_max_s: float | None = None  # the agent's [mqtt] reconnect_max_s (default 60)
    workdir: Path | None = None


@dataclass
class SoakResult:
    options: SoakOptions
    elapsed_s: float = 0.0
    sessions_sent: int = 0
    expected_readouts: int = 0
    expected_rejections: int = 0
    disturbed: int = 0
    received_readouts: int = 0
    received_rejections: int = 0
    duplicates: int = 0
    logged_readouts: int = 0
    lost: int = 0
    wrong: int = 0
    extra: int = 0
    out_of_order: int = 0
    unread_at_kill: int = 0
    broker_restarts: int = 0
    agent_kills: int = 0
    agent_crashes: int = 0
    rss_start_kib: int | None = None
    rss_end_kib: int | None = None
    rss_max_kib: int | None = None
    rss_first_life_kib: int | None = None  # warm, in the first agent's life (kills only)
    problems: list[str] = field(default_factory=list)

    @property
    def rss_growth_kib(self) -> int | None:
        if self.rss_start_kib is None or self.rss_end_kib is None:
            return None
        return self.rss_end_kib - self.rss_start_kib

    @property
    def rss_within_noise(self) -> bool | None:
        growth = self.rss_growth_kib
        if growth is None or self.rss_start_kib is None:
            return None
        return growth <= max(RSS_NOISE_KIB, self.rss_start_kib // 10)

    @property
    def ok(self) -> bool:
        memory_ok = self.options.seconds < 300 or self.rss_within_noise is not False
        return (self.sessions_sent > 0 and self.lost == 0 and self.wrong == 0
                and self.out_of_order == 0 and self.agent_crashes == 0 and memory_ok)


def run_soak(options: SoakOptions) -> SoakResult:
    """Run the soak; returns the figures (never raises for a lost message: it is counted)."""
    work = options.workdir or Path(tempfile.mkdtemp(prefix="cbs-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    result = SoakResult(options)
    broker = MosquittoBroker(work / "broker", persistence=True).start()
    subscriber = Subscriber.for_broker(broker, [f"{BASE}/readout", f"{BASE}/rejected"],
                                       persistent=True, client_id="cbs-soak-subscriber").start()
    link = work / "reader"
    sim = SimulatorProcess(work, "serial", "--seed", str(options.seed), "--sessions", "0",
                           "--interval-s", str(options.interval_s), "--dwell-s", "0.05",
                           "--baudrate", str(options.baudrate), "--vehicles", "2000",
                           "--fault-rate", str(options.fault_rate), "--link", str(link))
    env = {"CBS_MQTT__STATUS_INTERVAL_S": "5"}
    if options.reconnect_max_s is not None:
        env["CBS_MQTT__RECONNECT_MAX_S"] = str(options.reconnect_max_s)
    agent = AgentProcess(work, "--serial", str(link), "--broker", broker.url, "--site", SITE,
                         "--reader", READER, "--state-dir", str(work / "state"), env=env)
    samples: list[tuple[float, int, int]] = []  # (time, rss KiB, agent start number)
    start = time.monotonic()
    try:
        if not _reader_opened(result, agent, sim, link):
            return result
        _drive(options, result, broker, agent, samples, start)
        sim.stop()
        if not broker.running:
            broker.start()
        if not agent.running():
            result.agent_crashes += 1
            result.problems.append(f"the agent had exited at the end:\n{agent.tail()}")
            agent.start()
        _drain(result, subscriber, agent, sim)
        result.elapsed_s = time.monotonic() - start
        messages = subscriber.snapshot()
        with (work / "received.jsonl").open("w") as received:  # for a post-mortem
            for message in messages:
                received.write(json.dumps({"topic": message.topic, "at": message.received_at,
                                           "payload": message.payload.decode()}) + "\n")
        _count(result, sim.truth(), messages, agent.logged_readout_ids())
        _memory(result, samples, agent.starts)
        with (work / "rss.csv").open("w") as csv:  # seconds, VmRSS KiB, agent start number
            csv.writelines(f"{t:.1f},{rss},{start}\n" for t, rss, start in samples)
    finally:
        agent.stop()
        sim.stop()
        subscriber.stop()
        broker.stop()
    if options.workdir is None and result.ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        result.problems.append(f"logs kept in {work}")
    return result


def _reader_opened(result: SoakResult, agent: AgentProcess, sim: SimulatorProcess,
                   link: Path) -> bool:
    """The agent must get the simulator's port; if another process holds it (a stray agent
    still retrying a /dev/pts/N of an earlier run: pty numbers are reused), say who."""
    opened = f"reader {link} connected"
    try:
        wait_until(lambda: opened in agent.log_text() or "Could not exclusively lock"
                   in agent.log_text(), 60, "the agent to open the reader", interval_s=0.2)
    except AssertionError as exc:
        result.problems.append(f"{exc}:\n{agent.tail(10)}")
        return False
    if opened in agent.log_text():
        return True
    pty = sim.pty_path if hasattr(sim, "pty_path") else str(link.resolve())
    holders = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if str(fd.readlink()) == pty:
                holders.append(fd.parts[2])
        except OSError:
            continue
    result.problems.append(f"another process holds the simulator's pty {pty} (pids "
                           f"{sorted(set(holders))}): a stray agent of an earlier run? aborted")
    return False


def _drive(options: SoakOptions, result: SoakResult, broker: MosquittoBroker,
           agent: AgentProcess, samples: list[tuple[float, int, int]], start: float) -> None:
    """The fault schedule, until the time is up; samples the agent's memory meanwhile."""
    restart_every = options.broker_restart_every_s
    kill_every = options.kill_every_s
    next_restart = start + restart_every if restart_every else None
    next_kill = start + kill_every * 1.5 if kill_every else None  # offset from the restarts
    broker_back_at: float | None = None
    end = start + options.seconds
    while (now := time.monotonic()) < end:
        if broker_back_at is not None and now >= broker_back_at:
            broker.start()
            broker_back_at = None
        if next_restart is not None and now >= next_restart and broker_back_at is None:
            broker.stop()
            result.broker_restarts += 1
            broker_back_at = now + options.broker_down_s
            next_restart = now + (restart_every or 0)
        if next_kill is not None and now >= next_kill:
            if agent.running():
                agent.kill()
                result.agent_kills += 1
            agent.start()
            next_kill = now + (kill_every or 0)
        if not agent.running():  # died by itself: count it, start it again, go on
            result.agent_crashes += 1
            result.problems.append(f"the agent exited by itself:\n{agent.tail(20)}")
            agent.start()
        rss = agent.rss_kib()
        if rss is not None:
            samples.append((now - start, rss, agent.starts))
        time.sleep(SAMPLE_EVERY_S)
    if broker_back_at is not None:
        broker.start()


def _drain(result: SoakResult, subscriber: Subscriber, agent: AgentProcess,
           sim: SimulatorProcess) -> None:
    """Wait until every promised outcome (or, with kills, every logged readout) arrived, or
    until nothing more arrives for a while."""
    def settled() -> bool:
        payloads, _ = first_deliveries(subscriber.snapshot())
        ids = {p.get("readout_id") for p in payloads}
        if not set(agent.logged_readout_ids()) <= ids:
            return False
        if result.agent_kills:
            return True
        promised = sum(1 for r in sim.truth() if not r["disturbed"])
        return len(payloads) >= promised

    try:
        wait_until(settled, DRAIN_TIMEOUT_S, "the outbox to drain", interval_s=0.2)
    except AssertionError as exc:
        result.problems.append(str(exc))


def _count(result: SoakResult, truth: list[dict[str, Any]], messages: list[Any],
           logged: list[str]) -> None:
    payloads, counts = first_deliveries(messages)
    readouts = [p for p in payloads if "readout_id" in p]
    result.sessions_sent = len(truth)
    result.expected_readouts = sum(1 for r in truth if r["expected"] == "readout")
    result.expected_rejections = len(truth) - result.expected_readouts
    result.disturbed = sum(1 for r in truth if r["disturbed"])
    result.received_readouts = len(readouts)
    result.received_rejections = len(payloads) - len(readouts)
    result.duplicates = sum(counts.values()) - len(counts)
    result.logged_readouts = len(set(logged))
    unsent = set(logged) - {p["readout_id"] for p in readouts}
    if unsent:
        result.problems.append(f"logged as read, never arrived: {sorted(unsent)[:10]}")

    pairing = pair_in_order(truth, payloads)
    unmatched = list(pairing.unpaired)
    # The simulator stops mid-read at the end: the agent may report that one cut session.
    if unmatched and unmatched[-1][0] == len(payloads) - 1:
        result.extra = 1
        unmatched.pop()
    result.wrong = len(unmatched)
    result.out_of_order = len(pairing.late)
    result.problems += [problem for _, problem in unmatched[:5]]
    result.problems += [problem for _, problem in pairing.late[:5]]
    missing = [r["n"] for r in pairing.missing(truth)]
    if result.agent_kills == 0:
        result.lost = max(len(unsent), len(missing))
        if missing:
            result.problems.append(f"sessions that never arrived: {missing[:10]}")
    else:
        # Read (logged) is the promise; a session still unread when a kill came was not read.
        result.lost = len(unsent)
        result.unread_at_kill = len(missing)


def _memory(result: SoakResult, samples: list[tuple[float, int, int]], last_start: int) -> None:
    """Median VmRSS over the first and the last tenth of the last agent's life (after a
    warm-up of 10 % of it, at least 2 s: imports, caches and SQLite pages settle); with kills,
    also the first life's, since what a restarted agent loads can matter more than growth."""
    life = [(t, rss) for t, rss, start in samples if start == last_start]
    if len(life) < 4:
        return
    t0, t1 = life[0][0], life[-1][0]
    span = t1 - t0
    warm = t0 + max(2.0, span * 0.1)
    first = [rss for t, rss in life if warm <= t <= warm + max(span * 0.1, 1.0)]
    last = [rss for t, rss in life if t >= t1 - max(span * 0.1, 1.0)]
    if first and last:
        result.rss_start_kib = int(statistics.median(first))
        result.rss_end_kib = int(statistics.median(last))
    result.rss_max_kib = max(rss for _, rss, _ in samples)
    first_life = [(t, rss) for t, rss, start in samples if start == 1]
    if last_start > 1 and len(first_life) >= 4:
        warm = first_life[0][0] + 2.0
        result.rss_first_life_kib = int(statistics.median(
            [rss for t, rss in first_life if warm <= t <= warm + 5.0] or [first_life[-1][1]]))
        if result.rss_start_kib and result.rss_start_kib > result.rss_first_life_kib * 1.25:
            result.problems.append(
                f"the last agent started with {result.rss_start_kib // 1024} MiB, the first with "
                f"{result.rss_first_life_kib // 1024} MiB: memory at start-up grows with the "
                f"state it finds (see docs/robustness.md)")


def format_table(result: SoakResult) -> str:
    o = result.options
    def mib(kib: int | None) -> str:
        return "-" if kib is None else f"{kib / 1024:.1f} MiB"
    growth = result.rss_growth_kib
    verdict = {None: "not measured", True: "within noise", False: "GROWING"}[result.rss_within_noise]
    rows = [
        ("duration", f"{result.elapsed_s:.0f} s (faults {o.seconds:.0f} s, then drain)"),
        ("reader faults", f"rate {o.fault_rate} per fault per read, baud {o.baudrate or 'unpaced'}"),
        ("broker restarts", f"{result.broker_restarts} (every {o.broker_restart_every_s} s, "
                            f"{o.broker_down_s} s down)" if o.broker_restart_every_s else "off"),
        ("agent SIGKILLs", f"{result.agent_kills} (every {o.kill_every_s} s)"
                           if o.kill_every_s else "off"),
        ("sessions sent", f"{result.sessions_sent}"),
        ("  expected readouts", f"{result.expected_readouts}"),
        ("  expected rejections", f"{result.expected_rejections}"),
        ("  disturbed by a kill", f"{result.disturbed}"),
        ("received readouts", f"{result.received_readouts} distinct"),
        ("received rejections", f"{result.received_rejections} distinct"),
        ("duplicates", f"{result.duplicates}"),
        ("readouts logged as read", f"{result.logged_readouts}"),
        ("LOST", f"{result.lost}"),
        ("wrong", f"{result.wrong}"),
        ("out of reading order", f"{result.out_of_order}"),
        ("cut by the end", f"{result.extra}"),
        ("unread when killed", f"{result.unread_at_kill} (never read: no promise)"
                               if o.kill_every_s else "-"),
        ("agent died by itself", f"{result.agent_crashes}"),
        ("agent RSS start", mib(result.rss_start_kib)),
        ("agent RSS end", mib(result.rss_end_kib)),
        ("agent RSS max", mib(result.rss_max_kib)),
        ("agent RSS, first life", mib(result.rss_first_life_kib) if o.kill_every_s else "-"),
        ("agent RSS growth", "-" if growth is None else f"{growth / 1024:+.1f} MiB ({verdict})"),
        ("result", "PASS" if result.ok else "FAIL"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"soak: serial reader -> cbs-agent -> mosquitto, seed {o.seed}"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    lines += [f"  ! {problem}" for problem in result.problems]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long faults run (10)")
    parser.add_argument("--fault-rate", type=float, default=0.02,
                        help="reader fault probability per fault per read (0.02)")
    parser.add_argument("--broker-restart-every-s", type=float, default=30.0,
                        help="stop and restart the broker this often; 0: never (30)")
    parser.add_argument("--broker-down-s", type=float, default=3.0, help="outage length (3)")
    parser.add_argument("--kill-every-s", type=float, default=0.0,
                        help="SIGKILL and restart the agent this often; 0: never (0)")
    parser.add_argument("--interval-s", type=float, default=0.1,
                        help="idle time between key reads (0.1)")
    parser.add_argument("--baudrate", type=int, default=115_200, help="0: unpaced (115200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reconnect-max-s", type=float, default=None,
                        help="the agent's MQTT reconnect cap (default: the agent's, 60)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep logs here (default: a temporary directory, removed on PASS)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    options = SoakOptions(
        seconds=args.minutes * 60, fault_rate=args.fault_rate,
        broker_restart_every_s=args.broker_restart_every_s or None,
        broker_down_s=args.broker_down_s, kill_every_s=args.kill_every_s or None,
        interval_s=args.interval_s, baudrate=args.baudrate, seed=args.seed,
        reconnect_max_s=args.reconnect_max_s, workdir=args.workdir)
    result = run_soak(options)
    print(format_table(result))
    if args.json:
        figures = {k: v for k, v in vars(result).items() if k not in ("options", "problems")}
        print(json.dumps({**figures, "rss_growth_kib": result.rss_growth_kib, "ok": result.ok}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
