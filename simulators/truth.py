"""The ground-truth file: one JSON line per session a simulator played.

A record is written and flushed only after the last byte of its session (and of any quiet
pause its outcome depends on) was written to the port, so a consumer that sees the record
knows the agent has everything it needs to produce the outcome. Keys::

    n          1, 2, ... in the order sessions were played (rereads and retries included)
    transport  "serial" | "can"
    seq        START's SessionSeq
    key_id     START's KeyId
    vin        the vehicle's VIN (also when a fault kept it from the agent)
    expected   "readout" | "rejected"
    reason     null | the rejection reason code the agent must publish
    faults     the faults applied to this session (names from ``cbs-sim faults``)
    reread     true when sent in answer to REREAD
    disturbed  true when the host was not listening for part of the session (port closed,
               SLCAN channel closed): the expectation then does not hold
    detail     the reference assembler's detail text for a rejection (informative only)
    at         wall-clock time (epoch seconds) when the session's last byte was written
    session    protocols.key_session_json.session_to_dict of what the reader meant to send
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from protocols.key_session_json import session_to_dict
from simulators.transmission import PlayedSession


def truth_record(played: PlayedSession, *, n: int, transport: str, disturbed: bool,
                 at: float) -> dict[str, Any]:
    s = played.session
    return {
        "n": n,
        "transport": transport,
        "seq": s.session_seq,
        "key_id": s.key_id,
        "vin": s.vin,
        "expected": played.expected,
        "reason": played.reason,
        "faults": list(played.faults),
        "reread": played.reread,
        "disturbed": disturbed,
        "detail": played.detail,
        "at": round(at, 6),
        "session": session_to_dict(s),
    }


class TruthWriter:
    """Appends records to a JSON-lines file (or nowhere) and flushes each one."""

    def __init__(self, path: str | Path | None) -> None:
        self._file: IO[str] | None = None
        if path is not None:
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        self.count += 1
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_truth(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a truth file (a line still being written is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
