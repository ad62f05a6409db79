"""What a vehicle's earlier readouts say about it: daily distance, per-item fall rates and
availability trends. Pure functions of the readouts; no clock, no I/O.

The readouts are put in the order they were read, the current one last, and walked once:

* a readout whose data date is older than the one before it (or the same day with fewer km)
  comes from a key that was not in use lately (a spare, a swapped key). Its figures are
  stale, so it is ignored and counted as ``stale_keys``;
* a readout with a later data date but fewer km than the one before is an odometer rollback
  (instrument cluster replaced, tampering). No segment is formed across it; the series
  restarts there (``odometer_rollbacks``);
* a segment faster than ``max_plausible_km_per_day`` is a misread and also restarts the
  series (``implausible_segments``).

Every other pair of neighbours is a segment, weighted by recency: a segment
``history_half_life_days`` older than the newest data date counts half.
"""

from __future__ import annotations

import math
import sys
from abc import abstractmethod
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agent.domain.forecast.readings import PastReading
from agent.domain.forecast.settings import ForecastSettings
from protocols.values import fast_init

__all__ = ["HISTORY_WINDOW", "ITEM_SUMS", "HistoryAnomalies", "HistorySummary", "HistoryView", "SummarizedReadings",
           "TrendFit",
           "anomaly_after", "availability_trend", "availability_trend_fit", "build_view", "extend", "history_km_per_day",
           "item_fall_rates", "point_of", "read_at_us", "summarize", "summarize_points", "view_of"]

ItemKey = tuple[int, int]

#: The newest earlier readouts a forecast reads, at most. Older ones weigh little (a segment
#: ``history_half_life_days`` old counts half), and the forecast's cost must not grow with a
#: vehicle's visits: the history keeps ``max_per_vehicle`` (50 by default, up to 100,000).
HISTORY_WINDOW = 50

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@fast_init
@dataclass(frozen=True, slots=True)
class HistoryAnomalies:
    """Readouts the forecast ignored, by reason. Counted per forecast call: the same stale
    readout is counted again at the next call (VehicleHistory counts each once, on record)."""

    stale_keys: int = 0
    odometer_rollbacks: int = 0
    implausible_segments: int = 0

    @property
    def total(self) -> int:
        return self.stale_keys + self.odometer_rollbacks + self.implausible_segments


#: An item as the walk keeps it: [index, code, remaining km, availability %, service count,
#: km of the last service], the fields of :class:`PastItem` in their order.
Figures = Sequence[int | None]
#: A readout as the walk keeps it: (data date as a day ordinal, mileage km, its items).
Point = tuple[int, int, Sequence[Figures]]

_PACKED_VERSION = 2  # 1: the segments and each item's unserviced segments, not their sums
_NONE = -(2 ** 63)  # None in the packed form (no figure is ever this)
_NAN = float("nan")  # None among the floats


#: Per item, its unserviced segments summed as the walk goes (see :class:`_Walk`), ``u`` being
#: a segment's weight relative to the walk's reference day: the fall rate's (u * km of
#: remaining distance lost, u * km driven, km driven) over segments with km > 0 and a known
#: loss; then availability per km and per day, each (u * points lost, u * length, length,
#: points lost, segments, points lost^2 / length, 1 / length) over segments of length > 0
#: with a known loss.
ITEM_SUMS = 17
_FALL, _PER_KM, _PER_DAY = 0, 3, 10
#: Over the segments with days > 0: (segments, days, km, km^2 / days, u * km, u * days,
#: u * days * (middle day - reference day), the newest end day).
_SPAN_SUMS = 8
_NO_SPANS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
#: The reference day moves forward before a weight would pass 2^this (a float stops at
#: 2^1024); the sums are scaled down with it.
_REBASE_AT = 512.0


