"""``cbs-agent diagnose``: one vehicle test, its report through the durable outbox, then exit.

Exit codes: 0 once the report is in the outbox and the broker acknowledged it, or, with the
broker unreachable, once it is stored (the daemon sends it later; the command says so);
2 on bad configuration (one line naming what and where); 1 when the report could not even
be stored, or the operator declined to clear faults.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TextIO

from agent.config import AgentSettings
from agent.contract.diagnosis import Diagnosis
from agent.diagnostics.reporting import make_report, report_messages, summary_line
from agent.diagnostics.tester import (
    OBD2_RECEIVE_IDS,
    bmw_receive_ids,
    run_bmw_test,
    run_obd2_test,
)
from agent.diagnostics.transport import CanChannel
from agent.domain.diagnosis import VehicleTest, bmw_ecu_names
from agent.domain.models import to_json
from agent.errors import ConfigError, OutboxError
from agent.store.outbox import Outbox
from agent.wiring import diagnosis_publisher, open_outbox

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1


@dataclass(frozen=True)
class DiagnoseOptions:
    protocol: str
    addresses: list[int]
    print_json: bool = False
    clear: str | None = None  # "all" or comma-separated names/addresses
    yes: bool = False


def parse_addresses(text: str, names: dict[int, str]) -> list[int]:
    """``0x12,0x60`` or ``DME,KOMBI`` (names of the table) into addresses; ConfigError."""
    by_name = {name.upper(): address for address, name in names.items()}
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.upper() in by_name:
            out.append(by_name[part.upper()])
            continue
        try:
            address = int(part, 0)
        except ValueError:
            raise ConfigError(f"--addresses/--clear-faults: {part!r} is neither an address "
                              "(0x12) nor an ECU name of the table (DME)") from None
        if not 0 <= address <= 0xFF:
            raise ConfigError(f"--addresses/--clear-faults: 0x{address:X} is not an address "
                              "0x00-0xFF")
        out.append(address)
    if not out:
        raise ConfigError("--addresses/--clear-faults: no address given")
    return out


def diagnose(settings: AgentSettings, options: DiagnoseOptions, *, out: TextIO, err: TextIO,
             confirm: Callable[[str], bool]) -> int:
    diag = settings.diagnostics
    if not diag.can_interface or not diag.can_channel:
        raise ConfigError("diagnose needs the diagnostics CAN interface: --can-interface NAME "
                          "--can-channel CH (or [diagnostics] can_interface/can_channel in the "
                          "config file)")
    if diag.can_channel in (settings.can_channel, settings.serial):
        raise ConfigError(f"--can-channel {diag.can_channel} is the key reader's: the vehicle "
                          "test needs an interface of its own")
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"state_dir {settings.state_dir}: cannot create: {exc.strerror}") from exc
    timing = diag.timing()
    names = bmw_ecu_names()
    protocol = options.protocol
    receive = bmw_receive_ids(options.addresses) if protocol == "bmw" else OBD2_RECEIVE_IDS
    channel = CanChannel(diag.can_interface, diag.can_channel, bitrate=diag.can_bitrate,
                         receive_ids=receive)
    reports: list[Diagnosis] = []
    try:
        log.info("vehicle test (%s) on %s %s: probing %s", protocol, diag.can_interface,
                 diag.can_channel, "0x7DF (functional)" if protocol == "obd2" else
                 ", ".join(f"0x{a:02X}" for a in options.addresses))

        def one_test(clear: frozenset[int] | None) -> VehicleTest:
            if protocol == "obd2":
                return run_obd2_test(channel, timing=timing, clear=clear is not None)
            return run_bmw_test(channel, options.addresses, timing=timing, names=names,
                                clear=clear or frozenset())

        test = one_test(None)
        reports.append(_report(settings, test))
        _tell(reports[-1], err)
        if options.clear is not None and test.outcome != "aborted":
            if protocol == "obd2" or options.clear.strip().lower() == "all":
                targets = frozenset(e.address for e in test.ecus)
            else:
                targets = frozenset(parse_addresses(options.clear, names))
            what = ("every ECU" if options.clear.strip().lower() == "all"
                    else ", ".join(names.get(a, f"0x{a:02X}") for a in sorted(targets)))
            if not (options.yes or confirm(f"Clear the fault memory of {what}? [y/N] ")):
                print("cbs-agent diagnose: fault memory not cleared", file=err)
                return _deliver(settings, reports, options, out, err) or EXIT_FAILED
            log.warning("clearing fault memory on the operator's command: %s", what)
            test = one_test(targets)
            cleared = [e.address for e in test.ecus if e.address in targets
                       and not any(f.step == "clear" for f in e.errors)]
            log.warning("fault memory cleared on %d of %d ECUs", len(cleared), len(targets))
            reports.append(_report(settings, test))
            _tell(reports[-1], err)
    finally:
        channel.close()
    return _deliver(settings, reports, options, out, err)


def _report(settings: AgentSettings, test: VehicleTest) -> Diagnosis:
    return make_report(test, site=settings.site, reader=settings.reader,
                       history_path=settings.state_dir / "history.sqlite3",
                       key_window=timedelta(hours=settings.diagnostics.key_link_hours),
                       reports_path=settings.state_dir / "diagnoses.sqlite3")


def _tell(report: Diagnosis, err: TextIO) -> None:
    print(f"cbs-agent diagnose: {summary_line(report)}", file=err)


def _deliver(settings: AgentSettings, reports: list[Diagnosis], options: DiagnoseOptions,
             out: TextIO, err: TextIO) -> int:
    """Store every report in the outbox (one transaction each), then wait for the broker."""
    if options.print_json:
        for report in reports:
            print(to_json(report), file=out, flush=True)
    try:
        outbox = open_outbox(settings)
    except OutboxError as exc:
        print(f"cbs-agent diagnose: report NOT stored: {exc}", file=err)
        return EXIT_FAILED
    try:
        rows: list[int] = []
        for report in reports:
            rows += outbox.put_many(report_messages(report, settings.effective_mqtt().prefix))
        publisher = diagnosis_publisher(settings, outbox)
        publisher.start()
        timeout = settings.diagnostics.publish_timeout_s
        deadline = time.monotonic() + timeout
        delivered = False
        if publisher.wait_connected(timeout):
            delivered = _wait_acked(outbox, rows, deadline)
        publisher.stop(timeout_s=2.0)
        ids = ", ".join(r.diagnosis_id for r in reports)
        if delivered:
            print(f"cbs-agent diagnose: report {ids} delivered to {settings.effective_mqtt().url}",
                  file=err)
        else:
            print(f"cbs-agent diagnose: broker not reachable within {timeout:g} s: report {ids} "
                  f"is stored in {outbox.path} and will be sent by the agent "
                  "(cbs-agent run) when the broker is back", file=err)
        return EXIT_OK
    except OutboxError as exc:
        print(f"cbs-agent diagnose: report NOT stored: {exc}", file=err)
        return EXIT_FAILED
    finally:
        outbox.close()


def _wait_acked(outbox: Outbox, rows: list[int], deadline: float) -> bool:
    """True once none of ``rows`` is left in the outbox (each left only on its PUBACK)."""
    wanted = set(rows)
    first = min(rows) - 1
    while time.monotonic() < deadline:
        left = {e.row_id for e in outbox.pending(after_row=first, limit=len(rows) + 1000)}
        if not wanted & left:
            return True
        time.sleep(0.02)
    return False
