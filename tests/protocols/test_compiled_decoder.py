"""The assembler's compiled decoders give exactly what cantools' ``decode_message`` gives:
the same keys, values and value types (``NamedSignalValue`` for a choice, int or float),
with and without choices, for any 8 data bytes of every key-reader message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbc import key_reader_database
from protocols.key_messages import MESSAGE_NAMES, message_decoders

DB = key_reader_database()
DECODERS = message_decoders(DB)


def _same(ours: dict, theirs: dict) -> None:
    assert ours == theirs
    assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}


@pytest.mark.parametrize("frame_id", sorted(MESSAGE_NAMES))
@settings(max_examples=300)
@given(data=st.binary(min_size=8, max_size=8))
def test_same_as_cantools(frame_id: int, data: bytes) -> None:
    _same(DECODERS.data[frame_id](data), DB.decode_message(frame_id, data, decode_choices=True))
    _same(DECODERS.plain[frame_id](data), DB.decode_message(frame_id, data, decode_choices=False))


@pytest.mark.parametrize("frame_id", sorted(MESSAGE_NAMES))
def test_sentinels_and_extremes(frame_id: int) -> None:
    for data in (bytes(8), b"\xff" * 8, b"\x80" * 8, b"\x7f" * 8, bytes(range(8))):
        _same(DECODERS.data[frame_id](data), DB.decode_message(frame_id, data))


def test_decoders_are_built_once_per_database() -> None:
    assert message_decoders(DB) is DECODERS
