"""Metrics for monitoring: an OpenMetrics / Prometheus endpoint through ``prometheus_client``.

Off by default (``--metrics-port`` / ``[metrics] port``), on loopback by default. Why a
collector that reads the agent's own counters at scrape time rather than counters updated on
every event: the readout path already counts everything (the status payload carries the same
figures), and a scrape every 15 s costs less than an increment per frame at 8,600 frames/s.
Only the two histograms are fed as things happen: the delivery time of each acknowledged
message and the duration of each vehicle test.

Names (all prefixed ``cbs_``): counters ``readouts_total``, ``rejections_total{reason}``,
``frames_total``, ``bad_frames_total``, ``vehicle_tests_total{outcome}``,
``commands_total{result}``, ``commands_unanswered_total``, ``published_total``, ``acknowledged_total``, ``refused_total``;
gauges ``outbox_depth``, ``outbox_oldest_age_seconds``, ``reader_connected``,
``broker_connected``; histograms ``delivery_seconds`` (stored in the outbox to the broker's
PUBACK) and ``vehicle_test_seconds``. docs/operations.md lists them with their meaning.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.errors import ConfigError

log = logging.getLogger(__name__)

# Delivery times of a local broker are milliseconds; an outage makes them hours.
DELIVERY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 300.0,
                    3600.0, 86400.0)
TEST_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class VehicleTestMetrics:
    """Counts vehicle tests by outcome and times them (fed by the diagnostics runner)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._seconds = None if registry is None else Histogram(
            "cbs_vehicle_test_seconds", "Duration of a whole vehicle test.",
            buckets=TEST_BUCKETS, registry=registry)

    def observe(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
        if self._seconds is not None:
            self._seconds.observe(seconds)


class AgentCollector(Collector):
    """Reads the running agent's figures at scrape time."""

    def __init__(self, service: Any, commands: Any | None = None,
                 vehicle_tests: VehicleTestMetrics | None = None) -> None:
        self.service = service
        self.commands = commands
        self.vehicle_tests = vehicle_tests

    def collect(self) -> Iterator[Metric]:
        service = self.service
        counters = service.reader.counters
        publisher = service.publisher
        yield _counter("cbs_readouts", "Key readouts read and stored.", service.readouts)
        rejections = CounterMetricFamily("cbs_rejections", "Key sessions rejected, by reason.",
                                         labels=["reason"])
        for reason, count in sorted(service.rejections_by_reason.items()):
            rejections.add_metric([reason], count)
        yield rejections
        yield _counter("cbs_forecasts_before_end", "Readouts forecast in the gap before their "
                       "END frame (the history's part off the path to the broker).",
                       service.pipeline.counters["prepared_used"])
        yield _counter("cbs_frames", "Frames read from the key reader.", counters.frames)
        yield _counter("cbs_bad_frames", "Frames refused (CRC, framing).", counters.bad_frames)
        yield _counter("cbs_published", "Outbox messages handed to the broker.",
                       publisher.published)
        yield _counter("cbs_acknowledged", "Outbox messages the broker acknowledged.",
                       publisher.acked)
        yield _counter("cbs_refused", "Outbox messages the broker refused.", publisher.failed)
        tests = CounterMetricFamily("cbs_vehicle_tests", "Vehicle tests, by outcome.",
                                    labels=["outcome"])
        if self.vehicle_tests is not None:
            for outcome, count in sorted(self.vehicle_tests.outcomes.items()):
                tests.add_metric([outcome], count)
        yield tests
        commands = CounterMetricFamily("cbs_commands", "Integrator commands, by result.",
                                       labels=["result"])
        if self.commands is not None:
            for result, count in sorted(self.commands.results.items()):
                commands.add_metric([result], count)
        yield commands
        yield _counter("cbs_commands_unanswered", "Integrator commands without a response topic.",
                       0 if self.commands is None else self.commands.unanswered)
        yield GaugeMetricFamily("cbs_outbox_depth", "Messages waiting in the outbox.",
                                value=service.outbox.depth())
        oldest = service.outbox.oldest_age_s(time.time())
        yield GaugeMetricFamily("cbs_outbox_oldest_age_seconds",
                                "Age of the oldest message in the outbox (0 when empty).",
                                value=0.0 if oldest is None else oldest)
        yield GaugeMetricFamily("cbs_reader_connected", "1 while the key reader is connected.",
                                value=1.0 if service.reader.connected else 0.0)
        yield GaugeMetricFamily("cbs_broker_connected", "1 while the broker is connected.",
                                value=1.0 if publisher.connected else 0.0)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class MetricsEndpoint:
    """The HTTP endpoint and the registry behind it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.registry = CollectorRegistry()
        self.delivery = Histogram("cbs_delivery_seconds",
                                  "From storing a message in the outbox to the broker's PUBACK.",
                                  buckets=DELIVERY_BUCKETS, registry=self.registry)
        self.vehicle_tests = VehicleTestMetrics(self.registry)
        self._server: Any = None

    def register(self, collectors: Iterable[Collector]) -> None:
        for collector in collectors:
            self.registry.register(collector)

    def delivered(self, wall_clock: Callable[[], float] = time.time) -> Callable[[float], None]:
        """The publisher's hook: called with each acknowledged message's ``created_at``."""
        observe = self.delivery.observe

        def on_delivered(created_at: float) -> None:
            observe(max(0.0, wall_clock() - created_at))
        return on_delivered

    def start(self) -> None:
        """Listen; raises ConfigError when the port cannot be bound."""
        try:
            self._server, _thread = start_http_server(self.port, addr=self.host,
                                                      registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"metrics: cannot listen on {self.host}:{self.port}: "
                              f"{exc.strerror or exc}") from exc
        self.port = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
