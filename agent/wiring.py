"""Assembling a running agent from its settings: the one place that knows every concrete class.

Readers are chosen lazily (python-can is imported only for a CAN reader) to keep start-up fast.
"""

from __future__ import annotations

import logging

from agent.commands import CommandHandler
from agent.config import AgentSettings, security_warnings
from agent.contract.topics import Topics, reminders_topic
from agent.domain.catalogue import load_catalogue
from agent.domain.i18n import check_language
from agent.domain.proposal import ProposalContext
from agent.errors import ConfigError
from agent.metrics import AgentCollector, MetricsEndpoint, VehicleTestMetrics
from agent.mqtt.commands import CommandLink
from agent.mqtt.publisher import MqttPublisher
from agent.pipeline import ReadoutPipeline
from agent.readers.base import KeyReader
from agent.service import AgentService
from agent.store.deferred import DeferredHistory, DeferredOutbox, DeferredReminders
from agent.store.history import VehicleHistory
from agent.store.outbox import Outbox
from agent.store.reminders import ReminderService
from agent.store.sqlite import BackgroundCheckpointer, make_private_dir
from dbc import DbcError, key_reader_database
from protocols.key_messages import MESSAGE_NAMES
from protocols.session import SessionAssembler

log = logging.getLogger(__name__)


def load_database(settings: AgentSettings):  # type: ignore[no-untyped-def]
    """The key reader's DBC (shipped, or the configured file), checked to describe every
    message of the protocol; raises ConfigError naming the file and what is missing."""
    path = str(settings.dbc_file) if settings.dbc_file else None
    try:
        db = key_reader_database(path)
    except DbcError as exc:
        raise ConfigError(str(exc)) from exc
    for frame_id, name in MESSAGE_NAMES.items():
        try:
            db.get_message_by_frame_id(frame_id)
        except KeyError:
            raise ConfigError(f"{path or 'dbc'}: message {name} (0x{frame_id:03X}) is missing") from None
    return db


def proposal_context(settings: AgentSettings) -> ProposalContext:
    """The context of the agent's settings (``[catalogue]``, ``[proposal]``, ``language``).
    Loads and validates the catalogue: call it at start-up, where a
    :class:`~agent.domain.catalogue.CatalogueError` (a ConfigError) stops the agent with exit 2."""
    return ProposalContext(catalogue=load_catalogue(settings.catalogue),
                           settings=settings.proposal, language=check_language(settings.language))


def open_reminders(settings: AgentSettings, context: ProposalContext, *,
                   prefix: str) -> ReminderService | None:
    """The agent's reminder service (``state_dir/reminders.sqlite3``), or None when
    ``[reminders] enabled = false``. Raises ReminderError if the store cannot be opened."""
    if not settings.reminders.enabled:
        return None
    return _reminder_service(settings, context, prefix=prefix)


def _reminder_service(settings: AgentSettings, context: ProposalContext, *,
                      prefix: str) -> ReminderService:
    return ReminderService(settings.state_dir / "reminders.sqlite3", site=settings.site,
                           reader=settings.reader, topic=reminders_topic(prefix, settings.site),
                           settings=settings.reminders, forecast=settings.forecast,
                           context=context, retention_days=settings.history.retention_days)


def build_reader(settings: AgentSettings) -> KeyReader:
    if settings.can_interface:
        from agent.readers.can_reader import CanKeyReader
        return CanKeyReader(settings.can_interface, settings.can_channel or "",
                            bitrate=settings.can_bitrate)
    if not settings.serial:
        raise ConfigError("no reader configured: set serial (--serial PORT) or can_interface "
                          "and can_channel (--can-interface NAME --can-channel CH)")
    from agent.readers.serial_reader import SerialKeyReader
    return SerialKeyReader(settings.serial, baudrate=settings.baudrate)


