"""What the agent must publish for a simulator's ground-truth record."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.contract.payloads import build_readout
from agent.domain.forecast import ForecastSettings, forecast_session
from agent.domain.models import to_json
from protocols.key_session_json import session_from_dict

# Depend on history or on the moment of reading, so compared separately.
VOLATILE = {"readout_id", "read_at", "services", "estimate", "summary", "proposal", "site", "reader",
            "transport"}


def expected_readout(record: dict[str, Any], received: dict[str, Any]) -> dict[str, Any]:
    """The readout the record's session must produce, read at the received read_at."""
    session = session_from_dict(record["session"])
    read_at = datetime.fromisoformat(received["read_at"].replace("Z", "+00:00"))
    result = forecast_session(session, read_at, [], ForecastSettings())
    readout = build_readout(session, site=received["site"], reader=received["reader"],
                            transport=received["transport"], read_at=read_at, forecast=result,
                            readout_id=received["readout_id"])
    return json.loads(to_json(readout))


def assert_readout_matches(record: dict[str, Any], received: dict[str, Any]) -> None:
    """Every key-derived field exactly as the simulator sent it; services without forecasts."""
    expected = expected_readout(record, received)
    for key in expected.keys() - VOLATILE:
        assert received[key] == expected[key], f"{key} differs for VIN {record['vin']}"
    strip = lambda items: [{k: v for k, v in i.items() if k != "forecast"} for i in items]  # noqa: E731
    assert strip(received["services"]) == strip(expected["services"])
    assert all(s["forecast"] is None or set(s["forecast"]) >= {"status", "due_date", "basis"}
               for s in received["services"])
