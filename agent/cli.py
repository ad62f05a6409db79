"""``cbs-agent``: run the daemon, decode captures offline, print the payload schemas, watch.

Every user error (bad option, broken config or DBC, unreadable certificate) is one line on
stderr and exit code 2 — no traceback. Only this module configures logging.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from agent.errors import BrokerUnreachableError, ConfigError
from protocols.errors import CbsError

EXIT_FAILURE = 1
EXIT_USAGE = 2
SCHEMA_NAMES = ("readout", "rejected", "status", "reminder", "response", "approval", "diagnosis")
RUN_SWITCH_INTERVAL_S = 0.001
RUN_GC_THRESHOLDS = (10_000, 10, 10)  # CPython's default: (700, 10, 10)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not the whole usage text) and exit 2, and a
    mistyped subcommand or choice gets a did-you-mean."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message}{did_you_mean(message)} (see --help)\n")


def did_you_mean(message: str) -> str:
    """``; did you mean 'decode'?`` for argparse's "invalid choice: 'decod' (choose from
    ...)" when one choice is close, else an empty string."""
    import difflib
    import re

    match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if match is None:
        return ""
    choices = re.findall(r"'([^']*)'", match.group(2)) or match.group(2).split(", ")
    close = difflib.get_close_matches(match.group(1), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cbs-agent",
                     description="Reads CBS service data from car keys on a serial or CAN key "
                                 "reader, forecasts due services and publishes them to MQTT.",
                     epilog="Options also come from CBS_* environment variables and the TOML "
                            "file; the command line beats the environment, which beats the "
                            "file. See README.md.")
    from agent import __version__
    parser.add_argument("--version", action="version", version=f"cbs-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="read keys and publish to MQTT (the daemon)")
    _add_settings_options(run)
    run.add_argument("--metrics-port", type=int, default=None, metavar="N",
                     help="serve Prometheus metrics on this port (default: off)")

    decode = commands.add_parser("decode", help="decode captures to JSON lines, offline")
    decode.add_argument("--format", default="auto",
                        choices=["auto", "serial", "candump", "asc", "blf", "trc", "csv"],
                        help="capture format (default auto: by extension, else by content; "
                             "candump reads the log and the screen output)")
    decode.add_argument("--site", default="offline", metavar="NAME",
                        help="site named in the payloads (default offline)")
    decode.add_argument("--reader", default="decode", metavar="NAME",
                        help="reader named in the payloads (default decode)")
    decode.add_argument("--transport", choices=["serial", "can"], default=None,
                        help="transport named in the payloads (default: serial for serial captures, else can)")
    decode.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help="keep and use vehicle history here, as the live agent does "
                             "(default: none)")
    decode.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="take forecast, catalogue and DBC settings from this file "
                             "(default: $CBS_CONFIG, else /etc/cbs-agent/agent.toml if it "
                             "exists)")
    decode.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show progress on stderr (default: only when stderr is a "
                             "terminal)")
    decode.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="capture files; - reads standard input")

    schema = commands.add_parser(
        "schema", help="print a payload's JSON Schema, or the AsyncAPI document",
        description="Print the JSON Schema of a payload, or the whole MQTT contract as an "
                    "AsyncAPI 3.0 document (asyncapi).")
    schema.add_argument("payload", nargs="?", choices=[*SCHEMA_NAMES, "asyncapi"])
    schema.add_argument("--write-docs", type=Path, default=None, metavar="DIR",
                        help="write asyncapi.yaml and every payload schema into DIR/ and "
                             "DIR/schemas/ (the project keeps them in docs/)")

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
    watch.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="take broker, [mqtt], site and language from it (default: "
                            "$CBS_CONFIG, else /etc/cbs-agent/agent.toml if it exists)")
    watch.add_argument("--broker", default=None, metavar="URL",
                       help="mqtt://HOST:PORT or mqtts://HOST:PORT (default "
                            "mqtt://127.0.0.1:1883; env CBS_BROKER)")
    watch.add_argument("--site", default=None, metavar="NAME",
                       help="only this site (default: every site; env CBS_SITE)")
    watch.add_argument("--reader", default=None, metavar="NAME",
                       help="only this reader (default: every reader)")
    watch.add_argument("--language", choices=["en", "de", "zh"], default=None,
                       help="language of the view (default en; env CBS_LANGUAGE)")
    watch.add_argument("--no-color", "--no-colour", dest="no_color", action="store_true",
                       help="no colours (also when the NO_COLOR variable is set)")

    store = commands.add_parser("store", help="the state directory's stores: sizes and counts")
    store_commands = store.add_subparsers(dest="store_command", required=True,
                                          parser_class=_Parser)
    stats = store_commands.add_parser(
        "stats", help="size, log, free space and row counts of each store (read-only)",
        description="Show what the outbox, the vehicle history and the reminder store hold "
                    "and what they take on disk. Read-only: safe while the agent runs.")
    stats.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                       help="the agent's state directory (default $CBS_STATE_DIR, else ./state)")
    stats.add_argument("--json", action="store_true", help="JSON instead of lines")

    ha = commands.add_parser("ha", help="Home Assistant: withdraw a reader's entities")
    ha_commands = ha.add_subparsers(dest="ha_command", required=True, parser_class=_Parser)
    remove = ha_commands.add_parser(
        "remove", help="clear the reader's retained discovery configs: Home Assistant "
                       "deletes its entities",
        description="Clear the retained Home Assistant discovery configs of one reader on the "
                    "broker, so that Home Assistant deletes its entities. Switch [mqtt] "
                    "home_assistant_discovery off first, or the running agent publishes them "
                    "again on its next connect.")
    remove.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="take broker, [mqtt], site and reader from it (default: "
                             "$CBS_CONFIG, else /etc/cbs-agent/agent.toml if it exists)")
    remove.add_argument("--broker", default=None, metavar="URL",
                        help="mqtt://HOST:PORT or mqtts://HOST:PORT (default "
                             "mqtt://127.0.0.1:1883; env CBS_BROKER)")
    remove.add_argument("--site", default=None, metavar="NAME", help="env CBS_SITE")
    remove.add_argument("--reader", default=None, metavar="NAME", help="env CBS_READER")
    remove.add_argument("--timeout-s", type=float, default=10.0, metavar="S",
                        help="how long to wait for the broker (default 10)")
    desk = commands.add_parser("desk", help="the reception desk in a browser (docs/desk.md)")
    desk.add_argument("--config", type=Path, default=None, help="TOML configuration file ([desk], [mqtt], site)")
    desk.add_argument("--broker", default=None, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    desk.add_argument("--site", default=None, metavar="NAME", help="the site whose vehicles the desk shows")
    desk.add_argument("--host", default=None, help="listen address (default 127.0.0.1; others need a login)")
    desk.add_argument("--port", type=int, default=None, help="TCP port (default 8080)")
    desk.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                      help="the approvals' outbox and the session key live here")
    desk.add_argument("--language", choices=["en", "de", "zh"], default=None,
                      help="default language of the pages (default: language in the config)")
    desk.add_argument("--log-format", choices=["text", "json"], default=None)
    desk.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=None)
    desk.add_argument("--hash-password", action="store_true",
                      help="read a password (terminal or stdin) and print its hash for [desk] password_hash")
    for sub_commands in (commands, ha_commands):
        for action in sub_commands._choices_actions:
            chosen = sub_commands.choices[action.dest]
            if chosen.description is None and action.help:
                chosen.description = action.help[0].upper() + action.help[1:] + "."
    return parser


