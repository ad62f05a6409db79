"""No process outlives its test: an agent left running would keep reopening its /dev/pts/N and
steal bytes from whatever test gets that pseudo-terminal next."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from processes import stop_all


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    yield
    stop_all()
