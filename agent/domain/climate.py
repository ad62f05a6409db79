"""The climate factor of a vehicle that has no history yet, from its KEY_USAGE figures.

``climate_factor`` (contract: >= 1.0) says how much faster than nominal the vehicle's usage
and climate wear its distance-driven items: the forecast divides their remaining km by
``km_per_day * climate_factor``. Once the vehicle has history on this site the forecast learns
the factor from how fast the key's remaining km actually fall (agent/domain/forecast/trends.py); this
module is only the prior for a first visit.

The model (docs/forecast.md has the figures and their sources):

* Severe-service schedules shorten oil intervals to between a half and two thirds of the
  normal ones (e.g. 7,500 -> 3,750 miles). Taking the halving as the bound, a km driven under
  severe conditions counts as two nominal km: ``factor = 1 + (max_factor - 1) * s`` where
  ``s`` is the share of distance driven under severe conditions and ``max_factor`` is 2.0.
* What counts as severe follows the same schedules (Kia, GM, Lexus): trips shorter than
  8 km (16 km in freezing weather), towing, dust and mountains (the key's ``severe_duty_pct``
  is already that share of distance), very hot weather, very cold weather.
* The shares combine as independent events: ``s = 1 - prod(1 - s_i)``.

Everything else (the 4 km mean length of a short trip, the weights of heat and cold) is an
engineering assumption, named as such in :class:`ClimateModel` and in docs/forecast.md.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from protocols.key_session import UsageData

__all__ = ["ClimateModel", "climate_factor", "severe_share"]


class ClimateModel(BaseModel):
    """Coefficients of the usage model; the defaults are documented in docs/forecast.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_factor: float = Field(
        default=2.0, ge=1.0, le=4.0,
        description="Factor of fully severe use. Sourced: severe-service schedules halve distance "
                    "intervals.")
    short_trip_mean_km: float = Field(
        default=4.0, gt=0, description="Assumption: mean length of a short trip, half the 8 km threshold "
                               "of KEY_USAGE; turns the share of trips into a share of distance.")
    cold_short_trip_multiplier: float = Field(
        default=2.0, ge=1.0, description="Sourced: in freezing weather schedules count trips up to 16 km, "
                                 "twice the threshold; assumed to double the short-trip distance "
                                 "share during cold driving.")
    hot_weight: float = Field(
        default=0.5, ge=0, le=1, description="Assumption: a km in heat above 30 °C counts as half severe.")
    cold_weight: float = Field(
        default=0.25, ge=0, le=1, description="Assumption: a km below 0 °C (outside short trips) counts as a "
                                      "quarter severe.")


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


def severe_share(usage: UsageData, model: ClimateModel | None = None) -> float:
    """Share of distance (0..1) driven under severe-service conditions, from KEY_USAGE."""
    m = model if model is not None else ClimateModel()
    short_trips = usage.short_trip_pct / 100.0
    cold = usage.cold_share_pct / 100.0
    hot = usage.hot_share_pct / 100.0
    severe = usage.severe_duty_pct / 100.0
    if usage.avg_trip_km > 0:
        # Short trips are short: their share of distance is below their share of trips.
        short_distance = _clamp01(short_trips * m.short_trip_mean_km / usage.avg_trip_km)
    else:
        short_distance = short_trips
    short_distance = _clamp01(short_distance * (1.0 + (m.cold_short_trip_multiplier - 1.0) * cold))
    parts = (severe, short_distance, m.hot_weight * hot, m.cold_weight * cold)
    mild = 1.0
    for part in parts:
        mild *= 1.0 - _clamp01(part)
    return _clamp01(1.0 - mild)


def climate_factor(usage: UsageData | None, model: ClimateModel | None = None) -> float:
    """The usage model's factor, >= 1.0, rounded to 0.01; 1.0 when the key had no KEY_USAGE."""
    if usage is None:
        return 1.0
    m = model if model is not None else ClimateModel()
    return round(1.0 + (m.max_factor - 1.0) * severe_share(usage, m), 2)