@dataclass(frozen=True, slots=True)
class HistorySummary:
    """The walk over a vehicle's earlier readouts (the newest :data:`HISTORY_WINDOW`), in the
    form the forecast reads: what :func:`build_view` learns from them before it looks at the
    current readout, which depends on nothing the current readout says.

    Why it exists: building it costs a walk over the readouts and their items (most of a
    forecast's time with a few dozen visits, and loading them from the history as objects
    cost more again). The vehicle history keeps each vehicle's summary next to its readings
    (agent/store/history.py), so a forecast reads one row and adds the current readout as
    one more step: what it then does is bounded by the window, not by the visits or the
    vehicles. :func:`view_of` on a summary gives exactly the view :func:`build_view` gives on
    the readouts it summarises (tests/agent/test_history_summary.py).

    Why sums, not the segments: every trend the forecast takes from the history is a sum over
    segments of a recency weight times a figure, and the weight of a segment whose middle
    is ``m`` days before the newest data date is 2^(-m / half-life), which factorises into
    a factor of the newest day and one of the segment's own days. So the walk keeps each
    sum with the segment's own factor (``u``, relative to ``ref_day``) and the forecast
    multiplies by the newest day's once: its cost is one step and a few products per item,
    whatever the visits (it walked every item's segments, up to 50 each, 0.1 ms of a
    forecast on a large dealer's history). The sums depend on ``half_life_days``, which the
    summary records: one made with another half-life does not stand (the readings are
    summarised again).

    ``spans`` holds the sums over all segments, ``items`` each item's (:data:`ITEM_SUMS`);
    ``read_until_us`` is the newest ``read_at`` of the readouts (microseconds since the
    epoch; None: there were none): the summary stands for a forecast of a readout read at
    or after it. ``points`` is how many readouts are in the window; ``last`` the walk's last
    accepted readout, the current one's neighbour.
    """

    read_until_us: int | None = None
    points: int = 0
    stale_keys: int = 0
    odometer_rollbacks: int = 0
    implausible_segments: int = 0
    half_life_days: float | None = None  # None: no segment yet
    ref_day: float | None = None
    spans: list[float] = field(default_factory=lambda: list(_NO_SPANS))
    items: dict[ItemKey, list[float]] = field(default_factory=dict)
    last: Point | None = None

    def stands_for(self, settings: ForecastSettings) -> bool:
        """Whether its sums are those of ``settings`` (the same half-life)."""
        return self.half_life_days is None or self.half_life_days == settings.history_half_life_days

    def to_packed(self) -> bytes:
        """The summary as little-endian 64-bit integers followed by 64-bit floats, the form
        the history keeps (:meth:`from_packed`): reading it back creates its numbers at C
        speed (JSON's parser took ~0.2 µs per integer, 100 µs for a vehicle with 30 visits)."""
        ints = [_PACKED_VERSION, 0, _NONE if self.read_until_us is None else self.read_until_us,
                self.points, self.stale_keys, self.odometer_rollbacks, self.implausible_segments,
                len(self.items)]
        floats = [_NAN if self.half_life_days is None else self.half_life_days,
                  _NAN if self.ref_day is None else self.ref_day, *self.spans]
        for (index, code), sums in self.items.items():
            ints += (index, code)
            floats += sums
        if self.last is None:
            ints.append(0)
        else:
            day, km, items = self.last
            ints += (1, day, km, len(items))
            for figures in items:
                ints += [_NONE if value is None else value for value in figures]
        ints[1] = len(ints)
        packed_ints, packed_floats = array("q", ints), array("d", floats)
        if sys.byteorder != "little":
            packed_ints.byteswap()
            packed_floats.byteswap()
        return packed_ints.tobytes() + packed_floats.tobytes()

    @classmethod
    def from_packed(cls, data: bytes) -> HistorySummary | None:
        """The summary :meth:`to_packed` packed; None for another version of the form."""
        head = array("q")
        head.frombytes(data[:16])
        if sys.byteorder != "little":
            head.byteswap()
        if len(head) < 2 or head[0] != _PACKED_VERSION:
            return None
        packed_ints, packed_floats = array("q"), array("d")
        packed_ints.frombytes(data[:8 * head[1]])
        packed_floats.frombytes(data[8 * head[1]:])
        if sys.byteorder != "little":
            packed_ints.byteswap()
            packed_floats.byteswap()
        v, f = packed_ints.tolist(), packed_floats.tolist()
        count = v[7]
        at = 8 + 2 * count
        keys = v[8:at]
        items: dict[ItemKey, list[float]] = {}
        start = 2 + _SPAN_SUMS
        for k in range(count):
            items[(keys[2 * k], keys[2 * k + 1])] = f[start:start + ITEM_SUMS]
            start += ITEM_SUMS
        last: Point | None = None
        if v[at]:
            day, km, n = v[at + 1], v[at + 2], v[at + 3]
            at += 4
            figures = [[None if value == _NONE else value for value in v[at + 6 * k:at + 6 * k + 6]]
                       for k in range(n)]
            last = (day, km, figures)
        half_life, ref = f[0], f[1]
        return cls(None if v[2] == _NONE else v[2], v[3], v[4], v[5], v[6],
                   None if math.isnan(half_life) else half_life, None if math.isnan(ref) else ref,
                   f[2:2 + _SPAN_SUMS], items, last)


