"""From session events to the contract's payloads, shared by ``run`` and ``decode`` so that a
capture decodes exactly as the live agent would have published it.

A readout takes one pass (docs/architecture.md): the vehicle's history (store) -> the forecast
(domain, pure) -> the payload with its priced proposal (contract) -> back to the service,
which commits it to the outbox and only then remembers it (:meth:`ReadoutPipeline.remember`).

The live agent may take the first two steps early: :meth:`ReadoutPipeline.prepare` forecasts
a session whose data frames are all in, before its END frame arrives, and
:meth:`ReadoutPipeline.readout` uses that forecast when END accepts that very session on the
same day with the history unchanged, so the payload is exactly what it would have computed
then. Why: the history's lookup and the forecast's trends are the part of a readout that
grows with the history a vehicle has; in the gap before END (a frame's time on the wire) they
cost the advisor nothing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from agent.contract.payloads import build_rejection, readout_payload
from agent.domain.forecast import (
    ForecastResult,
    ForecastSettings,
    PastReading,
    SummarizedReadings,
    forecast_session,
    read_date_of,
)
from agent.domain.models import Readout, Rejected, Transport, event_time
from agent.domain.proposal import ProposalContext, default_proposal_context
from agent.store.deferred import DeferredHistory
from agent.store.history import VehicleHistory
from protocols.key_session import KeySession
from protocols.session import SessionAccepted, SessionRejected


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A forecast made before END: for which session, as of when, on which history."""

    session: KeySession
    read_date: date
    # The earlier readouts it was made from: none, or summarised (their summary says for which
    # moments it stands).
    past: Sequence[PastReading]
    history_version: object
    result: ForecastResult


class ReadoutPipeline:
    """Builds payloads; forecasts from the vehicle's history when one is kept.

    ``remember`` is separate from ``readout`` so the live agent can commit the readout to its
    outbox first: a crash in between then costs a history entry, never a readout.

    ``proposal`` prices the readout (agent/domain/proposal.py); without one, the shipped catalogue
    with default settings in English.
    """

    def __init__(self, *, site: str, reader: str, transport: Transport,
                 forecast: ForecastSettings, history: VehicleHistory | DeferredHistory | None = None,
                 proposal: ProposalContext | None = None) -> None:
        self.site = site
        self.reader = reader
        self.transport: Transport = transport
        self.forecast_settings = forecast
        self.history = history
        self.proposal = proposal if proposal is not None else default_proposal_context()
        self._prepared: _Prepared | None = None
        #: Forecasts made by :meth:`prepare`, and those :meth:`readout` used.
        self.counters: dict[str, int] = {"prepared": 0, "prepared_used": 0}

    def _history_version(self) -> object:
        return None if self.history is None else self.history.version()

    def _past(self, vin: str) -> Sequence[PastReading]:
        return self.history.readings(vin) if self.history is not None else []

    @staticmethod
    def _stands_for(past: Sequence[PastReading], moment: datetime) -> bool:
        """A forecast from ``past`` depends on ``moment`` through its date alone: no earlier
        readouts, or their summary stands for ``moment`` (none read after it)."""
        return not len(past) or (isinstance(past, SummarizedReadings)
                                 and past.summary_until(moment) is not None)

    @property
    def prepared_session(self) -> KeySession | None:
        """The session :meth:`prepare` last forecast, until a readout takes it."""
        return None if self._prepared is None else self._prepared.session

    def prepare(self, session: KeySession, read_at: datetime) -> None:
        """Forecast ``session`` as if read at ``read_at`` (about now: its END frame is still
        to come), for :meth:`readout` to use (module docstring). Only where the forecast
        depends on the moment through its date alone: the vehicle has no earlier readout, or
        the history's summary of them stands for ``read_at`` (none read after it)."""
        self._prepared = None
        version = self._history_version()
        past = self._past(session.vin)
        if not self._stands_for(past, read_at):
            return  # the forecast would read the readings as of the moment: at END
        result = forecast_session(session, read_at, past, self.forecast_settings)
        self._prepared = _Prepared(session, read_date_of(read_at, self.forecast_settings),
                                   past, version, result)
        self.counters["prepared"] += 1

    def _forecast(self, session: KeySession, moment: datetime) -> ForecastResult:
        """The forecast :meth:`prepare` made, when it is the one ``moment`` would give: the
        same session object (the one the assembler previewed and END accepted), the same
        read date, the history unchanged and its summary standing for ``moment``."""
        prepared, self._prepared = self._prepared, None
        if (prepared is not None and prepared.session is session
                and self._stands_for(prepared.past, moment)
                and read_date_of(moment, self.forecast_settings) == prepared.read_date
                and self._history_version() == prepared.history_version):
            self.counters["prepared_used"] += 1
            return prepared.result
        return forecast_session(session, moment, self._past(session.vin), self.forecast_settings)

    def readout(self, event: SessionAccepted, read_at: datetime | None = None) -> Readout:
        moment = read_at if read_at is not None else event_time(event.completed_at)
        result = self._forecast(event.session, moment)
        return readout_payload(event, site=self.site, reader=self.reader,
                               transport=self.transport, read_at=moment, forecast=result,
                               proposal=self.proposal)

    def rejection(self, event: SessionRejected, at: datetime | None = None) -> Rejected:
        return build_rejection(event, site=self.site, reader=self.reader,
                               transport=self.transport, at=at)

    def remember(self, session: KeySession, readout: Readout) -> None:
        if self.history is not None:
            self.history.record(session, readout.read_at, readout.readout_id)

    def remember_many(self, accepted: Iterable[tuple[KeySession, Readout]]) -> None:
        """:meth:`remember` several readouts in one history transaction."""
        if self.history is not None:
            self.history.record_many([(session, readout.read_at, readout.readout_id)
                                      for session, readout in accepted])
