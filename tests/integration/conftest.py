"""A desk as integrators see it: a private broker, a key reader on a pty and the real agent
(site S1, reader desk1), shared by the subscriber-example and reception-view tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import MosquittoBroker
from site_rig import AgentRun, PtyKeyReader

SITE, READER = "S1", "desk1"


@pytest.fixture
def site(tmp_path: Path, make_broker) -> Iterator[tuple[MosquittoBroker, PtyKeyReader, AgentRun]]:
    broker = make_broker()
    reader = PtyKeyReader()
    agent = AgentRun.serial(tmp_path / "agent", reader, site=SITE, name=READER,
                            broker_url=broker.url)
    try:
        reader.wait_connected()
        yield broker, reader, agent
    except AssertionError:
        print("--- agent ---\n" + agent.tail())
        raise
    finally:
        agent.stop()
        reader.close()
