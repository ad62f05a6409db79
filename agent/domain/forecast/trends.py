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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.domain.forecast.readings import PastItem, PastReading
from agent.domain.forecast.settings import ForecastSettings
from protocols.values import fast_init

__all__ = ["HISTORY_WINDOW", "HistoryAnomalies", "HistoryView", "Segment", "TrendFit", "availability_trend",
           "availability_trend_fit", "build_view", "history_km_per_day", "item_fall_rates"]

ItemKey = tuple[int, int]

#: The newest earlier readouts a forecast reads, at most. Older ones weigh little (a segment
#: ``history_half_life_days`` old counts half), and the forecast's cost must not grow with a
#: vehicle's visits: the history keeps ``max_per_vehicle`` (50 by default, up to 100,000).
HISTORY_WINDOW = 50


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
    """Two neighbouring readouts of one unbroken series."""

    start: PastReading
    end: PastReading
    days: int
    km: int
    weight: float


@fast_init
@dataclass(frozen=True, slots=True)
class HistoryView:
    segments: tuple[Segment, ...]
    anomalies: HistoryAnomalies
    current_anomaly: str | None  # why the current readout broke the series, if it did
    # Per item, the segments over which it was not serviced with its two readings: built
    # once here instead of looking each item up in both readings of every segment for every
    # trend (that search was half the forecast's time with 20 earlier readouts).
    item_pairs: dict[ItemKey, tuple[tuple[Segment, PastItem, PastItem], ...]]


def build_view(history: Iterable[PastReading], current: PastReading,
               settings: ForecastSettings) -> HistoryView:
    """The usable segments of ``history`` followed by ``current``.

    Readouts of other VINs and readouts read after ``current`` are left out: the forecast
    of a readout depends only on what was known when it was read.
    """
    earlier = [r for r in history if r.vin == current.vin and r.read_at <= current.read_at]
    earlier.sort(key=lambda r: (r.read_at, r.data_date, r.mileage_km, r.readout_id))
    points = [*earlier[-HISTORY_WINDOW:], current]
    stale = rollbacks = implausible = 0
    pairs: list[tuple[PastReading, PastReading]] = []
    last: PastReading | None = None
    current_anomaly: str | None = None
    for point in points:
        if last is None:
            last = point
            continue
        if point.data_date < last.data_date or (
                point.data_date == last.data_date and point.mileage_km < last.mileage_km):
            stale += 1
            if point is current:
                current_anomaly = "stale_key"
            continue
        days = (point.data_date - last.data_date).days
        km = point.mileage_km - last.mileage_km
        if km < 0:
            rollbacks += 1
            if point is current:
                current_anomaly = "odometer_rollback"
        elif km > settings.max_plausible_km_per_day * max(days, 1):
            implausible += 1
            if point is current:
                current_anomaly = "implausible_segment"
        elif km > 0 or days > 0:
            pairs.append((last, point))
        last = point
    newest = last.data_date if last is not None else current.data_date
    half_life = settings.history_half_life_days
    segments = []
    for start, end in pairs:
        days = (end.data_date - start.data_date).days
        age_days = max(0.0, (newest - start.data_date).days - days / 2.0)
        segments.append(Segment(start, end, days, end.mileage_km - start.mileage_km,
                                0.5 ** (age_days / half_life)))
    return HistoryView(tuple(segments), HistoryAnomalies(stale, rollbacks, implausible),
                       current_anomaly, _pairs_by_item(segments))


def _pairs_by_item(segments: Sequence[Segment]
                   ) -> dict[ItemKey, tuple[tuple[Segment, PastItem, PastItem], ...]]:
    """What :func:`_item_pairs` gives for every item, in segment order."""
    out: dict[ItemKey, list[tuple[Segment, PastItem, PastItem]]] = {}
    previous: PastReading | None = None
    by_key: dict[ItemKey, PastItem] = {}
    for seg in segments:
        if seg.start is not previous:
            by_key = {}
            for i in seg.start.items:
                by_key.setdefault((i.index, i.code), i)
        end_by_key: dict[ItemKey, PastItem] = {}
        for b in seg.end.items:
            key = (b.index, b.code)
            end_by_key.setdefault(key, b)
            a = by_key.get(key)
            if a is not None and end_by_key[key] is b and _same_service(a, b):
                out.setdefault(key, []).append((seg, a, b))
        previous, by_key = seg.end, end_by_key
    return {key: tuple(pairs) for key, pairs in out.items()}


def _same_service(a: PastItem, b: PastItem) -> bool:
    """False when the item was serviced between the two readouts (its count or the odometer
    of its last service changed)."""
    if a.service_count != b.service_count:
        return False
    return not (a.last_service_km is not None and b.last_service_km is not None
                and a.last_service_km != b.last_service_km)


def history_km_per_day(view: HistoryView, settings: ForecastSettings) -> tuple[float, float] | None:
    """(recency-weighted km, recency-weighted days) of the segments, or None when they span
    less than ``min_history_days`` or ``min_history_km``. The caller divides (and may add a
    prior to both)."""
    timed = [s for s in view.segments if s.days > 0]
    if (sum(s.days for s in timed) < settings.min_history_days
            or sum(s.km for s in timed) < settings.min_history_km):
        return None
    return (sum(s.weight * s.km for s in timed), sum(s.weight * s.days for s in timed))


def _item_pairs(view: HistoryView, key: ItemKey) -> Iterable[tuple[Segment, PastItem, PastItem]]:
    """The segments over which the item was not serviced, with its two readings (the first
    item of a reading under ``key``, as :meth:`PastReading.item` finds it)."""
    return view.item_pairs.get(key, ())


def item_fall_rates(view: HistoryView, keys: Iterable[ItemKey],
                    settings: ForecastSettings) -> dict[ItemKey, tuple[float, int]]:
    """Per item: (km of remaining distance lost per km driven, km watched), for items watched
    over at least ``min_ratio_km`` without a service in between.

    A rise of the remaining km without a service counts as no fall (not as a negative one), so
    more remaining km never makes an item's rate higher.
    """
    out: dict[ItemKey, tuple[float, int]] = {}
    for key in keys:
        fall = driven = 0.0
        watched = 0
        for seg, a, b in _item_pairs(view, key):
            if a.remaining_km is None or b.remaining_km is None or seg.km <= 0:
                continue
            fall += seg.weight * max(0, a.remaining_km - b.remaining_km)
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
    for seg, a, b in _item_pairs(view, key):
        if a.availability_pct is None or b.availability_pct is None:
            continue
        if a.availability_pct > 100 or b.availability_pct > 100:
            continue
        length = seg.km if per_km else seg.days
        if length <= 0:
            continue
        step = a.availability_pct - b.availability_pct
        if step < 0:
            step = 0
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