def point_of(reading: PastReading) -> Point:
    """The walk's view of ``reading``."""
    return (reading.data_date.toordinal(), reading.mileage_km,
            [[i.index, i.code, i.remaining_km, i.availability_pct, i.service_count,
              i.last_service_km] for i in reading.items])


def read_at_us(reading: PastReading) -> int:
    """``reading.read_at`` in microseconds since the epoch (the history's own unit)."""
    return (reading.read_at - _EPOCH) // _MICROSECOND


class _Walk:
    """The readouts in the order they were read, one :meth:`step` each (module docstring).
    Starts from a summary and never changes it (its lists are copied before they change)."""

    __slots__ = ("copied", "half_life", "implausible", "items", "last", "max_per_day", "points",
                 "ref", "rollbacks", "spans", "stale")

    def __init__(self, summary: HistorySummary, settings: ForecastSettings) -> None:
        if not summary.stands_for(settings):
            raise ValueError("the history summary was made with another history_half_life_days")
        self.points = summary.points
        self.stale = summary.stale_keys
        self.rollbacks = summary.odometer_rollbacks
        self.implausible = summary.implausible_segments
        self.half_life = settings.history_half_life_days
        self.ref = summary.ref_day
        self.spans = list(summary.spans)
        self.items = dict(summary.items)
        self.copied: set[ItemKey] = set()  # keys whose list is this walk's own
        self.last = summary.last
        self.max_per_day = settings.max_plausible_km_per_day

    def step(self, point: Point) -> str | None:
        """Add ``point``; the anomaly that made the walk ignore it or restart at it, if any."""
        self.points += 1
        last = self.last
        if last is None:
            self.last = point
            return None
        day, km, _ = point
        last_day, last_km, _ = last
        if day < last_day or (day == last_day and km < last_km):
            self.stale += 1
            return "stale_key"
        days = day - last_day
        driven = km - last_km
        anomaly = None
        if driven < 0:
            self.rollbacks += 1
            anomaly = "odometer_rollback"
        elif driven > self.max_per_day * max(days, 1):
            self.implausible += 1
            anomaly = "implausible_segment"
        elif driven > 0 or days > 0:
            self._segment(last_day, days, driven, last[2], point[2])
        self.last = point
        return anomaly

    def _segment(self, start: int, days: int, km: int, a_items: Sequence[Figures],
                 b_items: Sequence[Figures]) -> None:
        """Add the segment to the sums: its own, and each unserviced item's (the first item
        of each reading under a key, as :meth:`PastReading.item` finds it)."""
        middle = start + days / 2.0
        if self.ref is None:
            self.ref = float(start)
        exponent = (middle - self.ref) / self.half_life
        if exponent > _REBASE_AT:
            self.rebase(middle)
            exponent = 0.0
        u = 2.0 ** exponent
        if days > 0:
            s = self.spans
            s[0] += 1
            s[1] += days
            s[2] += km
            s[3] += km * km / days
            s[4] += u * km
            s[5] += u * days
            s[6] += u * days * (middle - self.ref)
            s[7] = max(s[7], float(start + days))
        by_key: dict[ItemKey, Figures] = {}
        for first in a_items:
            by_key.setdefault((first[0], first[1]), first)  # type: ignore[arg-type]
        seen: set[ItemKey] = set()
        items = self.items
        for b in b_items:
            key: ItemKey = (b[0], b[1])  # type: ignore[assignment]
            if key in seen:
                continue
            seen.add(key)
            a = by_key.get(key)
            if a is None or not _same_service(a, b):
                continue
            a_km, b_km, a_pct, b_pct = a[2], b[2], a[3], b[3]
            fall = -1 if a_km is None or b_km is None else max(0, a_km - b_km)
            step = (-1 if a_pct is None or b_pct is None or a_pct > 100 or b_pct > 100
                    else max(0, a_pct - b_pct))
            if fall < 0 and step < 0:
                continue
            if key in self.copied:
                v = items[key]
            else:
                v = items[key] = list(items[key]) if key in items else [0.0] * ITEM_SUMS
                self.copied.add(key)
            if fall >= 0 and km > 0:
                v[0] += u * fall
                v[1] += u * km
                v[2] += km
            if step >= 0:
                if km > 0:
                    _add_trend(v, _PER_KM, u, step, km)
                if days > 0:
                    _add_trend(v, _PER_DAY, u, step, days)

    def rebase(self, ref: float) -> None:
        """Move the reference day to ``ref``: every weighted sum times 2^(-(ref - old) / half-life)."""
        if self.ref is None or ref == self.ref:
            self.ref = ref
            return
        shift = ref - self.ref
        factor = 2.0 ** (-shift / self.half_life)
        s = self.spans
        s[6] = factor * (s[6] - shift * s[5])
        s[4] *= factor
        s[5] *= factor
        for key in list(self.items):
            v = list(self.items[key])
            for n in (0, 1, 3, 4, 10, 11):
                v[n] *= factor
            self.items[key] = v
            self.copied.add(key)
        self.ref = ref

    def summary(self, read_until_us: int | None) -> HistorySummary:
        return HistorySummary(read_until_us, self.points, self.stale, self.rollbacks,
                              self.implausible, None if self.ref is None else self.half_life,
                              self.ref, self.spans, self.items, self.last)