#: The options of ``run`` and ``check-config``: (flag, metavar, help, default shown). Each
#: is also ``CBS_<NAME>`` and ``name = ...`` in the file; tests/agent/test_cli_help.py checks
#: the defaults shown against AgentSettings.
SETTINGS_OPTIONS: tuple[tuple[str, str | None, str, str | None], ...] = (
    ("--serial", "PORT", "serial port of the key reader, e.g. /dev/ttyUSB0", None),
    ("--baudrate", "N", "serial baud rate, 8N1", "115200"),
    ("--can-interface", "NAME", "python-can interface (socketcan, slcan, fastslcan, pcan, "
     "kvaser, virtual, ...) instead of a serial reader", None),
    ("--can-channel", "CH", "python-can channel, e.g. can0 or /dev/ttyACM0", None),
    ("--can-bitrate", "N", "CAN bit rate, bit/s", "500000"),
    ("--broker", "URL", "mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS",
     "mqtt://127.0.0.1:1883"),
    ("--site", "NAME", "site name, [A-Za-z0-9_-]{1,64}; required", None),
    ("--reader", "NAME", "reader name, [A-Za-z0-9_-]{1,64}; required", None),
    ("--state-dir", "DIR", "where the outbox and the vehicle history live", "state"),
    ("--log-format", None, "log lines as text or JSON", "text"),
    ("--log-level", None, "the least important log level shown", "INFO"),
)
_CHOICES = {"--log-format": ["text", "json"], "--log-level": ["DEBUG", "INFO", "WARNING", "ERROR"]}
_TYPES: dict[str, Any] = {"--baudrate": int, "--can-bitrate": int, "--state-dir": Path}
CONFIG_HELP = ("TOML configuration file (default: $CBS_CONFIG, else /etc/cbs-agent/agent.toml "
               "if it exists)")