def build_service(settings: AgentSettings) -> AgentService:
    db = load_database(settings)
    reader = build_reader(settings)
    for warning in security_warnings(settings):
        log.warning("%s", warning)
    try:
        make_private_dir(settings.state_dir)  # 0700 whatever the umask; the files are 0600
    except OSError as exc:
        raise ConfigError(f"state_dir {settings.state_dir}: cannot create: {exc.strerror}") from exc
    mqtt = settings.effective_mqtt()
    topics = Topics(mqtt.prefix, settings.site, settings.reader)
    # An unwritable state directory is survived, not refused: see agent/store/deferred.py.
    outbox = DeferredOutbox(lambda: Outbox(settings.state_dir / "outbox.sqlite3",
                                           max_messages=settings.outbox.max_messages,
                                           max_age_s=settings.outbox.max_age_days * 86400))
    history = DeferredHistory(lambda: VehicleHistory(
        settings.state_dir / "history.sqlite3", retention_days=settings.history.retention_days,
        max_per_vehicle=settings.history.max_per_vehicle, synchronous="NORMAL",
        settings=settings.forecast))
    publisher = MqttPublisher(mqtt, outbox, topics)
    if mqtt.home_assistant_discovery:
        from agent import __version__
        from agent.contract.ha_discovery import discovery_messages
        publisher.on_connect_retained = discovery_messages(
            topics, settings.site, settings.reader, mqtt.home_assistant_prefix,
            agent_version=__version__)
    pricing = proposal_context(settings)
    pipeline = ReadoutPipeline(site=settings.site, reader=settings.reader,
                               transport=settings.transport, forecast=settings.forecast,
                               history=history, proposal=pricing)
    reminders = None
    if settings.reminders.enabled:
        reminders = DeferredReminders(
            lambda: _reminder_service(settings, pricing, prefix=mqtt.prefix))
    service = AgentService(
        reader=reader, assembler=SessionAssembler(timeout_s=settings.session_timeout_s, db=db),
        pipeline=pipeline, outbox=outbox, publisher=publisher, topics=topics,
        retain_vehicles=mqtt.retain_vehicles, status_interval_s=mqtt.status_interval_s,
        reminders=reminders)
    # Checkpoints of the two large stores' logs off the loop's thread (agent/store/sqlite.py):
    # on years of history a checkpoint in the loop's commit held it for up to 260 ms. Not the
    # outbox: small, its checkpoints cost little, and its behaviour on a full disk stays the
    # one tests/e2e/test_fault_disk_full.py holds it to.
    service.companions.append(BackgroundCheckpointer(
        [settings.state_dir / name for name in ("history.sqlite3", "reminders.sqlite3")]))
    metrics = None
    if settings.metrics_port is not None:
        metrics = MetricsEndpoint(settings.metrics_host, settings.metrics_port)
        publisher.on_delivered = metrics.delivered()
    watcher = build_vehicle_watcher(settings, service,
                                    tests=None if metrics is None else metrics.vehicle_tests)
    if watcher is not None:
        service.companions.append(watcher)
    handler = None
    if settings.commands.enabled:
        handler = CommandHandler(service, settings.commands, vehicle_test=None if watcher is None
                                 else _vehicle_test_command(watcher, settings.diagnostics.protocol,
                                                            settings.commands.timeout_s))
        service.companions.append(CommandLink(
            mqtt, topics, handler, client_id=publisher.client_id + "-cmd"))
    if metrics is not None:
        metrics.register([AgentCollector(service, handler, metrics.vehicle_tests)])
        service.companions.append(metrics)
    return service


def open_outbox(settings: AgentSettings) -> Outbox:
    """The agent's durable outbox (``state_dir/outbox.sqlite3``); raises OutboxError."""
    return Outbox(settings.state_dir / "outbox.sqlite3", max_messages=settings.outbox.max_messages,
                  max_age_s=settings.outbox.max_age_days * 86400)