def _add_trend(sums: list[float], at: int, u: float, step: int, length: int) -> None:
    """One segment of an availability trend into ``sums[at:at + 7]`` (see ITEM_SUMS)."""
    sums[at] += u * step
    sums[at + 1] += u * length
    sums[at + 2] += length
    sums[at + 3] += step
    sums[at + 4] += 1
    sums[at + 5] += step * step / length
    sums[at + 6] += 1.0 / length


def summarize(history: Iterable[PastReading], vin: str, settings: ForecastSettings, *,
              until: datetime | None = None) -> HistorySummary:
    """The summary of ``vin``'s readouts in ``history`` read at or before ``until`` (all
    when None): the newest :data:`HISTORY_WINDOW` of them, walked in the order they were read."""
    earlier = [r for r in history if r.vin == vin and (until is None or r.read_at <= until)]
    if not earlier:
        return HistorySummary()
    earlier.sort(key=lambda r: (r.read_at, r.data_date, r.mileage_km, r.readout_id))
    return summarize_points([point_of(r) for r in earlier[-HISTORY_WINDOW:]],
                            read_at_us(earlier[-1]), settings)


def summarize_points(points: Sequence[Point], read_until_us: int,
                     settings: ForecastSettings) -> HistorySummary:
    """The summary of readouts given as the walk's points (:func:`point_of`), in the order
    :func:`summarize` puts them, the newest read at ``read_until_us``: the newest
    :data:`HISTORY_WINDOW` are walked.

    Why: the vehicle history summarises a window-full vehicle from its rows as stored (a day,
    the km and the items' figures, the six fields its ``items`` column has always held);
    building readouts of them first was a quarter of that walk's time
    (agent/store/history.py, ``_summary_from_rows``)."""
    walk = _Walk(HistorySummary(), settings)
    for point in points[-HISTORY_WINDOW:]:
        walk.step(point)
    return walk.summary(read_until_us)


