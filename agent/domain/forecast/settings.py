"""The forecast's configuration (the ``[forecast]`` section of the agent's config).

The contract fixes the first five knobs' meaning and defaults; the rest tune the model and are
explained, with the reasons for their defaults, in docs/forecast.md.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.domain.climate import ClimateModel

__all__ = ["ForecastSettings"]


class ForecastSettings(BaseModel):
    """Knobs of :func:`agent.domain.forecast.forecast_session`; every default is documented."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- fixed by the contract -------------------------------------------------------------
    default_km_per_day: float = Field(default=40.0, gt=0, description="Daily distance without history or age.")
    horizon_days: int = Field(default=30, ge=0, description="due_soon within this many days (inclusive).")
    horizon_km: int = Field(default=2000, ge=0, description="due_soon when the key's remaining km <= this.")
    express_types: list[str] = Field(
        default_factory=lambda: ["engine_oil", "microfilter", "vehicle_check"],
        description="Service types an express lane may do.")
    timezone: str = Field(default="UTC", description="Site time zone (IANA name) that defines the read date.")
    # --- daily distance ----------------------------------------------------------------------
    min_history_days: int = Field(default=7, ge=1, description="History must span this many days...")
    min_history_km: int = Field(default=100, ge=1, description="...and this many km to be used.")
    history_half_life_days: float = Field(
        default=120.0, gt=0, description="A history segment this much older than the current data date "
                                 "weighs half as much.")
    history_prior_days: float = Field(
        default=0.0, ge=0, description="Shrink the history rate toward the vehicle-age (or default) rate as "
                               "if that were observed over this many days; 0 = history only.")
    max_plausible_km_per_day: float = Field(
        default=1500.0, gt=0, description="A history segment faster than this is a misread; it is ignored "
                                  "and counted.")
    min_vehicle_age_days: int = Field(default=30, ge=1, description="vehicle_age basis needs this age.")
    build_day: int = Field(default=15, ge=1, le=28, description="Day of the build month taken as build date.")
    # --- per-item rates ----------------------------------------------------------------------
    min_ratio_km: int = Field(
        default=500, ge=1, description="Distance over which an item's remaining km must have been watched "
                               "before its own fall rate replaces the climate factor.")
    min_item_ratio: float = Field(default=0.5, gt=0, description="Clamp of a learned per-item fall rate.")
    max_item_ratio: float = Field(default=3.0, gt=0, description="Clamp of a learned per-item fall rate.")
    max_climate_factor: float = Field(default=3.0, ge=1.0, description="Clamp of the published factor.")
    # --- wear (availability trend) -----------------------------------------------------------
    min_wear_km: int = Field(default=1000, ge=1, description="Distance a per-km availability trend must span.")
    min_wear_days: int = Field(default=30, ge=1, description="Days a per-day availability trend must span.")
    min_wear_drop_pct: int = Field(default=2, ge=1, description="Availability fall a trend must show.")
    nominal_wear_life_days: int = Field(
        default=730, ge=1, description="Fallback for an item with only an availability and no trend: 100 % "
                               "lasts this long.")
    max_projection_days: int = Field(
        default=7300, ge=1, description="A projection never reaches further than this from the data date.")
    # --- the interval (due_date_early / due_date_late; agent/domain/forecast/spread.py) -------
    km_per_day_day_sd: float = Field(
        default=0.5, ge=0, le=10, description="Prior relative spread of one day's distance about the owner's "
                               "level (weekdays, holidays, days off); a vehicle's own history "
                               "segments replace it as they accumulate.")
    km_per_day_spread_prior_segments: float = Field(
        default=2.0, ge=0, le=1000, description="Weight, in history segments, of the priors of the daily "
                               "scatter and of the wear trend's fit.")
    km_per_day_drift_sd_per_year: float = Field(
        default=0.12, ge=0, le=10, description="Relative spread the owner's daily distance drifts by in a "
                               "year (new job, moves, habits), a random walk.")
    km_per_day_age_sd: float = Field(
        default=0.15, ge=0, le=10, description="Relative error of mileage over age as today's daily distance, "
                               "besides the drift since the build.")
    km_per_day_fleet_sd: float = Field(
        default=0.6, ge=0, le=10, description="Relative spread of daily distances across vehicles: the "
                               "error of the default.")
    fall_rate_sd_at_1000_km: float = Field(
        default=0.1, ge=0, le=10, description="Relative error of a fall rate learned over 1,000 km "
                               "(shrinks with the square root of the km watched).")
    climate_factor_sd: float = Field(
        default=0.1, ge=0, le=10, description="Relative error of the usage model's climate factor (first "
                               "visit, severity-driven items).")
    severity_limit_sd: float = Field(
        default=0.06, ge=0, le=10, description="Relative error of a severity-driven item's remaining km as "
                               "its limit (oil's countdown speeds up late in its life).")
    wear_modelled_limit_sd: float = Field(
        default=0.2, ge=0, le=10, description="Relative error of the car's own wear model behind brake "
                               "pads' (clutch, shock absorbers') remaining km.")
    wear_trend_sd: float = Field(
        default=0.18, ge=0, le=10, description="Prior relative error of an availability trend carried as far "
                               "as the fall it was seen over.")
    nominal_wear_life_sd: float = Field(
        default=0.5, ge=0, le=10, description="Relative error of the nominal wear life of an "
                               "availability-only item without a trend.")
    climate: ClimateModel = Field(default_factory=lambda: ClimateModel(),
                                  description="Usage model for vehicles without history.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
