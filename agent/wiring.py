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
from agent.metrics import AgentCollector, MetricsEndpoint
from agent.mqtt.commands import CommandLink
from agent.mqtt.publisher import MqttPublisher
from agent.pipeline import ReadoutPipeline
from agent.readers.base import KeyReader
from agent.service import AgentService
from agent.store.deferred import DeferredHistory, DeferredOutbox, DeferredReminders
from agent.store.history import VehicleHistory
from agent.store.outbox import Outbox
from agent.store.reminders import ReminderService
from agent.store.sqlite import make_private_dir
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
    handler = None
    if settings.commands.enabled:
        handler = CommandHandler(service, settings.commands)
        service.companions.append(CommandLink(
            mqtt, topics, handler, client_id=publisher.client_id + "-cmd"))
    if settings.metrics_port is not None:
        metrics = MetricsEndpoint(settings.metrics_host, settings.metrics_port)
        metrics.register([AgentCollector(service, handler, metrics.vehicle_tests)])
        publisher.on_delivered = metrics.delivered()
        service.companions.append(metrics)
    return service