def _env_name(flag: str) -> str:
    return "CBS_" + flag.removeprefix("--").replace("-", "_").upper()


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="FILE", help=CONFIG_HELP)
    for flag, metavar, text, default in SETTINGS_OPTIONS:
        shown = f"default {default}; " if default is not None else ""
        parser.add_argument(flag, default=None, metavar=metavar, type=_TYPES.get(flag, str),
                            choices=_CHOICES.get(flag),
                            help=f"{text} ({shown}env {_env_name(flag)})")


def _settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("serial", "baudrate", "can_interface", "can_channel", "can_bitrate", "broker", "site",
             "reader", "state_dir", "log_format", "log_level")
    overrides = {name: getattr(args, name) for name in names}
    overrides["metrics_port"] = getattr(args, "metrics_port", None)
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "config"):  # --config, else CBS_CONFIG, else /etc/cbs-agent/agent.toml
            from agent.config import discover_config_file
            args.config = discover_config_file(args.config)
        if args.command == "run":
            return _run(args)
        if args.command == "decode":
            return _decode(args)
        if args.command == "schema":
            return _schema(args.payload, args.write_docs)
        if args.command == "diagnose":
            return _diagnose(args)
        if args.command == "watch":
            from agent.tools.watch import watch_command
            return watch_command(args)
        if args.command == "ha":
            return _ha_remove(args)
        if args.command == "desk":
            from agent.desk.command import desk_command
            return desk_command(args)
        if args.command == "store":
            from agent.tools.store_stats import print_store_stats
            state_dir = args.state_dir or Path(os.environ.get("CBS_STATE_DIR") or "state")
            return print_store_stats(state_dir, sys.stdout, as_json=args.json)
        if args.command == "check-config":
            from agent.config import load_settings
            from agent.tools.check_config import check_config
            return check_config(load_settings(args.config, **_settings_overrides(args)), sys.stdout)
    except BrokerUnreachableError as exc:
        print(f"cbs-agent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (ConfigError, CbsError) as exc:
        print(f"cbs-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `cbs-agent decode ... | head`: the reader has what it wanted. Nothing more can be
        # written, so let the interpreter's last flush go nowhere instead of raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return EXIT_USAGE


def _schema(payload: str | None, write_docs: Path | None) -> int:
    if write_docs is not None:
        from agent.tools.contract_docs import write_contract_docs
        for path in write_contract_docs(write_docs):
            print(f"wrote {path}", file=sys.stderr)
        if payload is None:
            return 0
    if payload is None:
        raise ConfigError("schema: name a payload (" + ", ".join(SCHEMA_NAMES)
                          + ") or asyncapi, or give --write-docs DIR")
    if payload == "asyncapi":
        from agent.contract.asyncapi import asyncapi_document, to_yaml
        sys.stdout.write(to_yaml(asyncapi_document()))
        return 0
    from agent.contract.schemas import published_schema
    print(json.dumps(published_schema(payload), indent=2, ensure_ascii=False))
    return 0


def _ha_remove(args: argparse.Namespace) -> int:
    from agent.config import load_settings
    from agent.tools.ha_remove import remove_entities

    settings = load_settings(args.config, site=args.site, reader=args.reader,
                             broker=args.broker)
    remove_entities(settings.effective_mqtt(), settings.site, settings.reader,
                    ha_prefix=settings.mqtt.home_assistant_prefix, out=sys.stdout,
                    timeout_s=args.timeout_s)
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from agent.config import load_settings
    from agent.domain.diagnosis import bmw_ecu_names
    from agent.logging_setup import configure_logging
    from agent.tools.diagnose import DiagnoseOptions, diagnose, parse_addresses

    # The CAN options name the diagnostics channel here ([diagnostics] can_*), not the key
    # reader, which the configuration file may well give as a serial port.
    overrides = _settings_overrides(args)
    channel = {name: overrides.pop(name) for name in ("can_interface", "can_channel",
                                                      "can_bitrate")}
    channel = {name: value for name, value in channel.items() if value is not None}
    if channel:
        overrides["diagnostics"] = channel
    settings = load_settings(args.config, **overrides)
    configure_logging(settings.log_level, settings.log_format)
    protocol = args.protocol or settings.diagnostics.protocol
    addresses = (parse_addresses(args.addresses, bmw_ecu_names()) if args.addresses
                 else settings.diagnostics.addresses or sorted(bmw_ecu_names()))

    def confirm(question: str) -> bool:
        if not sys.stdin.isatty():
            print(f"{question}no (not a terminal: use --yes)", file=sys.stderr)
            return False
        return input(question).strip().lower() in ("y", "yes")

    # As for `run`: the notifier and the ECUs' workers (a thread per ECU) wait on I/O; hand the
    # GIL over within 1 ms so that a frame read is passed on at once, not after CPython's 5 ms.
    sys.setswitchinterval(RUN_SWITCH_INTERVAL_S)
    options = DiagnoseOptions(protocol=protocol, addresses=addresses, print_json=args.json,
                              clear=args.clear_faults, yes=args.yes)
    return diagnose(settings, options, out=sys.stdout, err=sys.stderr, confirm=confirm)


def _decode(args: argparse.Namespace) -> int:
    from agent.contract.topics import validate_name
    from agent.domain.forecast import ForecastSettings

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
    files = _capture_files(args.files)
    return _decode_captures(args, files, db, forecast, proposal)


def _capture_files(paths: list[Path]) -> list[Any]:
    """The captures to read, ``-`` as standard input (read as it comes, not copied first:
    docs/integrators.md); raises ConfigError (exit 2) naming a missing file or a directory."""
    from agent.readers.capture import CaptureSource, StreamCapture

    files: list[CaptureSource] = []
    for path in paths:
        if str(path) == "-":
            if any(isinstance(file, StreamCapture) for file in files):
                raise ConfigError("- (standard input) can be given only once")
            files.append(StreamCapture(sys.stdin.buffer, name="-"))
        elif path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a capture file")
        elif not path.exists():
            raise ConfigError(f"{path}: no such file")
        else:
            files.append(path)
    return files


def _decode_captures(args: argparse.Namespace, files: list[Any], db: Any, forecast: Any,
                     proposal: Any) -> int:
    from agent.pipeline import ReadoutPipeline
    from agent.store.history import VehicleHistory
    from agent.tools.decode import Progress, decode_files

    transport = args.transport or ("serial" if args.format == "serial" or (
        args.format == "auto" and all(_looks_serial(p) for p in files)) else "can")
    history = None
    if args.state_dir is not None:
        from agent.store.sqlite import make_private_dir
        make_private_dir(args.state_dir)  # 0700, as the agent's own
        history = VehicleHistory(args.state_dir / "history.sqlite3", settings=forecast)
    pipeline = ReadoutPipeline(site=args.site, reader=args.reader, transport=transport,
                               forecast=forecast, history=history, proposal=proposal)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    progress = Progress(sys.stderr, interactive=sys.stderr.isatty()) if show else None
    try:
        return decode_files(files, args.format, pipeline, sys.stdout, db=db, progress=progress)
    finally:
        if history is not None:
            history.close()


def _looks_serial(path: Any) -> bool:
    from agent.readers.capture import detect_format
    return detect_format(path) == "serial"


def _run(args: argparse.Namespace) -> int:
    from agent.config import load_settings
    from agent.logging_setup import configure_logging
    from agent.wiring import build_service

    settings = load_settings(args.config, **_settings_overrides(args))
    configure_logging(settings.log_level, settings.log_format)
    service = build_service(settings)  # with the [diagnostics] channel's watcher, if any
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
    service.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
