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

Every other pair of neighbours is a :class:`Segment`, weighted by recency: a segment
``history_half_life_days`` older than the newest data date counts half.
"""

from __future__ import annotations

import sys
from abc import abstractmethod
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agent.domain.forecast.readings import PastReading
from agent.domain.forecast.settings import ForecastSettings
from protocols.values import fast_init

__all__ = ["HISTORY_WINDOW", "HistoryAnomalies", "HistorySummary", "HistoryView", "Segment", "SummarizedReadings",
           "TrendFit",
           "availability_trend", "availability_trend_fit", "build_view", "extend", "history_km_per_day",
           "item_fall_rates", "point_of", "read_at_us", "summarize", "view_of"]

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


@fast_init
@dataclass(frozen=True, slots=True)
class Segment:
    """Two neighbouring readouts of one unbroken series (data dates as day ordinals)."""

    start_day: int
    end_day: int
    days: int
    km: int
    weight: float


#: An item as the walk keeps it: [index, code, remaining km, availability %, service count,
#: km of the last service], the fields of :class:`PastItem` in their order.
Figures = Sequence[int | None]
#: A readout as the walk keeps it: (data date as a day ordinal, mileage km, its items).
Point = tuple[int, int, Sequence[Figures]]

_PACKED_VERSION = 1
_NONE = -(2 ** 63)  # None in the packed form (no figure is ever this)


def _triples(flat: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """``flat`` read three at a time."""
    it = iter(flat)
    return zip(it, it, it)


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

    Plain integers in flat lists, so that reading one back builds no objects but them: ``spans`` is each segment's (start day ordinal, days, km), ``pairs`` per item
    each unserviced segment's (segment index, remaining km it lost, never below 0, or -1 when
    either readout has none; availability points it lost, never below 0, or -1 when either
    has none or a value over 100); a pair with both -1 is not kept. ``read_until_us`` is the
    newest ``read_at`` of the readouts (microseconds since the epoch; None: there were
    none): the summary stands for a forecast of a readout read at or after it. ``points``
    is how many readouts are in the window; ``last`` the walk's last accepted readout, the
    current one's neighbour.
    """

    read_until_us: int | None = None
    points: int = 0
    stale_keys: int = 0
    odometer_rollbacks: int = 0
    implausible_segments: int = 0
    spans: list[int] = field(default_factory=list)
    pairs: dict[ItemKey, list[int]] = field(default_factory=dict)
    last: Point | None = None

    def to_packed(self) -> bytes:
        """The summary as little-endian 64-bit integers, the form the history keeps
        (:meth:`from_packed`): reading it back creates its integers at C speed (JSON's
        parser took ~0.2 µs per integer, 100 µs for a vehicle with 30 visits)."""
        out = [_PACKED_VERSION, _NONE if self.read_until_us is None else self.read_until_us,
               self.points, self.stale_keys, self.odometer_rollbacks, self.implausible_segments,
               len(self.spans), *self.spans, len(self.pairs)]
        for (index, code), flat in self.pairs.items():
            out += (index, code, len(flat), *flat)
        if self.last is None:
            out.append(0)
        else:
            day, km, items = self.last
            out += (1, day, km, len(items))
            for figures in items:
                out += [_NONE if value is None else value for value in figures]
        packed = array("q", out)
        if sys.byteorder != "little":
            packed.byteswap()
        return packed.tobytes()

    @classmethod
    def from_packed(cls, data: bytes) -> HistorySummary | None:
        """The summary :meth:`to_packed` packed; None for another version of the form."""
        packed = array("q")
        packed.frombytes(data)
        if sys.byteorder != "little":
            packed.byteswap()
        v = packed.tolist()
        if not v or v[0] != _PACKED_VERSION:
            return None
        n = v[6]
        spans = v[7:7 + n]
        at = 7 + n
        pairs: dict[ItemKey, list[int]] = {}
        for _ in range(v[at]):
            index, code, n = v[at + 1], v[at + 2], v[at + 3]
            pairs[(index, code)] = v[at + 4:at + 4 + n]
            at += 3 + n
        at += 1
        last: Point | None = None
        if v[at]:
            day, km, count = v[at + 1], v[at + 2], v[at + 3]
            at += 4
            items = [[None if value == _NONE else value for value in v[at + 6 * k:at + 6 * k + 6]]
                     for k in range(count)]
            last = (day, km, items)
        return cls(None if v[1] == _NONE else v[1], v[2], v[3], v[4], v[5], spans, pairs, last)


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
    Starts from a summary and never changes it (its lists are copied before they grow)."""

    __slots__ = ("copied", "implausible", "last", "max_per_day", "pairs", "points", "rollbacks",
                 "spans", "stale")

    def __init__(self, summary: HistorySummary, settings: ForecastSettings) -> None:
        self.points = summary.points
        self.stale = summary.stale_keys
        self.rollbacks = summary.odometer_rollbacks
        self.implausible = summary.implausible_segments
        self.spans = list(summary.spans)
        self.pairs = dict(summary.pairs)
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
            self._pair(len(self.spans) // 3, last[2], point[2])
            self.spans += (last_day, days, driven)
        self.last = point
        return anomaly

    def _pair(self, segment: int, start: Sequence[Figures], end: Sequence[Figures]) -> None:
        """The segment's unserviced items: the first item of each reading under a key, as
        :meth:`PastReading.item` finds it."""
        by_key: dict[ItemKey, Figures] = {}
        for first in start:
            by_key.setdefault((first[0], first[1]), first)  # type: ignore[arg-type]
        seen: set[ItemKey] = set()
        pairs = self.pairs
        for b in end:
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
            if key not in self.copied:
                pairs[key] = list(pairs.get(key, ()))
                self.copied.add(key)
            pairs[key] += (segment, fall, step)

    def summary(self, read_until_us: int | None) -> HistorySummary:
        return HistorySummary(read_until_us, self.points, self.stale, self.rollbacks,
                              self.implausible, self.spans, self.pairs, self.last)


def summarize(history: Iterable[PastReading], vin: str, settings: ForecastSettings, *,
              until: datetime | None = None) -> HistorySummary:
    """The summary of ``vin``'s readouts in ``history`` read at or before ``until`` (all
    when None): the newest :data:`HISTORY_WINDOW` of them, walked in the order they were read."""
    earlier = [r for r in history if r.vin == vin and (until is None or r.read_at <= until)]
    if not earlier:
        return HistorySummary()
    earlier.sort(key=lambda r: (r.read_at, r.data_date, r.mileage_km, r.readout_id))
    walk = _Walk(HistorySummary(), settings)
    for reading in earlier[-HISTORY_WINDOW:]:
        walk.step(point_of(reading))
    return walk.summary(read_at_us(earlier[-1]))


def extend(summary: HistorySummary, reading: PastReading,
           settings: ForecastSettings) -> tuple[HistorySummary, str | None] | None:
    """``summary`` with ``reading`` read after all of its readouts, as :func:`summarize` would
    give it on them all, and the anomaly the walk saw in ``reading`` (as :func:`build_view`
    reports it); None when that takes the readouts themselves (the window is full, so its
    oldest would go, or ``reading`` was not read strictly later)."""
    at_us = read_at_us(reading)
    if summary.points >= HISTORY_WINDOW or (summary.read_until_us is not None
                                            and at_us <= summary.read_until_us):
        return None
    walk = _Walk(summary, settings)
    anomaly = walk.step(point_of(reading))
    return walk.summary(at_us), anomaly


def view_of(summary: HistorySummary, current: PastReading, settings: ForecastSettings) -> HistoryView:
    """The view of the summarised readouts followed by ``current`` (read at or after them)."""
    walk = _Walk(summary, settings)
    current_anomaly = walk.step(point_of(current))
    newest = walk.last[0] if walk.last is not None else current.data_date.toordinal()
    half_life = settings.history_half_life_days
    segments = tuple([Segment(start, start + days, days, km,
                              0.5 ** (max(0.0, (newest - start) - days / 2.0) / half_life))
                      for start, days, km in _triples(walk.spans)])
    return HistoryView(segments, HistoryAnomalies(walk.stale, walk.rollbacks, walk.implausible),
                       current_anomaly, walk.pairs)


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
    segments: tuple[Segment, ...]
    anomalies: HistoryAnomalies
    current_anomaly: str | None  # why the current readout broke the series, if it did
    # Per item, the segments over which it was not serviced with what it lost over each
    # (flat triples, as HistorySummary.pairs): found once per walk instead of looking each
    # item up in both readings of every segment for every trend.
    item_pairs: dict[ItemKey, list[int]]


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
    timed = [s for s in view.segments if s.days > 0]
    if (sum(s.days for s in timed) < settings.min_history_days
            or sum(s.km for s in timed) < settings.min_history_km):
        return None
    return (sum(s.weight * s.km for s in timed), sum(s.weight * s.days for s in timed))


def item_fall_rates(view: HistoryView, keys: Iterable[ItemKey],
                    settings: ForecastSettings) -> dict[ItemKey, tuple[float, int]]:
    """Per item: (km of remaining distance lost per km driven, km watched), for items watched
    over at least ``min_ratio_km`` without a service in between.

    A rise of the remaining km without a service counts as no fall (not as a negative one), so
    more remaining km never makes an item's rate higher.
    """
    out: dict[ItemKey, tuple[float, int]] = {}
    segments = view.segments
    for key in keys:
        fall = driven = 0.0
        watched = 0
        for index, lost, _ in _triples(view.item_pairs.get(key, ())):
            seg = segments[index]
            if lost < 0 or seg.km <= 0:
                continue
            fall += seg.weight * lost
            driven += seg.weight * seg.km
            watched += seg.km
        if watched >= settings.min_ratio_km and driven > 0:
            out[key] = (fall / driven, watched)
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
    fall = span_weighted = 0.0
    span = 0
    drop = 0
    segments = 0
    squares = inverse = 0.0  # sums of step^2 / length and 1 / length, for the residuals
    spans = view.segments
    for index, _, step in _triples(view.item_pairs.get(key, ())):
        if step < 0:
            continue
        seg = spans[index]
        length = seg.km if per_km else seg.days
        if length <= 0:
            continue
        fall += seg.weight * step
        span_weighted += seg.weight * length
        span += length
        drop += step
        segments += 1
        squares += step * step / length
        inverse += 1.0 / length
    needed = settings.min_wear_km if per_km else settings.min_wear_days
    if span < needed or drop < settings.min_wear_drop_pct or fall <= 0:
        return None
    rate = fall / span_weighted
    # Each segment's slope scatters about the pooled one by (per-length variance) / length:
    # sum(length * (step / (rate * length) - 1)^2) over the segments estimates that variance
    # times their number, once the whole-percent rounding of each step's two ends
    # ((2/12) / (rate * length)^2 each) is taken out. Expanded, it needs only three sums.
    residual_var = 0.0
    if segments > 1:  # one segment has no scatter to show
        scatter = squares / rate ** 2 - 2.0 * drop / rate + span - (2.0 / 12.0) * inverse / rate ** 2
        residual_var = max(0.0, scatter) / segments / span
    return TrendFit(rate, float(span), float(drop), residual_var, segments)
