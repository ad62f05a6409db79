"""Shared helpers of the benchmarks under bench/.

* real processes and a private broker come from the test helpers (tests/broker.py,
  tests/e2e/processes.py), so a benchmark runs the agent exactly as the e2e tests do;
* :func:`serial_session_bytes` / :func:`slcan_session_lines` pre-encode fleet sessions, and
  :class:`PtyFeeder` writes them to a pseudo-terminal the agent opens like a real port, so
  a benchmark can offer load faster than the simulators (which encode as they play) can;
* :func:`result` prints the ``RESULT`` line that ``bench/run_all`` collects: one figure, its
  target and whether it was met.

Nothing here is imported by the agent.
"""

from __future__ import annotations

import os
import platform
import re
import select
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _extra in (ROOT / "tests" / "e2e", ROOT / "tests", ROOT):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the machine and the figures ------------------------------------------------------------


def machine() -> str:
    """``nproc``, the CPU model and the Python version, for the record."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load ?"
    return (f"{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {model}, "
            f"Python {platform.python_version()}, {load}")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank on the sorted values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def result(name: str, value: float, unit: str, target: str, ok: bool | None) -> None:
    """One figure for bench/run_all: ``RESULT | name | value unit | target | PASS/MISS``
    (``ok`` None: informative, no target)."""
    verdict = "info" if ok is None else ("PASS" if ok else "MISS")
    print(f"RESULT | {name} | {value:,.2f} {unit} | {target or '-'} | {verdict}", flush=True)


RESULT_LINE = re.compile(r"^RESULT \| (.*?) \| (.*?) \| (.*?) \| (\w+)$", re.MULTILINE)


def table(rows: Iterable[Sequence[object]], header: Sequence[str]) -> None:
    """Print a plain aligned table."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(header, widths))))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))


# -- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def user_system_seconds(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system) per thread name of a process (threads of one name summed)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


# -- pre-encoded sessions -------------------------------------------------------------------


def fleet_sessions(count: int, *, seed: int = 7, vehicles: int = 2000, start: int = 0,  # type: ignore[no-untyped-def]
                   base_date=None):
    """``count`` valid sessions of a seeded fleet (distinct content, so distinct readout ids);
    ``base_date`` as ``cbs-sim --base-date`` (None: today)."""
    from simulators.fleet import Fleet

    return list(Fleet(seed, base_date, vehicle_count=vehicles).sessions(count, start=start))


def serial_session_bytes(sessions: Iterable[object]) -> list[bytes]:
    """Per session what the serial reader sends: KEY_PRESENT, the CAN_FRAMEs, KEY_REMOVED."""
    from protocols.encoder import encode_session
    from protocols.serial_framing import FrameType, encode_can_frame, encode_frame

    present, removed = encode_frame(FrameType.KEY_PRESENT), encode_frame(FrameType.KEY_REMOVED)
    return [present + b"".join(encode_can_frame(f) for f in encode_session(s)) + removed  # type: ignore[arg-type]
            for s in sessions]


def slcan_session_lines(sessions: Iterable[object]) -> list[list[bytes]]:
    """Per session the SLCAN lines (``tIIILDD..\\r``) of its frames."""
    from protocols.encoder import encode_session

    return [[b"t%03X%d%s\r" % (f.arbitration_id, len(f.data), f.data.hex().upper().encode())
             for f in encode_session(s)] for s in sessions]  # type: ignore[arg-type]


class PtyFeeder:
    """The device side of a pseudo-terminal, fed by the benchmark (simulators/pty_port.py).

    :meth:`wait_host` blocks until the agent holds the port open; :meth:`write` writes whole
    buffers, waiting for room; :meth:`drain_host_bytes` discards what the agent writes (PING,
    SLCAN set-up commands)."""

    def __init__(self) -> None:
        from simulators.pty_port import PtyPort

        self.port = PtyPort()
        self.path = self.port.open()

    def wait_host(self, timeout_s: float = 30.0, settle_s: float = 0.5) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.port.host_connected():
            if time.monotonic() > deadline:
                raise TimeoutError(f"nobody opened {self.path} within {timeout_s} s")
            time.sleep(0.02)
        # pyserial flushes its input on open and the agent may still be setting up.
        end = time.monotonic() + settle_s
        while time.monotonic() < end:
            self.drain_host_bytes()
            time.sleep(0.02)

    def drain_host_bytes(self) -> None:
        while self.port.read():
            pass

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.port.write_some(view)
            if written:
                view = view[written:]
            else:
                self.drain_host_bytes()
                self.port.wait_writable(0.05)

    def writable_now(self) -> bool:
        fd = self.port._fd()  # noqa: SLF001 - our own pty
        return bool(select.select([], [fd], [], 0)[1])

    def unread(self) -> int:
        return self.port.unread_bytes()

    def close(self) -> None:
        self.port.close()
