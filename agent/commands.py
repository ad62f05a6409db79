"""Carrying out integrators' commands: the application's side of the command link.

The link (:mod:`agent.mqtt.commands`) hands over each request on paho's thread; the contract
(:mod:`agent.contract.commands`) says what it is. Here each is answered:

* ``ping`` and ``status`` at once (they only read);
* ``republish`` on the service loop's thread, the outbox's one writer (``AgentService.submit``);
* ``diagnose`` and ``clear_faults`` on a worker thread, one vehicle test at a time (a second
  request meanwhile is answered ``busy``); the report itself goes to its own topic through the
  outbox, the answer names its ``diagnosis_id``. ``clear_faults`` is refused unless
  ``[commands] clear_faults = true``.

Every request is counted by result (:attr:`CommandHandler.results`, for the metrics), a flood
is cut by a token bucket, and a refused request is logged; a request with no response topic is
carried out (or refused) all the same and counted as unanswered.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from agent import __version__
from agent.contract.commands import (
    ClearFaultsArguments,
    CommandRefused,
    CommandSettings,
    DiagnoseArguments,
    ErrorCode,
    RateLimiter,
    RepublishArguments,
    error_response,
    ok_response,
    parse_request,
)
from agent.mqtt.commands import Reply

log = logging.getLogger(__name__)

_QUIET_S = 10.0  # a flood is logged once per this long


class CommandTarget(Protocol):
    """What the commands act on (the running AgentService)."""

    def status_json(self) -> str: ...

    def submit(self, job: Callable[[], None]) -> None: ...

    def republish(self, vin: str) -> dict[str, object]: ...


#: ``run_vehicle_test(protocol, clear_faults, ecu) -> result``: a whole vehicle test; its report
#: is stored for delivery by the callee; the result names the ``diagnosis_id``.
VehicleTest = Callable[[str | None, bool, int | None], dict[str, Any]]


class CommandFailure(Exception):
    """A command that could not be carried out, with its error code."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code: ErrorCode = code


class CommandHandler:
    def __init__(self, target: CommandTarget, settings: CommandSettings, *,
                 vehicle_test: VehicleTest | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.settings = settings
        self.vehicle_test = vehicle_test
        self._clock = clock
        self._started = clock()
        self._limiter = RateLimiter(settings.rate_per_s, settings.burst)
        self._lock = threading.Lock()
        self._testing = False
        self._flood_logged_at: float | None = None
        self.results: collections.Counter[str] = collections.Counter()  # "ok" or error code
        self.unanswered = 0

    def __call__(self, name: str, payload: bytes, reply: Reply) -> None:
        with self._lock:
            allowed = self._limiter.allow(self._clock())
        if not allowed:
            self._refuse(CommandRefused(name, "rate_limited", "too many requests; try again "
                                        f"in {1 / self.settings.rate_per_s:.1f} s"), reply)
            return
        request = parse_request(name, payload)
        if isinstance(request, CommandRefused):
            self._refuse(request, reply)
            return
        arguments = request.arguments
        try:
            if name == "ping":
                self._answer(name, reply, {"version": __version__,
                                           "uptime_s": round(self._clock() - self._started, 3)})
            elif name == "status":
                self._answer(name, reply, json.loads(self.target.status_json()))
            elif name == "republish":
                assert isinstance(arguments, RepublishArguments)
                self.target.submit(lambda: self._republish(arguments.vin, reply))
            elif name == "diagnose":
                assert isinstance(arguments, DiagnoseArguments)
                self._start_test(name, reply, arguments.protocol, False, None)
            else:
                assert isinstance(arguments, ClearFaultsArguments)
                if not self.settings.clear_faults:
                    raise CommandFailure("disabled", "clear_faults is disabled in this agent's "
                                         "configuration ([commands] clear_faults = false)")
                self._start_test(name, reply, arguments.protocol, True, arguments.ecu)
        except CommandFailure as exc:
            self._refuse(CommandRefused(name, exc.code, str(exc)), reply)

    # -- the commands that wait -------------------------------------------------------------

    def _republish(self, vin: str, reply: Reply) -> None:
        try:
            result = self.target.republish(vin)
        except LookupError as exc:
            self._refuse(CommandRefused("republish", "not_found", str(exc)), reply)
        except RuntimeError as exc:
            self._refuse(CommandRefused("republish", "unavailable", str(exc)), reply)
        except Exception as exc:  # the store failed: say so, keep going
            self._refuse(CommandRefused("republish", "failed", str(exc)), reply)
        else:
            self._answer("republish", reply, result)

    def _start_test(self, name: str, reply: Reply, protocol: str | None, clear: bool,
                    ecu: int | None) -> None:
        test = self.vehicle_test
        if test is None:
            raise CommandFailure("unavailable", "this agent has no diagnostics channel "
                                 "configured ([diagnostics] can_interface)")
        with self._lock:
            if self._testing:
                raise CommandFailure("busy", "a vehicle test is running; try again when it ends")
            self._testing = True

        def run() -> None:
            try:
                result = test(protocol, clear, ecu)
            except CommandFailure as exc:
                self._refuse(CommandRefused(name, exc.code, str(exc)), reply)
            except Exception as exc:
                log.exception("command %s: the vehicle test failed", name)
                self._refuse(CommandRefused(name, "failed", str(exc)), reply)
            else:
                self._answer(name, reply, result)
            finally:
                with self._lock:
                    self._testing = False

        threading.Thread(target=run, name=f"cbs-command-{name}", daemon=True).start()

    # -- answers ------------------------------------------------------------------------------

    def _answer(self, name: str, reply: Reply, result: dict[str, Any]) -> None:
        self._count("ok", reply)
        reply.send(ok_response(name, result))

    def _refuse(self, refused: CommandRefused, reply: Reply) -> None:
        self._count(refused.code, reply)
        if refused.code == "rate_limited":
            now = self._clock()
            if self._flood_logged_at is None or now - self._flood_logged_at >= _QUIET_S:
                self._flood_logged_at = now
                log.warning("commands: rate limit reached (%s/s, bursts of %d); %d refused so "
                            "far", self.settings.rate_per_s, self.settings.burst,
                            self.results["rate_limited"])
        else:
            log.warning("command %s refused (%s): %s%s", refused.name, refused.code,
                        refused.detail, "" if reply.topic else " (no response topic)")
        reply.send(error_response(refused.name, refused.code, refused.detail))

    def _count(self, result: str, reply: Reply) -> None:
        with self._lock:
            self.results[result] += 1
            if reply.topic is None:
                self.unanswered += 1
