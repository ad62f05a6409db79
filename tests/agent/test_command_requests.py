"""The command contract without I/O: whatever bytes arrive on a command topic become a request
or a refusal with a code (never an exception), valid requests round-trip, and the token bucket
keeps its rate."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.contract.commands import (
    COMMANDS,
    MAX_REQUEST_BYTES,
    CommandRefused,
    CommandRequest,
    RateLimiter,
    RepublishArguments,
    Response,
    error_response,
    ok_response,
    parse_request,
)

VINS = st.from_regex(r"[A-HJ-NPR-Z0-9]{17}", fullmatch=True)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20)


@settings(max_examples=400)
@given(name=st.sampled_from(COMMANDS) | st.text(max_size=30), payload=st.binary(max_size=300))
def test_garbage_never_raises(name: str, payload: bytes) -> None:
    outcome = parse_request(name, payload)
    assert isinstance(outcome, CommandRequest | CommandRefused)
    if isinstance(outcome, CommandRefused):
        assert outcome.detail and outcome.code
        Response.model_validate_json(error_response(outcome.name, outcome.code, outcome.detail))


@settings(max_examples=300)
@given(name=st.sampled_from(COMMANDS), value=JSON)
def test_any_json_is_a_request_or_a_refusal(name: str, value: object) -> None:
    outcome = parse_request(name, json.dumps(value).encode())
    if not isinstance(value, dict):
        assert isinstance(outcome, CommandRefused) and outcome.code == "bad_arguments"


@given(vin=VINS)
def test_republish_round_trips(vin: str) -> None:
    outcome = parse_request("republish", json.dumps({"vin": vin}).encode())
    assert isinstance(outcome, CommandRequest)
    assert outcome.arguments == RepublishArguments(vin=vin)


def test_deep_nesting_and_size_are_refused() -> None:
    deep = parse_request("ping", b"[" * 50_000 + b"]" * 50_000)
    assert isinstance(deep, CommandRefused) and deep.code == "too_large"
    nested = parse_request("ping", b'{"a":' * 5_000 + b"1" + b"}" * 5_000)
    assert isinstance(nested, CommandRefused) and nested.code in ("malformed", "bad_arguments")
    assert isinstance(parse_request("ping", b" " * MAX_REQUEST_BYTES), CommandRequest)
    huge = parse_request("ping", b" " * (MAX_REQUEST_BYTES + 1))
    assert isinstance(huge, CommandRefused) and huge.code == "too_large"


def test_answers_follow_the_schema() -> None:
    ok = json.loads(ok_response("ping", {"version": "1"}))
    assert ok == {"schema": "cbs.response/1", "command": "ping", "ok": True,
                  "result": {"version": "1"}, "error": None}
    bad = json.loads(error_response("x", "unknown_command", "no"))
    assert bad["ok"] is False and bad["error"] == {"code": "unknown_command", "detail": "no"}


@given(rate=st.floats(0.5, 50), burst=st.integers(1, 30),
       gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200))
def test_the_bucket_never_admits_more_than_burst_plus_rate(rate: float, burst: int,
                                                           gaps: list[float]) -> None:
    limiter = RateLimiter(rate, burst)
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        admitted += limiter.allow(now)
    assert admitted <= burst + rate * now + 1e-6
    assert RateLimiter(rate, burst).allow(0.0)