def extend(summary: HistorySummary, reading: PastReading,
           settings: ForecastSettings) -> tuple[HistorySummary, str | None] | None:
    """``summary`` with ``reading`` read after all of its readouts, as :func:`summarize` would
    give it on them all, and the anomaly the walk saw in ``reading`` (as :func:`build_view`
    reports it); None when that takes the readouts themselves (the window is full, so its
    oldest would go, or ``reading`` was not read strictly later)."""
    at_us = read_at_us(reading)
    if summary.points >= HISTORY_WINDOW or not summary.stands_for(settings) or (
            summary.read_until_us is not None and at_us <= summary.read_until_us):
        return None
    walk = _Walk(summary, settings)
    anomaly = walk.step(point_of(reading))
    return walk.summary(at_us), anomaly


def anomaly_after(summary: HistorySummary, reading: PastReading,
                  settings: ForecastSettings) -> str | None:
    """The anomaly the walk sees in ``reading`` read after the readouts ``summary`` stands for
    (as :func:`build_view` on them reports it), without the readouts; also when the window is
    full, where :func:`extend` cannot add it."""
    return _Walk(summary, settings).step(point_of(reading))


def view_of(summary: HistorySummary, current: PastReading, settings: ForecastSettings) -> HistoryView:
    """The view of the summarised readouts followed by ``current`` (read at or after them).
    Raises ValueError for a summary made with another half-life."""
    walk = _Walk(summary, settings)
    current_anomaly = walk.step(point_of(current))
    newest = walk.last[0] if walk.last is not None else current.data_date.toordinal()
    scale = 0.0
    if walk.ref is not None:
        if (newest - walk.ref) / walk.half_life > _REBASE_AT:
            walk.rebase(float(newest))
        scale = 2.0 ** (-(newest - walk.ref) / walk.half_life)
    return HistoryView(walk.spans, walk.items, scale, 0.0 if walk.ref is None else walk.ref,
                       HistoryAnomalies(walk.stale, walk.rollbacks, walk.implausible),
                       current_anomaly)


class SummarizedReadings(Sequence[PastReading]):
    """A vehicle's earlier readouts that may come with their :class:`HistorySummary`, so that
    a forecast need not read them (agent/store/history.py loads them only when they are
    read). :func:`agent.domain.forecast.forecast_session` asks :meth:`summary_until` first."""

    __slots__ = ()

    @abstractmethod
    def summary_until(self, read_at: datetime) -> HistorySummary | None:
        """The summary of these readouts, if one is at hand and stands for a readout read at
        ``read_at`` (none of them read later); else None."""


@fast_init
@dataclass(frozen=True, slots=True)
class HistoryView:
    """The sums of :class:`HistorySummary` with the current readout's segment added. A
    segment's recency weight (module docstring) is ``scale`` times its ``u``: the sums hold
    the ``u`` (see ``ITEM_SUMS`` and ``_SPAN_SUMS``), ``scale`` is the newest data date's factor."""

    spans: list[float]
    items: dict[ItemKey, list[float]]
    scale: float
    ref_day: float
    anomalies: HistoryAnomalies
    current_anomaly: str | None  # why the current readout broke the series, if it did


def build_view(history: Iterable[PastReading], current: PastReading,
               settings: ForecastSettings) -> HistoryView:
    """The usable segments of ``history`` followed by ``current``.

    Readouts of other VINs and readouts read after ``current`` are left out: the forecast
    of a readout depends only on what was known when it was read.
    """
    return view_of(summarize(history, current.vin, settings, until=current.read_at), current,
                   settings)


