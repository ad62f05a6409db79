"""Hypothesis strategies for valid key-reader values, shared by the protocol tests and others.

Every strategy covers the whole range the protocol allows for its field (section 1 of
shared/spec/key-reader-protocol.md) and nothing outside it, so that any value drawn here is a
session the assembler must accept and give back unchanged::

    from strategies import key_sessions          # inside tests/protocols (pytest puts it on sys.path)
    from tests.protocols.strategies import key_sessions   # from elsewhere, under ``python -m pytest``

"Not available" fields are drawn as ``None`` (never as their sentinel), and floats are drawn
as their raw wire integer mapped through the spec's scale, so they survive the round trip
exactly.
"""

from __future__ import annotations

import os
from datetime import date

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from protocols.cbs_types import CODE_TO_TYPE
from protocols.key_session import (
    CheckControlMessage,
    CheckControlStatus,
    KeySession,
    ServiceHistory,
    ServiceItem,
    StoredDtc,
    UsageData,
    VehicleData,
)

VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # A-HJ-NPR-Z0-9: no I, O, Q
MAX_DATA_FRAMES = 255  # FrameCount is a u8
OTHER_TRAFFIC_IDS = st.integers(0, 0x6EF) | st.integers(0x700, 0x7FF)


def examples(n: int) -> int:
    """``n`` scaled by ``$CBS_HYPOTHESIS_SCALE`` (default 1), for longer local runs."""
    return max(1, round(n * float(os.environ.get("CBS_HYPOTHESIS_SCALE", "1"))))


def protocols_settings(n: int, **overrides: object) -> settings:
    """Settings for a property of the protocol tests: the ``cbs-protocols`` profile (registered
    by tests/protocols/conftest.py; plain defaults when that conftest is not loaded) with
    ``examples(n)`` examples."""
    try:
        parent = settings.get_profile("cbs-protocols")
    except InvalidArgument:  # conftest not loaded: imported from another test directory
        parent = settings()
    return settings(parent, max_examples=examples(n), **overrides)  # type: ignore[arg-type]


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


years = st.integers(2000, 2127)  # u7 + 2000
months = st.integers(1, 12)
percentages = st.integers(0, 100)
vins = st.text(VIN_ALPHABET, min_size=17, max_size=17)
# raw 0-254 (255 is the sentinel) through the spec's scale: exact in binary floating point
ambients_c = st.integers(0, 254).map(lambda raw: raw * 0.5 - 40)
avg_trips_km = st.integers(0, 4095).map(lambda raw: round(raw * 0.1, 1))
cbs_codes = st.sampled_from(sorted(CODE_TO_TYPE)) | st.integers(0, 255)

vehicles = st.builds(
    VehicleData,
    mileage_km=st.integers(0, 0xFFFFFF),
    data_date=st.dates(date(2000, 1, 1), date(2127, 12, 31)),
    fuel_level_pct=optional(percentages),
    build_year=years,
    build_month=optional(months),
)

usages = st.builds(
    UsageData,
    ambient_avg_c=optional(ambients_c),
    ambient_min_c=optional(ambients_c),
    ambient_max_c=optional(ambients_c),
    hot_share_pct=percentages,
    cold_share_pct=percentages,
    short_trip_pct=percentages,
    severe_duty_pct=percentages,
    avg_trip_km=avg_trips_km,
)

histories = st.builds(
    ServiceHistory,
    last_service_km=optional(st.integers(0, 0xFFFFFE)),  # 0xFFFFFF = never serviced
    last_service_year=years,
    last_service_month=optional(months),
    interval_km=optional(st.integers(1, 1023).map(lambda raw: raw * 100)),
    interval_months=optional(st.integers(1, 127)),
)


@st.composite
def service_items(draw: st.DrawFn, index: int) -> ServiceItem:
    return ServiceItem(
        index=index,
        code=draw(cbs_codes),
        availability_pct=draw(optional(st.integers(0, 250))),
        remaining_km=draw(optional(st.integers(-524287, 524287))),  # -524288 = not available
        due_year=draw(years),
        due_month=draw(optional(months)),
        service_count=draw(st.integers(0, 31)),
        history=draw(optional(histories)),
    )


def check_controls(index: int) -> st.SearchStrategy[CheckControlMessage]:
    return st.builds(CheckControlMessage, index=st.just(index), cc_id=st.integers(0, 0xFFFF),
                     status=st.sampled_from(CheckControlStatus),
                     mileage_km=st.integers(0, 0xFFFFFF))


def dtcs(index: int) -> st.SearchStrategy[StoredDtc]:
    return st.builds(StoredDtc, index=st.just(index), code=st.integers(0, 0xFFFFFF),
                     status=st.integers(0, 0xFF), ecu_address=st.integers(0, 0xFF),
                     occurrences=st.integers(0, 0xFFFF))


def _indices(draw: st.DrawFn, top: int, max_size: int) -> list[int]:
    return sorted(draw(st.lists(st.integers(0, top), unique=True, max_size=max_size)))


def data_frame_count(session: KeySession) -> int:
    """How many data frames ``encode_session`` sends for ``session``."""
    return (3 + 1 + (session.usage is not None) + len(session.services)
            + sum(item.history is not None for item in session.services)
            + len(session.check_controls) + len(session.dtcs))


@st.composite
def key_sessions(draw: st.DrawFn, *, max_items: int = 16, max_check_controls: int = 6,
                 max_dtcs: int = 6) -> KeySession:
    """A valid :class:`KeySession`: every field over its whole range, items, check controls and
    DTCs with unique indices in index order, never more than 255 data frames."""
    usage = draw(optional(usages))
    items = tuple(draw(service_items(i)) for i in _indices(draw, 15, min(max_items, 16)))
    used = 4 + (usage is not None) + len(items) + sum(i.history is not None for i in items)
    ccs = tuple(draw(check_controls(i))
                for i in _indices(draw, 255, min(max_check_controls, MAX_DATA_FRAMES - used)))
    used += len(ccs)
    faults = tuple(draw(dtcs(i)) for i in _indices(draw, 255, min(max_dtcs, MAX_DATA_FRAMES - used)))
    return KeySession(
        session_seq=draw(st.integers(0, 255)),
        key_id=draw(st.integers(0, 0xFFFFFFFF)),
        key_slot=draw(st.integers(0, 9)),
        vin=draw(vins),
        vehicle=draw(vehicles),
        usage=usage,
        services=items,
        check_controls=ccs,
        dtcs=faults,
    )
