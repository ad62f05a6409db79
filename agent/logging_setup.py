"""Log handlers for the CLI (the only place that configures logging): plain text or JSON lines.

Everything a log line carries may come from a device (a reader's fault text, a firmware name,
a port's error) or a broker, so both formats escape control characters in the message: a
reader that sends ``\\n`` and a fake ``readout ...`` line, a NUL or an ESC sequence cannot
start a line of its own, cut the line short or repaint an operator's terminal. See
:func:`escape_controls`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from types import TracebackType
from typing import TextIO

_ExcInfo = (tuple[type[BaseException], BaseException, TracebackType | None]
            | tuple[None, None, None])

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0, DEL and C1 controls, the Unicode line and paragraph separators and the bidirectional
# overrides (which reorder what a terminal shows): each becomes a visible escape.
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
             *range(0x2066, 0x206A)]
_ESCAPES = {code: _NAMED.get(chr(code), f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
            for code in _CONTROLS}
_ESCAPES_KEEPING_NEWLINE = {**_ESCAPES}
del _ESCAPES_KEEPING_NEWLINE[ord("\n")]


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x00``,
    ``\\x1b``, ``\\u2028``). ``keep_newlines`` leaves line breaks (a traceback's)."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPES_KEEPING_NEWLINE if keep_newlines else _ESCAPES)


class EscapingFormatter(logging.Formatter):
    """:class:`logging.Formatter` whose line cannot be split or coloured by its arguments."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:
        return escape_controls(super().formatException(ei), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return escape_controls(super().formatStack(stack_info), keep_newlines=True)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any).
    JSON escapes C0 controls itself; the message is escaped as in the text format as well, so
    that a viewer printing the ``message`` field shows the same text."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": escape_controls(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = escape_controls(self.formatException(record.exc_info),
                                                 keep_newlines=True)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text",
                      stream: TextIO | None = None) -> None:
    """One handler on the root logger, writing to ``stream`` (default: stderr)."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    if fmt == "json":
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
