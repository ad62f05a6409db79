"""The DBC files of the key reader, shipped as package data, and the loader that caches them.

The DBC is the single source of truth for CAN layouts: everything that decodes or encodes
key-reader frames asks :func:`key_reader_database` for its ``cantools`` database.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import cantools
from cantools.database.can import Database

from protocols.errors import CbsError

KEY_READER_DBC = "key_reader.dbc"


class DbcError(CbsError, ValueError):
    """A DBC file could not be read or parsed; the message names the file and the problem."""


def load_dbc_text(text: str, *, source: str = "<string>") -> Database:
    """Parse DBC text (the pure part of loading); raises :class:`DbcError` naming ``source``."""
    try:
        database = cantools.database.load_string(text, database_format="dbc", strict=True)
    except Exception as exc:  # cantools raises a zoo of parser errors; we give one
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DbcError(f"{source}: invalid DBC: {first_line}") from exc
    if not isinstance(database, Database):  # a diagnostics (CDD) database cannot be a DBC
        raise DbcError(f"{source}: invalid DBC: not a CAN database")
    return database


def load_dbc_file(path: str | Path) -> Database:
    """Read and parse a DBC file; raises :class:`DbcError` for an unreadable or broken file."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise DbcError(f"{path}: cannot read DBC file: {exc}") from exc
    return load_dbc_text(text, source=str(path))


@lru_cache(maxsize=8)
def key_reader_database(path: str | None = None) -> Database:
    """The key reader's database: the shipped one, or the file at ``path`` when given."""
    if path is not None:
        return load_dbc_file(path)
    text = resources.files(__name__).joinpath(KEY_READER_DBC).read_text(encoding="utf-8")
    return load_dbc_text(text, source=f"dbc/{KEY_READER_DBC}")
