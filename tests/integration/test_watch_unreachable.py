"""`cbs-agent watch` with a broker it cannot reach says why, and keeps trying."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

from broker import free_port

from agent.tools.watch import WatchState, render


def test_the_view_shows_why_the_broker_is_not_reachable() -> None:
    state = WatchState(broker_error="cannot reach the broker at 10.0.0.9:1883: no route to host")
    lines = render(state, width=100, height=20, lang="en", color=False,
                   now=datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc))
    assert " cannot reach the broker at 10.0.0.9:1883: no route to host; retrying ..." in lines
    state.broker_connected = True
    assert not any("cannot reach" in line for line in render(
        state, width=100, height=20, lang="en", color=False,
        now=datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)))


def test_watch_in_a_pipe_says_why_on_stderr() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "agent", "watch", "--broker",
                                f"mqtt://127.0.0.1:{port}"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0
    assert (f"cbs-agent watch: cannot reach the broker at 127.0.0.1:{port}: connection refused; "
            "retrying") in err.splitlines()
    assert err.count("connection refused") == 1  # said once, not on every retry


def test_the_subscriber_example_says_why() -> None:
    from pathlib import Path
    example = Path(__file__).resolve().parents[2] / "examples" / "subscriber.py"
    port = free_port()
    process = subprocess.Popen([sys.executable, str(example), "--broker",
                                f"mqtt://127.0.0.1:{port}"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate()
    assert (f"cannot connect to the broker at 127.0.0.1:{port}: connection refused; retrying"
            in err.splitlines()), err
