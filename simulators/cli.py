"""``cbs-sim``: stand-ins for the key-reader hardware.

    cbs-sim serial ...   serial key reader on a pseudo-terminal
    cbs-sim can ...      SLCAN USB-CAN adapter on a pseudo-terminal (python-can "slcan")
    cbs-sim sessions ... print generated sessions as JSON lines
    cbs-sim faults ...   list the faults, their transports and expected outcomes
    cbs-sim fleet ...    vehicles over the years: workshop-visit captures plus each item's true
                         due day (simulators/fleet_over_time.py)

``serial`` and ``can`` print the pty path as the first line of stdout (and a new line
after each simulated re-plug); logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from protocols.key_session_json import session_to_dict
from simulators.errors import FaultSpecError
from simulators.faults import CATALOGUE, FaultRates, Transport
from simulators.fleet import Fleet
from simulators.fleet_over_time import add_fleet_subcommand
from simulators.runtime import SimOptions
from simulators.vehicle_sim import add_vehicle_subcommand

if TYPE_CHECKING:
    from simulators.serial_reader_sim import SerialReaderSimulator
    from simulators.slcan_sim import SlcanSimulator


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _fleet_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="fleet and fault seed (default 0)")
    p.add_argument("--base-date", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                   help="the day the key data is read near (default: today)")
    p.add_argument("--vehicles", type=_positive_int, default=25,
                   help="vehicles in the fleet (default 25)")
    p.add_argument("--edge-rate", type=float, default=0.03,
                   help="probability of a field taking a range-edge value (default 0.03)")


def _sim_arguments(p: argparse.ArgumentParser) -> None:
    _fleet_arguments(p)
    p.add_argument("--sessions", type=_non_negative_int, default=0, metavar="N",
                   help="key reads to play, then drain and exit (or --linger); 0: forever")
    p.add_argument("--interval-s", type=_non_negative_float, default=2.0,
                   help="idle time between key reads (default 2.0)")
    p.add_argument("--linger", action="store_true",
                   help="after the last read stay up (answering the host) until SIGTERM")
    p.add_argument("--faults", default=None, metavar="NAME=RATE,...",
                   help="per-read fault probabilities (see 'cbs-sim faults')")
    p.add_argument("--fault-rate", type=float, default=None, metavar="RATE",
                   help="probability for every fault of the transport not named in --faults")
    p.add_argument("--capture", type=Path, default=None, metavar="FILE",
                   help="record what is played (serial: raw bytes; can: python-can log "
                        "format by extension: .log .asc .blf .trc .csv)")
    p.add_argument("--truth", type=Path, default=None, metavar="FILE",
                   help="ground truth, one JSON line per played session")
    p.add_argument("--link", type=Path, default=None, metavar="PATH",
                   help="symlink that always points at the current pty")
    p.add_argument("--reopen-every", type=_positive_int, default=None, metavar="N",
                   help="after every N reads simulate unplug/replug: new pty, new path "
                        "printed (SIGUSR1 does the same at the next read boundary)")
    p.add_argument("--unplug-mid-session", type=_positive_int, default=None, metavar="N",
                   help="every Nth read, unplug in the middle of the session and plug back "
                        "(serial; the truth marks the read disturbed)")
    p.add_argument("--wait-open", action=argparse.BooleanOptionalAction, default=True,
                   help="play only while the host has the port open (default on)")
    p.add_argument("--start-delay-s", type=_non_negative_float, default=0.3,
                   help="settle time after the host opened the port (default 0.3)")
    p.add_argument("--quiet-s", type=_non_negative_float, default=2.0,
                   help="silence that makes an open session time out (default 2.0)")
    p.add_argument("--agent-timeout-s", type=_non_negative_float, default=0.5,
                   help="the agent's session timeout the ground truth assumes (default 0.5)")
    p.add_argument("--drain-timeout-s", type=_non_negative_float, default=5.0,
                   help="how long to wait for the host to read everything before exit or "
                        "replug (default 5.0)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log to stderr: -v info, -vv debug")


class _Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean for a mistyped subcommand or choice."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message}{_did_you_mean(message)} (see --help)\n")


def _did_you_mean(message: str) -> str:
    import difflib
    import re

    match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if match is None:
        return ""
    choices = re.findall(r"'([^']*)'", match.group(2)) or match.group(2).split(", ")
    close = difflib.get_close_matches(match.group(1), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("cbs-agent")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cbs-sim",
                     description="Stand-ins for the key-reader hardware: simulated serial and "
                                 "CAN readers on pseudo-terminals, generated sessions, faults "
                                 "and fleets.")
    parser.add_argument("--version", action="version", version=f"cbs-sim {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serial = sub.add_parser("serial", help="serial key reader on a pseudo-terminal")
    _sim_arguments(serial)
    serial.add_argument("--baudrate", type=int, default=115_200,
                        help="pace bytes like a UART at this rate; 0: as fast as possible "
                             "(default 115200)")
    serial.add_argument("--dwell-s", type=_non_negative_float, default=1.0,
                        help="how long a key stays on the reader after its session "
                             "(REREAD works meanwhile; default 1.0)")
    serial.add_argument("--firmware", default="cbs-sim 1.0.0", help="firmware text in HELLO")

    can_p = sub.add_parser("can", help="SLCAN USB-CAN adapter on a pseudo-terminal")
    _sim_arguments(can_p)
    can_p.add_argument("--bitrate", type=int, default=500_000,
                       help="bus bitrate (default 500000)")
    can_p.add_argument("--bus-load", type=float, default=0.0,
                       help="background traffic as a share of the bitrate, 0-0.95 (default 0)")
    can_p.add_argument("--extended-background", action="store_true",
                       help="some background frames with 29-bit identifiers")
    can_p.add_argument("--timestamps", action="store_true",
                       help="start with SLCAN timestamps on (the host can send Z0/Z1)")

    fleet = sub.add_parser("sessions", help="print generated sessions as JSON lines")
    _fleet_arguments(fleet)
    fleet.add_argument("--sessions", type=_non_negative_int, default=10,
                       help="how many (default 10)")
    fleet.add_argument("--start", type=_non_negative_int, default=0,
                       help="first read index (default 0)")

    faults = sub.add_parser("faults", help="list the faults")
    faults.add_argument("--transport", choices=[t.value for t in Transport], default=None)

    add_fleet_subcommand(sub, "fleet")  # vehicles over time (simulators/fleet_over_time.py)
    add_vehicle_subcommand(sub, "vehicle")  # a car's ECUs (simulators/vehicle_sim.py)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _options(args: argparse.Namespace, transport: Transport) -> SimOptions:
    rates = FaultRates.parse(transport, args.faults, default_rate=args.fault_rate)
    return SimOptions(
        seed=args.seed, base_date=args.base_date, vehicles=args.vehicles,
        edge_rate=args.edge_rate, sessions=args.sessions or None, interval_s=args.interval_s,
        linger=args.linger, faults=rates, capture=args.capture, truth=args.truth,
        link=args.link, reopen_every=args.reopen_every,
        unplug_mid_session_every=args.unplug_mid_session, wait_open=args.wait_open,
        start_delay_s=args.start_delay_s, quiet_s=args.quiet_s,
        agent_timeout_s=args.agent_timeout_s, drain_timeout_s=args.drain_timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is not None:  # subcommands registered by other modules
        return int(args.func(args))
    if args.command == "faults":
        for info in CATALOGUE.values():
            transports = sorted(info.transports)
            if args.transport is None or args.transport in transports:
                kind = "decisive" if info.decisive else "neutral"
                print(f"{info.fault:<20} {'/'.join(transports):<11} {kind:<9} "
                      f"{info.outcome:<52} {info.summary}")
        return 0
    if args.command == "sessions":
        fleet = Fleet(args.seed, args.base_date, vehicle_count=args.vehicles,
                      edge_rate=args.edge_rate)
        try:
            for session in fleet.sessions(args.sessions, start=args.start):
                print(json.dumps(session_to_dict(session), separators=(",", ":")), flush=True)
        except BrokenPipeError:  # `cbs-sim sessions | head`
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the interpreter's exit quiet
        return 0

    _configure_logging(args.verbose)
    try:
        if args.command == "serial":
            from simulators.serial_reader_sim import SerialOptions, SerialReaderSimulator
            options = _options(args, Transport.SERIAL)
            serial = SerialOptions(baudrate=args.baudrate, dwell_s=args.dwell_s,
                                   firmware=args.firmware)
            simulator: SerialReaderSimulator | SlcanSimulator = SerialReaderSimulator(
                options, serial, stdout=sys.stdout)
        else:
            from simulators.slcan_sim import CanOptions, SlcanSimulator
            options = _options(args, Transport.CAN)
            can_options = CanOptions(bitrate=args.bitrate, bus_load=args.bus_load,
                                     extended_background=args.extended_background,
                                     timestamps=args.timestamps)
            simulator = SlcanSimulator(options, can_options, stdout=sys.stdout)
    except (FaultSpecError, ValueError) as exc:
        parser.error(str(exc))
    return simulator.run()


if __name__ == "__main__":
    sys.exit(main())
