"""The service forecast of the MQTT contract ("The forecast"): when each item falls due.

Public API::

    forecast_session(session, read_at, history, settings) -> ForecastResult   # pure
    ForecastSettings          the [forecast] config section
    PastReading, PastItem     what agent.store.history keeps per earlier readout
    HistorySummary            the walk over a vehicle's earlier readouts, in the form the forecast reads
    summarize_history(readings, vin, settings, until=None) -> HistorySummary; extend(summary, reading, settings)
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
from agent.domain.forecast.trends import (
    HistoryAnomalies,
    HistorySummary,
    SummarizedReadings,
    extend,
)
from agent.domain.forecast.trends import summarize as summarize_history

__all__ = [
    "DISTANCE_DRIVEN",
    "SEVERITY_DRIVEN",
    "WEAR_MODELLED",
    "ForecastResult",
    "ForecastSettings",
    "HistoryAnomalies",
    "HistorySummary",
    "ItemRates",
    "PastItem",
    "PastReading",
    "SummarizedReadings",
    "forecast_item",
    "forecast_session",
    "last_day_of_month",
    "extend",
    "read_date_of",
    "summarize",
    "summarize_history",
]
