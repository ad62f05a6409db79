"""Fuzz every input path for as long as you like; keep what finds a bug as a regression test.

    python bench/fuzz_long.py                        # 10 minutes over every target
    python bench/fuzz_long.py --minutes 480          # a night
    python bench/fuzz_long.py --targets capture,slcan --minutes 30 --seed 7

The targets are those of tests/fuzz/input_targets.py (serial framing, session assembly, SLCAN
lines, capture files of every format, configuration files and ``CBS_*`` variables, log lines
from device text). Hypothesis drives them, in rounds of ``--batch`` examples per target,
round-robin until the time is up; half the inputs are random bytes, half mutations of the
target's valid seeds and of its corpus (so deep states are reached and what once failed is
varied).

A failure is shrunk by hypothesis, printed with its traceback and written to
``tests/fuzz/corpus/<target>/<sha1>.bin`` (``--corpus`` to write elsewhere), where
``tests/fuzz/test_fuzz_corpus.py`` replays it in the normal suite: fix the bug, keep the file.
The target is then left alone for the rest of the run (it would find the same bug again).

Exit status 0 when nothing was found, 1 otherwise. Prints one line per target at the end:
examples run, failures kept.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fuzz"), str(ROOT / "tests")]

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from input_targets import CORPUS, TARGETS, corpus_files, mutate, seeds  # noqa: E402


def _inputs(target: str) -> st.SearchStrategy[bytes]:
    known = seeds(target) + [path.read_bytes() for name, path in corpus_files() if name == target]
    mutated = st.tuples(st.sampled_from(known), st.integers(0, 2**32 - 1)).map(
        lambda pair: mutate(pair[0], random.Random(pair[1])))
    return st.one_of(st.binary(max_size=4096), mutated)


def run_round(target: str, examples: int, round_seed: int) -> tuple[int, bytes | None, str]:
    """``examples`` inputs on ``target``; (examples run, the shrunk failing input, traceback)."""
    function = TARGETS[target]
    failing: list[bytes] = []
    ran = 0

    @seed(round_seed)
    @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(_inputs(target))
    def check(data: bytes) -> None:
        nonlocal ran
        ran += 1
        try:
            function(data)
        except BaseException:
            failing.append(data)  # the last one hypothesis tries is the shrunk one
            raise

    try:
        check()
    except Exception:
        return ran, (failing[-1] if failing else b""), traceback.format_exc(limit=8)
    return ran, None, ""


def keep(directory: Path, target: str, data: bytes) -> Path:
    folder = directory / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha1(data).hexdigest()[:12]}.bin"
    path.write_bytes(data)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated, of: {', '.join(TARGETS)}")
    parser.add_argument("--batch", type=int, default=200, help="examples per round (200)")
    parser.add_argument("--seed", type=int, default=None, help="first round's seed")
    parser.add_argument("--corpus", type=Path, default=CORPUS,
                        help="where failing inputs go (default tests/fuzz/corpus)")
    args = parser.parse_args(argv)
    targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = [name for name in targets if name not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.minutes * 60
    ran = dict.fromkeys(targets, 0)
    kept: dict[str, list[Path]] = {name: [] for name in targets}
    active = list(targets)
    while active and time.monotonic() < deadline:
        for target in list(active):
            if time.monotonic() >= deadline:
                break
            count, failing, trace = run_round(target, args.batch, rng.randrange(2**32))
            ran[target] += count
            if failing is not None:
                path = keep(args.corpus, target, failing)
                kept[target].append(path)
                active.remove(target)
                print(f"\n== {target}: FAILURE after {ran[target]} examples, kept as {path}\n"
                      f"{trace}", flush=True)
    print(f"\nfuzzed for {args.minutes:g} min")
    for target in targets:
        print(f"{target:<12} {ran[target]:>9,} examples  {len(kept[target])} failure(s) kept")
    return 1 if any(kept.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
