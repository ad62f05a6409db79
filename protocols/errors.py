"""The root of the project's exception tree and the protocol family.

    CbsError                      root of everything the project raises on purpose
    +-- ProtocolError             a malformed wire value given to an encoder (a caller bug)
    +-- MalformedResponseError    a diagnostic response of the wrong form (uds.py, obd2.py)
    +-- (agent.errors)            ConfigError, OutboxError, ReaderError, ... see agent/errors.py

Parsers never raise on bad input: bad bytes and bad sessions are *events* (counted and
published), not exceptions.
"""

from __future__ import annotations


class CbsError(Exception):
    """Root of every error the project raises deliberately."""


class ProtocolError(CbsError, ValueError):
    """A value cannot be put on the wire (out of range for its field, wrong length, ...)."""


class MalformedResponseError(CbsError, ValueError):
    """A diagnostic response (UDS or OBD-II) that does not have the form its request expects:
    too short, the wrong service or identifier echoed, a count that does not match. The only
    exception the response parsers of protocols/uds.py and protocols/obd2.py raise."""
