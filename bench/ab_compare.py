#!/usr/bin/env python3
"""Run benchmarks against this checkout and a base revision, alternated, in one run.

    bench/ab_compare.py --base 4978bef --only latency,memory --rounds 3

A change of layout or code is judged against the code before it on the same machine at the
same hour. A busy host slows both sides alike when they alternate. The base revision is checked
out into a temporary git worktree. Each benchmark then runs there and here in turn (order
flipped every round), with ``PYTHONPATH`` pointing at that side, so the agent processes it
starts are that side's code. Each side runs its own copy of the benchmark script, since the
scripts import the agent by its module paths, with this checkout's arguments from
``bench/run_all``. The script prints every ``RESULT`` figure per side (median over rounds) and
the ratio here/base.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import RESULT_LINE, machine, table  # noqa: E402

NUMBER = re.compile(r"^-?[\d,]*\.?\d+")


def _benchmarks() -> dict[str, tuple[str, list[str], list[str]]]:
    scope: dict[str, object] = {"__name__": "run_all_table", "__file__": str(HERE / "run_all")}
    exec(compile((HERE / "run_all").read_text(), "run_all", "exec"), scope)  # noqa: S102
    return scope["BENCHMARKS"]  # type: ignore[return-value]


def _side_python(side: Path) -> str:
    """The base side gets its own virtualenv: its entry points (the ``fastslcan`` CAN
    interface) name its own module paths. Here is this interpreter."""
    if side == ROOT:
        return sys.executable
    venv = side / ".venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-e",
                        f"{side}[test]"], check=True)
    return str(venv / "bin" / "python")


def _run(side: Path, script: str, args: list[str]) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(side))
    done = subprocess.run([_side_python(side), str(side / "bench" / script), *args], cwd=side, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-2000:])
    figures: dict[str, float] = {}
    for name, value, _target, _verdict in RESULT_LINE.findall(done.stdout):
        match = NUMBER.match(value.strip())
        if match:
            figures[name] = float(match.group().replace(",", ""))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--only", required=True, help="comma-separated names from bench/run_all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="run_all's quick sizes")
    args = parser.parse_args(argv)
    table_of = _benchmarks()
    names = [name for name in args.only.split(",") if name]
    unknown = [name for name in names if name not in table_of]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    scratch = Path(tempfile.mkdtemp(prefix="cbs-ab-"))
    base = scratch / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base),
                    args.base], check=True)
    print(f"bench/ab_compare.py: here={ROOT} base={args.base}: {machine()}", flush=True)
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for round_no in range(args.rounds):
            sides = [("base", base), ("here", ROOT)]
            if round_no % 2:
                sides.reverse()
            for name in names:
                script, full, quick = table_of[name]
                for label, side in sides:
                    for figure, value in _run(side, script, quick if args.quick else full).items():
                        results.setdefault((figure, label), []).append(value)
                print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    rows = []
    for figure in sorted({figure for figure, _ in results}):
        before = results.get((figure, "base"), [])
        after = results.get((figure, "here"), [])
        if not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        ratio = f"{a / b:.3f}" if b else "-"
        rows.append([figure, f"{b:,.3f}", f"{a:,.3f}", ratio,
                     " ".join(f"{v:g}" for v in before), " ".join(f"{v:g}" for v in after)])
    table(rows, ["figure", "base (median)", "here (median)", "here/base", "base runs", "here runs"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
