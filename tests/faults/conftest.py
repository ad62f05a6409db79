"""The fault-injection suite shares the end-to-end helpers (tests/e2e/processes.py,
expectations.py) and reaps every process it started after each test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from processes import stop_all  # noqa: E402


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    yield
    stop_all()
