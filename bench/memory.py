"""Memory: resident set of the running agent over a long run of CAN frames.

    python bench/memory.py [--frames 1000000] [--key-share 0.25] [--chunk-frames 20000]

A shared, busy bus through an SLCAN adapter: this process writes SLCAN lines to a pty as
fast as the agent takes them (``cbs-agent run --can-interface fastslcan``): background
traffic of other ECUs (random identifiers and data, filtered out by the interface) with
complete key sessions of a large seeded fleet among it (``--key-share`` of all frames), so
every part of the agent works: framing, filtering, assembly, decode, forecast, vehicle
history, proposal, outbox, publishing to a private mosquitto.

RSS (VmRSS from /proc) is sampled after a warm-up (the first ``--warmup`` share of the frames:
imports done, caches and SQLite page caches filled) and at the end; the figures are the end
value (target <= 60 MB) and its change from the warm-up value (target within 5 %).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PtyFeeder,
    fleet_sessions,
    machine,
    result,
    rss_kib,
    slcan_session_lines,
    table,
)
from broker import MosquittoBroker, Subscriber  # noqa: E402
from processes import AgentProcess  # noqa: E402

TARGET_MB = 60.0
TARGET_DRIFT = 0.05
SITE, READER = "bench", "mem"
BACKGROUND_IDS = (0x0A8, 0x0C4, 0x12F, 0x1A0, 0x21A, 0x2CA, 0x330, 0x3B4, 0x4F8, 0x5C0, 0x7DF)


def background_lines(rng: random.Random, count: int) -> list[bytes]:
    return [b"t%03X8%s\r" % (rng.choice(BACKGROUND_IDS), rng.randbytes(8).hex().upper().encode())
            for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--key-share", type=float, default=0.25,
                        help="share of all frames that belong to key sessions")
    parser.add_argument("--chunk-frames", type=int, default=20_000)
    parser.add_argument("--warmup", type=float, default=0.2,
                        help="share of the frames before the first figure: bounded caches fill")
    parser.add_argument("--sessions-pool", type=int, default=3000,
                        help="distinct sessions encoded up front (replayed with new timestamps)")
    args = parser.parse_args(argv)

    print(f"memory: agent RSS over {args.frames:,} CAN frames (fastslcan on a pty, "
          f"{args.key_share:.0%} key-reader frames); {machine()}")
    rng = random.Random(5)
    pool = slcan_session_lines(fleet_sessions(args.sessions_pool, seed=17,
                                              vehicles=max(100, args.sessions_pool // 2)))
    background = background_lines(rng, 5000)
    work = Path(tempfile.mkdtemp(prefix="cbs-bench-mem-"))
    broker = MosquittoBroker(work / "broker").start()
    status = Subscriber.for_broker(broker, f"cbs/v1/{SITE}/{READER}/status").start()
    feeder = PtyFeeder()
    agent = AgentProcess(work, "--can-interface", "fastslcan", "--can-channel", feeder.path,
                         "--can-bitrate", "1000000", "--broker", broker.url, "--site", SITE,
                         "--reader", READER, "--state-dir", str(work / "state"),
                         "--log-level", "WARNING")
    samples: list[tuple[int, float, int]] = []
    ok = False
    try:
        feeder.wait_host()
        status.wait_for(lambda ms: any(m.json().get("state") == "online" for m in ms),
                        timeout_s=30, what="agent online")
        samples.append((0, time.monotonic(), rss_kib(agent.pid)))
        sent = 0
        sessions_sent = 0
        warm_rss: int | None = None
        warm_label = -1
        started = time.monotonic()
        next_session = 0
        while sent < args.frames:
            chunk: list[bytes] = []
            target = min(args.chunk_frames, args.frames - sent)
            while len(chunk) < target:
                if rng.random() < args.key_share / 22:  # ~22 frames per session
                    lines = pool[next_session % len(pool)]
                    next_session += 1
                    sessions_sent += 1
                    chunk.extend(lines)
                else:
                    chunk.append(background[rng.randrange(len(background))])
            feeder.write(b"".join(chunk))
            sent += len(chunk)
            if sent * 10 // args.frames != (sent - len(chunk)) * 10 // args.frames:
                samples.append((sent, time.monotonic(), rss_kib(agent.pid)))  # every 10 %
            if warm_rss is None and sent >= args.frames * args.warmup:
                time.sleep(1.0)  # let the agent finish what it has
                warm_rss = rss_kib(agent.pid)
                samples.append((sent, time.monotonic(), warm_rss))
                warm_label = len(samples) - 1
        elapsed = time.monotonic() - started
        # Let it drain, then measure.
        deadline = time.monotonic() + 120
        while feeder.unread() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
        end_rss = rss_kib(agent.pid)
        samples.append((sent, time.monotonic(), end_rss))
        assert warm_rss is not None
        drift = (end_rss - warm_rss) / warm_rss
        rows = [(f"after {frames:,} frames" + (" (end of warm-up)" if n == warm_label else ""),
                 f"{rss / 1024:.1f}") for n, (frames, _, rss) in enumerate(samples)]
        table(rows, ["", "RSS MB"])
        print(f"  {sent:,} frames ({sessions_sent:,} key sessions) written in {elapsed:.1f} s "
              f"({sent / elapsed:,.0f} frames/s offered as fast as the agent took them)")
        ok = agent.running()
        result("agent RSS at the end", end_rss / 1024, "MB", f"<= {TARGET_MB:.0f} MB",
               end_rss / 1024 <= TARGET_MB and ok)
        result("agent RSS change after warm-up", drift * 100, "%", f"within {TARGET_DRIFT:.0%}",
               abs(drift) <= TARGET_DRIFT and ok)
    finally:
        agent.stop()
        status.stop()
        feeder.close()
        broker.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
