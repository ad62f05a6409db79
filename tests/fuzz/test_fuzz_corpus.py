"""Every input that once found a bug (tests/fuzz/corpus/<target>/, kept by bench/fuzz_long.py
and by hand) is replayed on its target: a regression shows here, in the normal suite. The
seeds of the long run must pass their targets too."""

from __future__ import annotations

from pathlib import Path

import pytest
from input_targets import TARGETS, corpus_files, seeds

CORPUS = corpus_files()


@pytest.mark.parametrize(("target", "path"), CORPUS, ids=[f"{t}/{p.name}" for t, p in CORPUS])
def test_corpus_input_passes(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_pass(target: str) -> None:
    for seed in seeds(target):
        TARGETS[target](seed)


def test_the_corpus_covers_the_defects_found() -> None:
    assert {"config_text", "config_env", "slcan", "log_line", "capture"} <= {t for t, _ in CORPUS}
