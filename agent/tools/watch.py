"""``cbs-agent watch``: the reception view. Subscribes to the agent's topics and shows each
vehicle as its key is read, as a full terminal screen an advisor can read across the desk.

What the screen shows, largest first: the VIN and mileage; one line per service item with its
status as a coloured badge (green ok, yellow due soon, red overdue), forecast due date, days
and km left; active check-control messages and stored faults; and a banner saying whether the
visit fits the express lane. Above it, each reader's state (online, reader plugged in); below
it, the last few vehicles read. A key that could not be read shows a red "lay the key again"
line until the next good read.

Shape (sans-IO core, thin I/O edge):

* :class:`WatchState` takes ``(topic, payload)`` and keeps what the screen needs. Payloads are
  read as plain JSON with ``.get``: a later compatible payload version only adds keys, and
  the view must keep working with them. Redeliveries (same ``readout_id``) are ignored.
* :func:`render` turns a state into screen lines for a width, a language and colour or not;
  pure, so tests can check it without a terminal. Widths count East Asian wide characters
  as two columns, so the Chinese view lines up too.
* :func:`run_watch` is the edge: one paho client (its callbacks only enqueue into a bounded
  queue), a redraw loop on the alternate screen, and a restored terminal on exit. When the
  output is not a terminal it prints one plain block per vehicle instead (for logs, pipes).

Labels come from :mod:`agent.domain.i18n` (English, German, Simplified Chinese); the few words only
this view needs are in :data:`~agent.tools.watch_text.VIEW_LABELS`. The view is four rooms:
:mod:`~agent.tools.watch_text` (words and column layout), :mod:`~agent.tools.watch_state`
(what it knows), :mod:`~agent.tools.watch_render` (the screen) and this module (the edge).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agent.domain import i18n
from agent.tools.watch_render import render
from agent.tools.watch_state import WatchState
from agent.tools.watch_text import RESET, VIEW_LABELS, display_width, text, wrap

if TYPE_CHECKING:
    import argparse

    from agent.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

__all__ = ["VIEW_LABELS", "WatchState", "display_width", "render", "run_watch", "text",
           "watch_command", "wrap"]

QUEUE_BOUND = 1000
REDRAW_EVERY_S = 1.0
PIPE_WIDTH = 132  # a file or pipe has no width; lay the block out wide (nothing is cut anyway)

ENTER_SCREEN = "\x1b[?1049h\x1b[?25l"  # alternate screen, hide the cursor
LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l"


class _Screen:
    """Full-screen redraws on a terminal; one plain block per new vehicle otherwise."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self._last: list[str] | None = None

    def __enter__(self) -> _Screen:
        if self.interactive:
            self.out.write(ENTER_SCREEN)
            self.out.flush()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.interactive:
            self.out.write(RESET + LEAVE_SCREEN)
            self.out.flush()

    def draw(self, lines: list[str]) -> None:
        if lines == self._last:
            return
        self._last = lines
        # Home, then every line cleared to its end, then everything below: no flicker.
        self.out.write("\x1b[H" + "".join(f"{line}\x1b[K\r\n" for line in lines[:-1])
                       + (lines[-1] + "\x1b[K" if lines else "") + "\x1b[J")
        self.out.flush()

    def block(self, lines: list[str]) -> None:
        self.out.write("\n".join(line.rstrip() for line in lines) + "\n\n")
        self.out.flush()


def _subscriptions(prefix: str, site: str | None, reader: str | None) -> list[str]:
    base = f"{prefix}/{site or '+'}/{reader or '+'}"
    return [f"{base}/readout", f"{base}/rejected", f"{base}/status", f"{base}/diagnosis"]


def _make_client(mqtt: MqttSettings, client_id: str) -> Any:
    from agent.mqtt.paho_link import new_client

    client = new_client(mqtt, client_id)
    client.reconnect_delay_set(max(1, round(mqtt.reconnect_min_s)),
                               max(1, round(min(mqtt.reconnect_max_s, 10.0))))
    return client


def _client_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "", socket.gethostname())[:24] or "host"
    return f"cbs-watch-{host}-{os.getpid()}"


