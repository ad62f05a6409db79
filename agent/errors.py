"""The agent's errors, rooted at :class:`protocols.errors.CbsError`.

    CbsError (protocols.errors)
    +-- ProtocolError                 (protocols.errors) a bad value given to an encoder
    +-- ConfigError (+ ValueError)    bad configuration, found at start-up; the CLI exits 2
    +-- OutboxError                   the durable outbox cannot store, read or delete a message
    +-- ReaderError                   the key reader (serial port / CAN interface) cannot be opened
    |   +-- ReaderDisconnected (+ TransientError, OSError)
    |                                 the open reader went away; the service loop reopens it
    +-- CaptureError                  a capture file for ``decode`` cannot be used
    |   +-- CaptureUnreadableError    not there, not readable, unknown format: nothing was read
    |   +-- CaptureCorruptError       truncated or corrupt: what came before was read
    +-- PublisherError                the MQTT publisher cannot work as configured
    +-- BrokerUnreachableError        a command-line client cannot reach the broker, or is
                                      refused; the CLI exits 1 with the reason
    +-- DiagnosticsError              the vehicle test cannot run (CAN interface cannot be opened)
        +-- InterfaceLost (+ TransientError, OSError)
                                      the diagnostics interface went away during a test

    TransientError                    marker mixin: "try again later"; the service loop retries
                                      an operation that raised it, with backoff, instead of stopping

Start-up failures (``ConfigError``) differ from run-time failures: a run-time failure is
counted, logged and reported in the status, and the agent keeps reading. Third-party errors
(``sqlite3``, ``serial``, ``can``, ``paho``) are translated into these with ``raise ... from``
so the cause stays in the traceback.
"""

from __future__ import annotations

from protocols.errors import CbsError

__all__ = [
    "CbsError",
    "ConfigError",
    "OutboxError",
    "CaptureCorruptError",
    "CaptureError",
    "CaptureUnreadableError",
    "BrokerUnreachableError",
    "PublisherError",
    "ReaderDisconnected",
    "ReaderError",
    "TransientError",
    "DiagnosticsError",
    "InterfaceLost",
]


class TransientError(Exception):
    """Marker mixin for failures that may go away by themselves (a cable pulled, a broker
    restarting). The service loop retries the operation instead of giving up."""


class ConfigError(CbsError, ValueError):
    """The configuration is unusable. Raised at start-up with one line that names the option
    (or file) and what is wrong with it; the CLI prints it and exits with status 2."""


class OutboxError(CbsError):
    """The durable outbox failed: disk full, read-only state directory, corrupt database.
    The message it names was *not* committed; the caller keeps it and reports the failure."""



class ReaderError(CbsError):
    """The key reader (serial port or CAN interface) failed."""


class ReaderDisconnected(ReaderError, TransientError, OSError):
    """The key reader went away (unplugged, interface down); the service loop reopens it."""


class PublisherError(CbsError):
    """The MQTT publisher cannot do what was asked (e.g. started twice, TLS files unusable)."""


class BrokerUnreachableError(CbsError):
    """A command-line client (``watch``, ``ha remove``) cannot reach the broker, is refused
    by it, or gets no acknowledgement in time; the message says which (the CLI exits 1)."""


class CaptureError(CbsError):
    """A capture given to ``cbs-agent decode`` cannot be used; the message says where."""


class CaptureUnreadableError(CaptureError):
    """Nothing could be read: the file is missing, unreadable or of an unknown format
    (``decode`` exits 2)."""


class CaptureCorruptError(CaptureError):
    """The capture is truncated or corrupt after some records; what came before was decoded
    (``decode`` exits 1)."""


class DiagnosticsError(CbsError):
    """The vehicle test cannot run: its CAN interface cannot be opened or used."""


class InterfaceLost(DiagnosticsError, TransientError, OSError):
    """The diagnostics CAN interface went away during a test (unplugged, adapter gone):
    the test ends with outcome ``aborted`` and keeps what it had read."""
