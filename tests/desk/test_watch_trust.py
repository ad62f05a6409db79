"""The terminal view made trustworthy: nothing cut silently, the proposal's gross total and
the planned reminders, the one express-lane verdict (agent/tools/watch.py render, pure)."""

from __future__ import annotations

import json
from datetime import timedelta

from desk_payloads import PREFIX, READER, SITE, SPEC_READ_AT, spec_readout, status

from agent.tools.watch import WatchState, display_width, render, wrap

NOW = SPEC_READ_AT + timedelta(minutes=1)
TOPIC = f"{PREFIX}/{SITE}/{READER}"


def state_with(readout: dict) -> WatchState:
    state = WatchState()
    state.broker_connected = True
    state.apply(f"{TOPIC}/status", status())
    state.apply(f"{TOPIC}/readout", json.dumps(readout).encode())
    return state


def test_gross_total_reminders_and_verdict_are_shown() -> None:
    readout = spec_readout()
    screen = "\n".join(render(state_with(readout), width=140, color=False, now=NOW))
    assert f"Total incl. tax {readout['proposal']['totals']['gross']} EUR" in screen
    assert "Reminders planned: Engine oil and filter 2026-12-05 · Brake fluid 2027-03-01" in screen
    assert "EXPRESS LANE: NO" in screen and "an active check-control message" in screen
    assert f"{READER} ONLINE" in screen.splitlines()[0]


def test_long_names_are_never_cut() -> None:
    readout = spec_readout()
    readout["services"][1]["type"] = "transfer_case_oil"
    for width in (60, 80):
        lines = render(state_with(readout), width=width, color=False, now=NOW)
        assert all(display_width(line) <= width for line in lines)
        assert any("Transfer case / differential oil" in line for line in lines)


def test_what_does_not_fit_is_counted_not_dropped() -> None:
    lines = render(state_with(spec_readout()), width=80, height=12, color=False, now=NOW)
    assert len(lines) == 12 and "more lines (enlarge the window)" in lines[-1]
    everything = render(state_with(spec_readout()), width=80, height=500, color=False, now=NOW)
    assert not any("more lines" in line for line in everything)


def test_wrap_keeps_every_character() -> None:
    line = "\x1b[1;31m" + "word " * 40 + "\x1b[0m end"
    pieces = wrap(line, 30)
    assert all(display_width(piece) <= 30 for piece in pieces)
    plain = " ".join(piece.replace("\x1b[1;31m", "").replace("\x1b[0m", "").strip()
                     for piece in pieces)
    assert plain.split() == (["word"] * 40) + ["end"]