def run_watch(mqtt: MqttSettings, *, site: str | None = None, reader: str | None = None,
              lang: str = i18n.DEFAULT_LANGUAGE, out: TextIO, stop: threading.Event,
              color: bool | None = None, interactive: bool | None = None,
              terminal_size: Callable[[], os.terminal_size] = shutil.get_terminal_size) -> int:
    """Subscribe and show readouts until ``stop`` is set (the CLI sets it on SIGTERM/SIGINT).
    Returns 0. Raises :class:`~agent.errors.ConfigError` if the TLS files cannot be used."""

    lang = i18n.check_language(lang)
    interactive = out.isatty() if interactive is None else interactive
    color = interactive and "NO_COLOR" not in os.environ if color is None else color
    # (topic, payload), True/False for connected/disconnected, or why a connect failed
    events: queue.Queue[tuple[str, bytes] | bool | str] = queue.Queue(maxsize=QUEUE_BOUND)
    state = WatchState(prefix=mqtt.prefix)
    dropped = 0

    def on_connect(client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            _put(f"the broker at {mqtt.host}:{mqtt.port} refused the connection: {reason_code}")
            return
        client.subscribe([(topic, 1) for topic in _subscriptions(mqtt.prefix, site, reader)])
        _put(True)

    def on_disconnect(*_args: Any) -> None:
        _put(False)

    def on_connect_fail(*_args: Any) -> None:  # paho says only that it failed
        from agent.tools.mqtt_client import connect_failure
        _put(connect_failure(mqtt))

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        _put((message.topic, bytes(message.payload)))

    def _put(item: tuple[str, bytes] | bool | str) -> None:
        nonlocal dropped
        try:
            events.put_nowait(item)
        except queue.Full:  # the screen is behind; a newer message will follow
            dropped += 1

    client = _make_client(mqtt, _client_id())  # ConfigError when the TLS files are unusable
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_connect_fail = on_connect_fail
    client.on_message = on_message
    client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s)
    client.loop_start()
    screen = _Screen(out, interactive)
    try:
        with screen:
            size = terminal_size()
            if interactive:
                screen.draw(render(state, width=size.columns, height=size.lines, lang=lang,
                                   color=color, site=site, reader=reader))
            while not stop.is_set():
                new_vehicle = False
                try:
                    item = events.get(timeout=REDRAW_EVERY_S)
                    while True:
                        if isinstance(item, bool):
                            state.broker_connected = item
                            state.broker_was_connected |= item
                            if item:
                                state.broker_error = None
                        elif isinstance(item, str):
                            if item != state.broker_error and not interactive:
                                print(f"cbs-agent watch: {item}; retrying", file=sys.stderr,
                                      flush=True)
                            state.broker_error = item
                        else:
                            before = state.generation
                            state.apply(*item)
                            new_vehicle |= state.generation != before
                        item = events.get_nowait()
                except queue.Empty:
                    pass
                size = terminal_size()
                # A file or pipe has no height: print the whole block.
                height = size.lines if interactive else 10_000
                width = size.columns if interactive else max(size.columns, PIPE_WIDTH)
                lines = render(state, width=width, height=height, lang=lang,
                               color=color, site=site, reader=reader)
                if interactive:
                    screen.draw(lines)
                elif new_vehicle:
                    screen.block(lines)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    if dropped:
        log.warning("the view fell behind and skipped %d messages", dropped)
    return 0


# -- the command --------------------------------------------------------------------------------


def watch_command(args: argparse.Namespace) -> int:
    """``cbs-agent watch``: settings from ``--config``/``CBS_*``/options, then :func:`run_watch`.

    Only the broker connection (``broker``, ``[mqtt]``), ``site`` and ``language`` of the
    configuration matter here; ``reader`` is not needed (``--reader`` narrows the view to one
    reader, else every reader of the site, or of every site, is shown)."""
    import signal

    from agent.config import load_settings, parse_config_text
    from agent.contract.topics import validate_name
    from agent.errors import ConfigError

    config: Path | None = args.config
    file_data: dict[str, Any] = {}
    if config is not None:
        try:
            file_data = parse_config_text(config.read_text(encoding="utf-8"), source=str(config))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config}: cannot read config file: {exc}") from exc
    site = args.site or file_data.get("site") or os.environ.get("CBS_SITE") or None
    if site is not None:
        validate_name("site", site)
    if args.reader is not None:
        validate_name("reader", args.reader)
    # The agent's settings want a site and a reader; the view needs neither, so placeholders
    # stand in where none is configured (they are not used for topics).
    settings = load_settings(config, site=site or "watch", reader="watch", broker=args.broker)
    language = args.language or getattr(settings, "language", None) or i18n.DEFAULT_LANGUAGE
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return run_watch(settings.effective_mqtt(), site=site, reader=args.reader, lang=language,
                     out=sys.stdout, stop=stop,
                     color=False if args.no_color else None)
