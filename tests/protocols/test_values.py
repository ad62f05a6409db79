"""``fast_init`` keeps every promise of a frozen slots dataclass (protocols/values.py)."""

from __future__ import annotations

import dataclasses

import pytest

from protocols.can_frame import CanFrame
from protocols.key_session import CheckControlMessage, CheckControlStatus, ServiceItem
from protocols.values import fast_init


def test_fields_defaults_keywords_and_positions() -> None:
    item = ServiceItem(3, 0x10, None, 1200, 2027, 5, 2)
    assert (item.index, item.code, item.availability_pct, item.remaining_km, item.due_year,
            item.due_month, item.service_count, item.history) == (3, 0x10, None, 1200, 2027, 5, 2, None)
    assert item == ServiceItem(index=3, code=0x10, availability_pct=None, remaining_km=1200,
                               due_year=2027, due_month=5, service_count=2, history=None)
    assert CanFrame(0x6F1, b"\0" * 8).timestamp == 0.0
    with pytest.raises(TypeError):
        ServiceItem(3, 0x10)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        CanFrame(0x6F1, b"", 0.0, 1)  # type: ignore[call-arg]


def test_still_frozen_hashable_and_replaceable() -> None:
    cc = CheckControlMessage(0, 0x123, CheckControlStatus.ACTIVE, 5000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cc.cc_id = 1  # type: ignore[misc]
    assert hash(cc) == hash(CheckControlMessage(0, 0x123, CheckControlStatus.ACTIVE, 5000))
    assert dataclasses.replace(cc, mileage_km=6000).mileage_km == 6000
    assert repr(cc) == ("CheckControlMessage(index=0, cc_id=291, status=<CheckControlStatus.ACTIVE: 1>,"
                        " mileage_km=5000)")


def test_refuses_what_it_cannot_build() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        x: list[int] = dataclasses.field(default_factory=list)

    for cls in (Mutable, WithFactory):
        with pytest.raises(TypeError):
            fast_init(cls)
