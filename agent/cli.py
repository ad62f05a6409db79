"""``cbs-agent``: run the daemon, decode captures offline, print the payload schemas, watch.

Every user error (bad option, broken config or DBC, unreadable certificate) is one line on
stderr and exit code 2 — no traceback. Only this module configures logging.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from protocols.errors import CbsError

EXIT_USAGE = 2
RUN_SWITCH_INTERVAL_S = 0.001
RUN_GC_THRESHOLDS = (10_000, 10, 10)  # CPython's default: (700, 10, 10)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not the whole usage text) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cbs-agent", description=__doc__.splitlines()[0] if __doc__ else None)
    from agent import __version__
    parser.add_argument("--version", action="version", version=f"cbs-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="read keys and publish to MQTT (the daemon)")
    _add_settings_options(run)

    decode = commands.add_parser("decode", help="decode captures to JSON lines, offline")
    decode.add_argument("--format", default="auto",
                        choices=["auto", "serial", "candump", "asc", "blf", "trc", "csv"])
    decode.add_argument("--site", default="offline")
    decode.add_argument("--reader", default="decode")
    decode.add_argument("--transport", choices=["serial", "can"], default=None,
                        help="transport named in the payloads (default: serial for serial captures, else can)")
    decode.add_argument("--state-dir", type=Path, default=None,
                        help="keep and use vehicle history here, as the live agent does")
    decode.add_argument("--config", type=Path, default=None, help="take forecast settings from this file")
    decode.add_argument("files", nargs="+", type=Path, metavar="FILE")

    schema = commands.add_parser("schema", help="print a payload's JSON Schema")
    schema.add_argument("payload", choices=["readout", "rejected", "status", "reminder",
                                            "diagnosis"])

    diagnose = commands.add_parser("diagnose", help="test the vehicle at the OBD socket and "
                                                    "publish its diagnosis report")
    _add_settings_options(diagnose)
    diagnose.add_argument("--protocol", choices=["bmw", "obd2"], default=None,
                          help="bmw (UDS, default) or obd2 (generic OBD-II)")
    diagnose.add_argument("--addresses", default=None, metavar="A,B,...",
                          help="bmw: ECU addresses or names to probe (default: the whole table)")
    diagnose.add_argument("--json", action="store_true", help="print the report on stdout")
    diagnose.add_argument("--clear-faults", default=None, metavar="ECU,...|all",
                          help="after the test, clear these ECUs' fault memory, test again "
                               "and publish a second report")
    diagnose.add_argument("--yes", action="store_true", help="clear without asking")

    check = commands.add_parser("check-config", help="validate the configuration, reader and broker")
    _add_settings_options(check)

    watch = commands.add_parser("watch", help="reception view: show each vehicle as it is read")
    watch.add_argument("--config", type=Path, default=None, help="take broker, [mqtt] and site from it")
    watch.add_argument("--broker", default=None, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    watch.add_argument("--site", default=None, metavar="NAME", help="only this site (default: every site)")
    watch.add_argument("--reader", default=None, metavar="NAME", help="only this reader (default: every reader)")
    watch.add_argument("--language", choices=["en", "de", "zh"], default=None)
    watch.add_argument("--no-color", action="store_true", help="no colours (also when NO_COLOR is set)")
    return parser


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    parser.add_argument("--serial", default=None, metavar="PORT", help="serial port of the key reader")
    parser.add_argument("--baudrate", type=int, default=None, metavar="N")
    parser.add_argument("--can-interface", default=None, metavar="NAME",
                        help="python-can interface (socketcan, slcan, pcan, kvaser, virtual, ...)")
    parser.add_argument("--can-channel", default=None, metavar="CH")
    parser.add_argument("--can-bitrate", type=int, default=None, metavar="N")
    parser.add_argument("--broker", default=None, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    parser.add_argument("--site", default=None, metavar="NAME")
    parser.add_argument("--reader", default=None, metavar="NAME")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR")
    parser.add_argument("--log-format", choices=["text", "json"], default=None)
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=None)


def _settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("serial", "baudrate", "can_interface", "can_channel", "can_bitrate", "broker", "site",
             "reader", "state_dir", "log_format", "log_level")
    return {name: getattr(args, name) for name in names}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "decode":
            return _decode(args)
        if args.command == "schema":
            return _schema(args.payload)
        if args.command == "diagnose":
            return _diagnose(args)
        if args.command == "watch":
            from agent.tools.watch import watch_command
            return watch_command(args)
        if args.command == "check-config":
            from agent.config import load_settings
            from agent.tools.check_config import check_config
            return check_config(load_settings(args.config, **_settings_overrides(args)), sys.stdout)
    except (ConfigError, CbsError) as exc:
        print(f"cbs-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return EXIT_USAGE


def _schema(payload: str) -> int:
    from agent.contract.schemas import payload_schema
    print(json.dumps(payload_schema(payload), indent=2, ensure_ascii=False))
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from agent.config import load_settings
    from agent.domain.diagnosis import bmw_ecu_names
    from agent.logging_setup import configure_logging
    from agent.tools.diagnose import DiagnoseOptions, diagnose, parse_addresses

    settings = load_settings(args.config, **_settings_overrides(args))
    configure_logging(settings.log_level, settings.log_format)
    protocol = args.protocol or settings.diagnostics.protocol
    addresses = (parse_addresses(args.addresses, bmw_ecu_names()) if args.addresses
                 else settings.diagnostics.addresses or sorted(bmw_ecu_names()))

    def confirm(question: str) -> bool:
        if not sys.stdin.isatty():
            print(f"{question}no (not a terminal: use --yes)", file=sys.stderr)
            return False
        return input(question).strip().lower() in ("y", "yes")

    # As for `run`: the stack threads (one per ECU) wait on I/O; hand the GIL over within 1 ms
    # so that a frame read is passed on at once, not after CPython's default 5 ms.
    sys.setswitchinterval(RUN_SWITCH_INTERVAL_S)
    options = DiagnoseOptions(protocol=protocol, addresses=addresses, print_json=args.json,
                              clear=args.clear_faults, yes=args.yes)
    return diagnose(settings, options, out=sys.stdout, err=sys.stderr, confirm=confirm)


def _decode(args: argparse.Namespace) -> int:
    from agent.contract.topics import validate_name
    from agent.domain.forecast import ForecastSettings
    from agent.pipeline import ReadoutPipeline
    from agent.store.history import VehicleHistory
    from agent.tools.decode import decode_files

    validate_name("site", args.site)
    validate_name("reader", args.reader)
    from agent.wiring import load_database, proposal_context
    forecast = ForecastSettings()
    proposal = None
    db = None
    if args.config is not None:
        from agent.config import load_settings
        settings = load_settings(args.config, site=args.site, reader=args.reader)
        forecast, proposal = settings.forecast, proposal_context(settings)
        db = load_database(settings)
    if db is None:
        from dbc import key_reader_database
        db = key_reader_database()
    for path in args.files:
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
    transport = args.transport or ("serial" if args.format == "serial" or (
        args.format == "auto" and all(_looks_serial(p) for p in args.files)) else "can")
    history = None
    if args.state_dir is not None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        history = VehicleHistory(args.state_dir / "history.sqlite3", settings=forecast)
    pipeline = ReadoutPipeline(site=args.site, reader=args.reader, transport=transport,
                               forecast=forecast, history=history, proposal=proposal)
    try:
        return decode_files(args.files, args.format, pipeline, sys.stdout, db=db)
    finally:
        if history is not None:
            history.close()


def _looks_serial(path: Path) -> bool:
    from agent.readers.capture import detect_format
    return detect_format(path) == "serial"


def _run(args: argparse.Namespace) -> int:
    from agent.config import load_settings
    from agent.logging_setup import configure_logging
    from agent.wiring import build_service

    settings = load_settings(args.config, **_settings_overrides(args))
    configure_logging(settings.log_level, settings.log_format)
    service = build_service(settings)
    from agent.wiring import build_vehicle_watcher
    watcher = build_vehicle_watcher(settings, service.publisher)  # [diagnostics] channel, if any
    # The publisher's threads wait on I/O and need the GIL only briefly; hand it over within
    # 1 ms (not CPython's default 5 ms) so a readout is not held back by the next one's work.
    sys.setswitchinterval(RUN_SWITCH_INTERVAL_S)
    # Everything loaded so far lives as long as the process: keep it out of the cycle
    # collector's way, and collect the young generation less often (each readout allocates
    # a few thousand objects; almost all are freed by reference counting anyway).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*RUN_GC_THRESHOLDS)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if watcher is not None:
        watcher.start()
    try:
        service.run(stop)
    finally:
        if watcher is not None:
            watcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
