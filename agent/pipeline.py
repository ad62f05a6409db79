"""From session events to the contract's payloads, shared by ``run`` and ``decode`` so that a
capture decodes exactly as the live agent would have published it.

A readout takes one pass (docs/architecture.md): the vehicle's history (store) -> the forecast
(domain, pure) -> the payload with its priced proposal (contract) -> back to the service,
which commits it to the outbox and only then remembers it (:meth:`ReadoutPipeline.remember`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from agent.contract.payloads import build_rejection, readout_payload
from agent.domain.forecast import ForecastSettings, forecast_session
from agent.domain.models import Readout, Rejected, Transport, event_time
from agent.domain.proposal import ProposalContext, default_proposal_context
from agent.store.deferred import DeferredHistory
from agent.store.history import VehicleHistory
from protocols.key_session import KeySession
from protocols.session import SessionAccepted, SessionRejected


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

    def readout(self, event: SessionAccepted, read_at: datetime | None = None) -> Readout:
        moment = read_at if read_at is not None else event_time(event.completed_at)
        session = event.session
        past = self.history.readings(session.vin) if self.history is not None else []
        result = forecast_session(session, moment, past, self.forecast_settings)
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
