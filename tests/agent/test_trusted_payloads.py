"""Payloads built with ``agent.domain.models.construct`` are exactly what pydantic's validation makes
of them: the property that lets the agent skip validating its own readouts (agent/domain/models.py).

Any valid session (every field over its whole protocol range) goes through the encoder, the
real assembler and the pipeline (proposal in any language, any look-ahead and express
budget) with an earlier reading in its vehicle history; the readout must then survive
``model_validate`` of its own dump, and of its wire JSON, unchanged. A value outside a
model's limits, a field missing or a wrong type fails here. The same readouts check the
reminders store's copy without the proposal (``without_proposal``, cut from the wire JSON)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.domain.forecast import ForecastSettings
from agent.domain.i18n import LANGUAGES
from agent.domain.models import KeyInfo, Proposal, Readout, construct, to_json, without_proposal
from agent.domain.proposal import ProposalContext, ProposalSettings
from agent.pipeline import ReadoutPipeline
from agent.store.history import VehicleHistory
from protocols.encoder import encode_session
from protocols.session import SessionAccepted, SessionAssembler
from tests.protocols.strategies import examples, key_sessions


@settings(max_examples=examples(150), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(session=key_sessions(), days_later=st.integers(0, 800), start=st.floats(1.7e9, 1.9e9),
       language=st.sampled_from(LANGUAGES), look_ahead_days=st.integers(0, 400),
       budget=st.integers(0, 300))
def test_constructed_readout_is_what_validation_makes_of_it(tmp_path, session, days_later, start,
                                                            language, look_ahead_days,
                                                            budget) -> None:
    history = VehicleHistory(tmp_path / f"history-{id(session)}.sqlite3")
    proposal = ProposalContext(settings=ProposalSettings(look_ahead_days=look_ahead_days,
                                                         express_budget_minutes=budget),
                               language=language)
    pipeline = ReadoutPipeline(site="S1", reader="desk1", transport="can",
                               forecast=ForecastSettings(), history=history, proposal=proposal)
    readouts = []
    for moment in (start, start + days_later * 86400.0):  # the second forecasts from the first
        event = _accepted(session, moment)
        readout = pipeline.readout(event)
        pipeline.remember(event.session, readout)
        readouts.append(readout)
    history.close()
    for readout in readouts:
        validated = Readout.model_validate(readout.model_dump())
        assert validated == readout
        assert to_json(validated) == to_json(readout)
        assert Readout.model_validate_json(to_json(readout)) == validated
        # The reminders store's copy, cut from the wire JSON, is to_json's without a proposal.
        without = readout.model_copy(update={"proposal": None})
        assert without_proposal(to_json(readout)) == to_json(without)
        assert without_proposal(to_json(without)) == to_json(without)


def _accepted(session, moment: float) -> SessionAccepted:
    assembler = SessionAssembler()
    accepted = [e for f in encode_session(session, start_time=moment)
                for e in assembler.feed(f) if isinstance(e, SessionAccepted)]
    assert len(accepted) == 1
    return accepted[0]


def test_construct_refuses_fields_out_of_order_or_missing() -> None:
    class Probe(KeyInfo):
        pass
    with pytest.raises(TypeError, match="every field in order"):
        construct(Probe, {"slot": 1, "key_id": 2})
    assert construct(KeyInfo, {"key_id": 2, "slot": 1}) == KeyInfo(key_id=2, slot=1)


def test_no_model_inside_a_proposal_has_a_field_named_proposal() -> None:
    """``without_proposal`` relies on it (and on the proposal being the readout's last field)."""
    import typing

    from pydantic import BaseModel

    seen: set[type] = set()

    def models_in(annotation: object) -> list[type[BaseModel]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]

    pending: list[type[BaseModel]] = [Proposal]
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            assert "proposal" not in (name, field.alias), f"{model.__name__}.{name}"
            pending.extend(models_in(field.annotation))
    assert len(seen) > 1  # the walk reached the nested models
    assert list(Readout.model_fields)[-1] == "proposal"