def diagnosis_publisher(settings: AgentSettings, outbox: Outbox) -> MqttPublisher:
    """The publisher of ``cbs-agent diagnose``: the same outbox and broker as the daemon, under
    its own client id and with its link status on ``{prefix}/{site}/{reader}/diagnose/status``,
    so that a short test never takes over the daemon's session or marks the reader offline."""
    from agent.contract.diagnosis import DiagnoseTopics
    mqtt = settings.effective_mqtt()
    client_id = f"{mqtt.client_id_for(settings.site, settings.reader)}-diagnose"
    mqtt = mqtt.model_copy(update={"client_id": client_id[:256]})
    return MqttPublisher(mqtt, outbox, DiagnoseTopics(mqtt.prefix, settings.site, settings.reader))


def build_vehicle_watcher(settings: AgentSettings, service: AgentService, *,
                          tests: VehicleTestMetrics | None = None):  # type: ignore[no-untyped-def]
    """The daemon's vehicle watcher on ``[diagnostics] can_interface``/``can_channel``, or None
    when no diagnostics channel is configured. Each test's report goes into the service's
    outbox (through its loop's thread, the one writer) like a readout. Raises ConfigError when
    the channel is the key reader's: the two buses never mix."""
    diag = settings.diagnostics
    if not diag.can_interface:
        return None
    if not diag.can_channel:
        raise ConfigError("diagnostics.can_interface needs diagnostics.can_channel")
    if diag.can_channel in (settings.can_channel, settings.serial):
        raise ConfigError(f"diagnostics.can_channel {diag.can_channel} is the key reader's: "
                          "the diagnostics channel must be an interface of its own")
    from datetime import timedelta

    from agent.diagnostics.reporting import make_report, report_messages, summary_line
    from agent.diagnostics.transport import CanChannel
    from agent.diagnostics.watcher import VehicleWatcher
    from agent.domain.diagnosis import VehicleTest, bmw_ecu_names

    prefix = settings.effective_mqtt().prefix

    def on_test(test: VehicleTest) -> dict[str, object]:
        report = make_report(test, site=settings.site, reader=settings.reader,
                             history_path=settings.state_dir / "history.sqlite3",
                             key_window=timedelta(hours=diag.key_link_hours),
                             reports_path=settings.state_dir / "diagnoses.sqlite3")
        if tests is not None:
            finished = test.finished_at or test.started_at
            tests.observe(report.outcome, (finished - test.started_at).total_seconds())
        stored = service.store(report_messages(report, prefix))
        log.log(logging.INFO if stored else logging.ERROR, "vehicle test %s %s: %s",
                report.diagnosis_id, "stored" if stored else "NOT stored yet (held in memory)",
                summary_line(report))
        return {"diagnosis_id": report.diagnosis_id, "outcome": report.outcome,
                "vin": report.vehicle.vin, "stored": stored,
                "summary": report.summary.model_dump(mode="json")}

    def open_channel(receive_ids):  # type: ignore[no-untyped-def]
        return CanChannel(diag.can_interface or "", diag.can_channel or "",
                          bitrate=diag.can_bitrate, receive_ids=receive_ids)

    return VehicleWatcher(open_channel, protocol=diag.protocol,
                          addresses=diag.addresses or sorted(bmw_ecu_names()), on_test=on_test,
                          timing=diag.timing(), probe_interval_s=diag.probe_interval_s)


def _vehicle_test_command(watcher, protocol: str, timeout_s: float):  # type: ignore[no-untyped-def]
    """The commands' ``diagnose`` and ``clear_faults``: ask the watcher for a test now and wait
    for its report's id."""
    from agent.commands import CommandFailure

    def run(wanted: str | None, clear: bool, ecu: int | None) -> dict[str, object]:
        if wanted is not None and wanted != protocol:
            raise CommandFailure("unavailable", f"this agent's diagnostics channel speaks "
                                 f"{protocol}, not {wanted}")
        addresses = frozenset(watcher.addresses if ecu is None else [ecu]) if clear else \
            frozenset()
        try:
            return dict(watcher.request(addresses).result(timeout=timeout_s))
        except TimeoutError as exc:
            raise CommandFailure("failed", f"no vehicle test within {timeout_s:.0f} s (is the "
                                 "diagnostics channel there?)") from exc
    return run