def _same_service(a: Figures, b: Figures) -> bool:
    """False when the item was serviced between the two readouts (its count or the odometer
    of its last service changed)."""
    if a[4] != b[4]:
        return False
    return not (a[5] is not None and b[5] is not None and a[5] != b[5])


def history_km_per_day(view: HistoryView, settings: ForecastSettings) -> tuple[float, float] | None:
    """(recency-weighted km, recency-weighted days) of the segments, or None when they span
    less than ``min_history_days`` or ``min_history_km``. The caller divides (and may add a
    prior to both)."""
    spans = view.spans
    if spans[1] < settings.min_history_days or spans[2] < settings.min_history_km:
        return None
    return (view.scale * spans[4], view.scale * spans[5])


def item_fall_rates(view: HistoryView, keys: Iterable[ItemKey],
                    settings: ForecastSettings) -> dict[ItemKey, tuple[float, int]]:
    """Per item: (km of remaining distance lost per km driven, km watched), for items watched
    over at least ``min_ratio_km`` without a service in between.

    A rise of the remaining km without a service counts as no fall (not as a negative one), so
    more remaining km never makes an item's rate higher.
    """
    out: dict[ItemKey, tuple[float, int]] = {}
    items = view.items
    for key in keys:
        sums = items.get(key)
        if sums is None:
            continue
        fall, driven, watched = sums[_FALL], sums[_FALL + 1], sums[_FALL + 2]
        if watched >= settings.min_ratio_km and driven > 0:
            out[key] = (fall / driven, int(watched))
    return out


@fast_init
@dataclass(frozen=True, slots=True)
class TrendFit:
    """An availability trend with what says how well it is known (agent/domain/forecast/spread.py)."""

    rate: float          # percentage points per km (or per day)
    span: float          # km (or days) it was observed over
    drop_pct: float      # availability it was seen to lose
    residual_var: float  # relative variance of the pooled slope from its segments' scatter
    segments: int


def availability_trend(view: HistoryView, key: ItemKey, *, per_km: bool,
                       settings: ForecastSettings) -> float | None:
    """Availability lost (percentage points) per km driven (``per_km``) or per day, over the
    segments without a service; None unless the trend spans ``min_wear_km`` / ``min_wear_days``
    and shows a fall of at least ``min_wear_drop_pct``."""
    fit = availability_trend_fit(view, key, per_km=per_km, settings=settings)
    return None if fit is None else fit.rate


def availability_trend_fit(view: HistoryView, key: ItemKey, *, per_km: bool,
                           settings: ForecastSettings) -> TrendFit | None:
    """:func:`availability_trend` with its span, drop and the scatter of its segments."""
    sums = view.items.get(key)
    if sums is None:
        return None
    at = _PER_KM if per_km else _PER_DAY
    fall, span_weighted, span, drop, segments, squares, inverse = sums[at:at + 7]
    needed = settings.min_wear_km if per_km else settings.min_wear_days
    if span < needed or drop < settings.min_wear_drop_pct or fall <= 0:
        return None
    rate = fall / span_weighted
    if rate * rate == 0.0:  # its fall weighs next to nothing (half-lives ago): no trend to fit
        return None
    # Each segment's slope scatters about the pooled one by (per-length variance) / length:
    # sum(length * (step / (rate * length) - 1)^2) over the segments estimates that variance
    # times their number, once the whole-percent rounding of each step's two ends
    # ((2/12) / (rate * length)^2 each) is taken out. Expanded, it needs only three sums.
    residual_var = 0.0
    if segments > 1:  # one segment has no scatter to show
        scatter = squares / rate ** 2 - 2.0 * drop / rate + span - (2.0 / 12.0) * inverse / rate ** 2
        residual_var = max(0.0, scatter) / segments / span
    return TrendFit(rate, float(span), float(drop), residual_var, int(segments))
