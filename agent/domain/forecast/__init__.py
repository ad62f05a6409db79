"""The service forecast of the MQTT contract ("The forecast"): when each item falls due.

Public API::

    forecast_session(session, read_at, history, settings) -> ForecastResult   # pure
    ForecastSettings          the [forecast] config section
    PastReading, PastItem     what agent.store.history keeps per earlier readout
    HistoryAnomalies          readouts the forecast ignored (stale keys, odometer rollbacks)

The model and its figures are in docs/forecast.md.
"""

from __future__ import annotations

from agent.domain.forecast.core import ForecastResult, forecast_session, read_date_of, summarize
from agent.domain.forecast.items import (
    DISTANCE_DRIVEN,
    SEVERITY_DRIVEN,
    WEAR_MODELLED,
    ItemRates,
    forecast_item,
    last_day_of_month,
)
from agent.domain.forecast.readings import PastItem, PastReading
from agent.domain.forecast.settings import ForecastSettings
from agent.domain.forecast.trends import HistoryAnomalies

__all__ = [
    "DISTANCE_DRIVEN",
    "SEVERITY_DRIVEN",
    "WEAR_MODELLED",
    "ForecastResult",
    "ForecastSettings",
    "HistoryAnomalies",
    "ItemRates",
    "PastItem",
    "PastReading",
    "forecast_item",
    "forecast_session",
    "last_day_of_month",
    "read_date_of",
    "summarize",
]
