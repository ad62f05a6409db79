"""The reception view (``cbs-agent watch``), driven in a real terminal and read off the screen.

The terminal is tmux (a private server on a socket in the test's directory), the screen is read
with ``capture-pane`` (``-e`` keeps the colours), the keys come from the real agent reading a
pseudo-terminal key reader, through a real mosquitto. The pure part (:func:`agent.tools.watch.render`)
is checked without a terminal below. Tests that need tmux skip without it (.ci/bootstrap.sh
installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from broker import Subscriber, wait_until
from site_rig import clean_environment, key_bytes

from agent.domain.i18n import LANGUAGES
from agent.tools.watch import WatchState, display_width, render
from protocols.can_frame import CanFrame
from protocols.key_session import KeySession, ServiceItem, VehicleData
from protocols.serial_framing import FrameType, encode_can_frame, encode_frame

ROOT = Path(__file__).resolve().parents[2]
SITE, READER = "S1", "desk1"
TIMEOUT_S = 60.0
WIDTH, HEIGHT = 110, 40

requires_tmux = pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed (.ci/bootstrap.sh installs it; apt-get install -y tmux)")

# The protocol spec's worked example (section 4): VIN WBA8E5107FK123456, 48,371 km, engine oil
# due soon, brake fluid ok, check control 258 active, DTC P0301 confirmed.
SPEC_FRAMES = [
    (0x6F0, "01 07 0A 78 56 34 12 02"), (0x6F1, "00 57 42 41 38 45 35 31"),
    (0x6F1, "01 30 37 46 4B 31 32 33"), (0x6F1, "02 34 35 36 00 00 00 00"),
    (0x6F2, "F3 BC 00 9A CD 3F 96 01"), (0x6F3, "7C 42 9A 88 C5 08 E0 08"),
    (0x6F4, "00 01 0C 08 07 B0 11 02"), (0x6F4, "01 03 FF 00 00 B8 99 00"),
    (0x6F5, "00 30 75 00 99 B5 04 03"), (0x6F6, "00 02 01 01 8A BB 00 00"),
    (0x6F7, "00 03 01 1F 2F 12 03 00"), (0x6FF, "07 0A 9F 2A B0 2C 00 00"),
]
SPEC_VIN = "WBA8E5107FK123456"


def spec_key(*, corrupt: bool = False) -> bytes:
    frames = []
    for fid, data in SPEC_FRAMES:
        raw = bytearray(bytes.fromhex(data))
        if corrupt and fid == 0x6F2:
            raw[0] ^= 1  # the END's CRC-32 no longer matches: rejected, crc_mismatch
        frames.append(CanFrame(fid, bytes(raw), 0.0))
    return (encode_frame(FrameType.KEY_PRESENT) + b"".join(encode_can_frame(f) for f in frames)
            + encode_frame(FrameType.KEY_REMOVED))


def express_session() -> KeySession:
    """Only the engine oil is due (900 km left), nothing else wrong: fits the express lane."""
    today = date.today()
    later = today.year + 2
    return KeySession(
        session_seq=9, key_id=0xCAFE0001, key_slot=0, vin="WBS8M9C59J5K98765",
        vehicle=VehicleData(mileage_km=31250, data_date=today, fuel_level_pct=40,
                            build_year=today.year - 3, build_month=3),
        usage=None,
        services=(ServiceItem(index=0, code=0x01, availability_pct=20, remaining_km=900,
                              due_year=later, due_month=6, service_count=2),
                  ServiceItem(index=1, code=0x03, availability_pct=None, remaining_km=None,
                              due_year=later, due_month=3, service_count=1)))


# -- tmux -------------------------------------------------------------------------------------


class TmuxPane:
    """One command in a detached tmux session on a private server (``-S socket``)."""

    def __init__(self, workdir: Path, command: list[str], *, width: int = WIDTH,
                 height: int = HEIGHT) -> None:
        self.socket = str(workdir / "tmux.sock")
        env = clean_environment(TZ="UTC", TERM="xterm-256color")
        env.pop("NO_COLOR", None)
        # exec: the command is the pane's process, so Ctrl-C reaches it and not a shell too
        # (a non-interactive shell would die of the SIGINT and hide the command's exit status).
        shell_command = "exec " + " ".join(_quote(part) for part in command)
        self._tmux("new-session", "-d", "-s", "watch", "-x", str(width), "-y", str(height),
                   shell_command, env=env)
        self._tmux("set-option", "-t", "watch", "remain-on-exit", "on")

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=30, env=env, cwd=ROOT)
        if done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def screen(self, *, colours: bool = False) -> str:
        return self._tmux("capture-pane", "-p", *(["-e"] if colours else []), "-t", "watch")

    def wait_for(self, predicate: Callable[[str], bool], what: str,
                 timeout_s: float = TIMEOUT_S) -> str:
        """The screen once ``predicate`` holds and the redraw is complete: two captures in a
        row agree below the header (whose clock ticks), so no half-drawn screen is read."""
        captured: list[str] = []

        def settled() -> bool:
            screen = self.screen()
            done = bool(captured) and predicate(screen) and \
                screen.split("\n", 1)[-1] == captured[-1].split("\n", 1)[-1]
            captured.append(screen)
            return done

        try:
            wait_until(settled, timeout_s, what=what, interval_s=0.1)
        except AssertionError:
            print("--- screen ---\n" + (captured[-1] if captured else ""))
            raise
        return captured[-1]

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "watch", *keys)

    def exit_status(self) -> str | None:
        """The command's exit status (``"0"``), ``"signal N"``, or None while it runs.

        tmux marks the pane dead when its terminal closes; it may reap the process (and show
        ``pane_dead_status``) only later, or not at all (seen with tmux 3.3a). Until then the
        process is a zombie, whose exit code Linux shows in /proc/PID/stat (last field)."""
        dead, status, signal, pid = self._tmux(
            "display", "-p", "-t", "watch",
            "#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}|#{pane_pid}").strip().split("|")
        if dead != "1":
            return None
        if status or signal:
            return status or f"signal {signal}"
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        if fields[0] != "Z":
            return None
        code = int(fields[-1])
        return str(code >> 8 & 0xFF) if code & 0x7F == 0 else f"signal {code & 0x7F}"

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=30)


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\\''") + "'"


def line_with(screen: str, needle: str) -> str:
    for line in screen.splitlines():
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not on the screen:\n{screen}")


_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def colours_at(screen: str, needle: str) -> set[str]:
    """The SGR parameters in effect where ``needle`` starts on its line (tmux's capture-pane
    ``-e`` writes them as separate sequences; a reset clears them)."""
    line = line_with(screen, needle)
    active: set[str] = set()
    position = line.index(needle)
    for match in _SGR.finditer(line[:position]):
        for parameter in match.group(1).split(";"):
            if parameter in ("", "0"):
                active.clear()
            else:
                active.add(parameter)
    return active


@requires_tmux
def test_watch_shows_each_vehicle_as_it_is_read(tmp_path: Path, site) -> None:
    broker, reader, _agent = site
    readouts = Subscriber.for_broker(broker, f"cbs/v1/{SITE}/{READER}/readout").start()
    pane = TmuxPane(tmp_path, [sys.executable, "-m", "agent", "watch", "--broker", broker.url,
                               "--site", SITE])
    try:
        pane.wait_for(lambda s: f"{READER} ONLINE" in s and "Waiting for a key" in s,
                      "the reader's retained status and the waiting screen")

        # 1. The spec's worked example: due soon, a check control, a confirmed fault.
        reader.write(spec_key())
        payload = readouts.wait_for_count(1)[0].json()
        screen = pane.wait_for(lambda s: SPEC_VIN in s, "the first vehicle")
        assert "48,371 km" in line_with(screen, "Mileage")
        oil = next(item["forecast"] for item in payload["services"] if item["type"] == "engine_oil")
        fluid = next(item["forecast"] for item in payload["services"]
                     if item["type"] == "brake_fluid")
        oil_line = line_with(screen, "Engine oil and filter  ")
        assert "DUE SOON" in oil_line and oil["due_date"] in oil_line
        assert f" {oil['days_left']} " in oil_line and "1,800 km" in oil_line
        fluid_line = line_with(screen, "Brake fluid")
        assert " OK " in fluid_line and fluid["due_date"] in fluid_line and "n/a" in fluid_line
        assert "258 ACTIVE" in line_with(screen, "Check control")
        assert "P0301 (03011F)" in line_with(screen, "Faults") and "CONFIRMED" in screen
        assert "EXPRESS LANE: NO" in screen
        coloured = pane.screen(colours=True)
        assert "43" in colours_at(coloured, "DUE SOON  ")      # yellow badge
        assert "42" in colours_at(coloured, " OK  ")           # green badge
        assert "31" in colours_at(coloured, "258 ACTIVE")      # red text
        assert "43" in colours_at(coloured, "DUE SOON   ·")    # the summary bar

        # 2. A vehicle for the express lane; the first one moves to "Earlier".
        express = express_session()
        reader.write(key_bytes(express))
        screen = pane.wait_for(lambda s: express.vin in s and "EXPRESS LANE: YES" in s,
                               "the express-lane vehicle")
        assert "42" in colours_at(pane.screen(colours=True), "EXPRESS LANE: YES")
        earlier = screen[screen.index("Earlier"):]
        assert SPEC_VIN in earlier and "Due soon" in line_with(earlier, SPEC_VIN)

        # 3. A key that could not be read: a red line asking for it again.
        reader.write(spec_key(corrupt=True))
        screen = pane.wait_for(lambda s: "Key not read (crc_mismatch)" in s, "the rejection")
        assert "41" in colours_at(pane.screen(colours=True), "Key not read")
        assert express.vin in screen  # the last good vehicle stays on screen

        # Ctrl-C leaves the view cleanly.
        pane.keys("C-c")
        wait_until(lambda: pane.exit_status() is not None, 30, what="watch to exit on Ctrl-C")
        assert pane.exit_status() == "0"
        assert express.vin not in pane.screen()  # the alternate screen was left
    finally:
        pane.kill()
        readouts.stop()


@requires_tmux
def test_watch_in_german_from_the_config_file(tmp_path: Path, site) -> None:
    broker, reader, _agent = site
    config = tmp_path / "watch.toml"
    config.write_text(f'site = "{SITE}"\nreader = "{READER}"\nbroker = "{broker.url}"\n'
                      f'language = "de"\n')
    pane = TmuxPane(tmp_path, [sys.executable, "-m", "agent", "watch", "--config", str(config),
                               "--reader", READER])
    try:
        pane.wait_for(lambda s: "Warte auf Schlüssel" in s, "the German waiting screen")
        reader.write(spec_key())
        screen = pane.wait_for(lambda s: SPEC_VIN in s, "the vehicle")
        assert "48.371 km" in line_with(screen, "Kilometerstand")
        row = line_with(screen, "Motoröl und Filter  ")
        assert "BALD FÄLLIG" in row and "1.800 km" in row
        assert "Bremsflüssigkeit" in screen and "EXPRESS-SERVICE: NEIN" in screen
        assert "258 AKTIV" in line_with(screen, "Check-Control")
    finally:
        pane.kill()


# -- the pure view, without a terminal -----------------------------------------------------------


def _spec_payload() -> bytes:
    from agent.domain.forecast import ForecastSettings
    from agent.domain.models import to_json
    from agent.pipeline import ReadoutPipeline
    from protocols.session import SessionAccepted, SessionAssembler

    assembler = SessionAssembler()
    events = []
    for i, (fid, data) in enumerate(SPEC_FRAMES):
        events += assembler.feed(CanFrame(fid, bytes.fromhex(data), 1795770902.112 + i * 0.001))
    accepted = next(e for e in events if isinstance(e, SessionAccepted))
    pipeline = ReadoutPipeline(site=SITE, reader=READER, transport="serial",
                               forecast=ForecastSettings())
    return to_json(pipeline.readout(accepted)).encode()


NOW = datetime(2026, 11, 27, 9, 16, tzinfo=timezone.utc)
TOPIC = f"cbs/v1/{SITE}/{READER}"


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("width", [60, 80, 120])
def test_render_fits_the_terminal_in_every_language(lang: str, width: int) -> None:
    state = WatchState()
    state.apply(f"{TOPIC}/status", b'{"schema":"cbs.status/1","state":"online",'
                                   b'"reader":{"transport":"serial","port":"/dev/x","connected":true}}')
    payload = _spec_payload()
    state.apply(f"{TOPIC}/readout", payload)
    second = json.loads(payload)
    second["readout_id"] = "another"
    state.apply(f"{TOPIC}/readout", json.dumps(second).encode())
    for color in (True, False):
        lines = render(state, width=width, height=30, lang=lang, color=color, now=NOW)
        assert len(lines) <= 30
        assert all(display_width(line) <= width for line in lines), lines
        assert any(SPEC_VIN in line for line in lines)


def test_render_aligns_wide_characters() -> None:
    state = WatchState()
    state.apply(f"{TOPIC}/readout", _spec_payload())
    lines = render(state, width=120, lang="zh", color=False, now=NOW)
    dates = [line for line in lines if "2027-" in line and "[" in line]  # the table's rows
    assert len(dates) == 2
    columns = {display_width(line[:line.index("2027-")]) for line in dates}
    assert len(columns) == 1, "due dates line up although the names have wide characters"


def test_state_deduplicates_and_tolerates_newer_payloads() -> None:
    state = WatchState()
    payload = json.loads(_spec_payload())
    payload["a_key_from_a_later_revision"] = {"anything": [1, 2]}
    raw = json.dumps(payload).encode()
    assert state.apply(f"{TOPIC}/readout", raw) is True
    assert state.apply(f"{TOPIC}/readout", raw) is False  # redelivery: same readout_id
    assert state.readouts_seen == 1 and not state.recent
    assert state.apply(f"{TOPIC}/readout", b"not json") is False
    assert state.apply("other/topic", b"{}") is False
    assert state.ignored == 2
    lines = render(state, width=100, color=False, now=NOW)
    assert any(SPEC_VIN in line for line in lines)


def test_rejection_shows_until_the_next_good_read_and_offline_readers_stand_out() -> None:
    state = WatchState()
    state.apply(f"{TOPIC}/status", b'{"schema":"cbs.status/1","state":"offline"}')
    state.apply(f"{TOPIC}/rejected", b'{"schema":"cbs.rejected/1","reason":"timeout"}')
    text = "\n".join(render(state, width=100, color=False, now=NOW))
    assert "Key not read (timeout)" in text and f"{READER} OFFLINE" in text
    state.apply(f"{TOPIC}/readout", _spec_payload())
    text = "\n".join(render(state, width=100, color=False, now=NOW))
    assert "Key not read" not in text and SPEC_VIN in text


def test_minimal_readout_renders() -> None:
    """Only the keys the view cannot do without; everything else missing or null."""
    state = WatchState()
    state.apply(f"{TOPIC}/readout", json.dumps({
        "schema": "cbs.readout/1", "readout_id": "x", "vehicle": {"vin": SPEC_VIN},
        "services": [{"type": "something_new", "forecast": None}], "summary": {}}).encode())
    text = "\n".join(render(state, width=100, color=True, now=NOW))
    assert SPEC_VIN in text and "Unknown service" in text


def test_watch_refuses_a_bad_site_name() -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "watch", "--site", "a/b"],
                          capture_output=True, text=True, timeout=60, env=clean_environment(),
                          cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "site name 'a/b'" in done.stderr


def test_watch_prints_plain_blocks_when_not_on_a_terminal(tmp_path: Path, site) -> None:
    """Piped into a file (a log, a printer), one plain block per vehicle, no escape codes."""
    broker, reader, _agent = site
    out_path = tmp_path / "watch.out"
    with out_path.open("w") as out:
        watch = subprocess.Popen([sys.executable, "-m", "agent", "watch", "--broker", broker.url,
                                  "--language", "en"], stdout=out, stderr=subprocess.PIPE,
                                 env=clean_environment(TZ="UTC"), cwd=ROOT)
    try:
        # The broker logs subscriptions: lay the key once the view has subscribed (and again,
        # should the log be late: every key is a new readout, the view prints each).
        wait_until(lambda: "cbs/v1/+/+/readout" in broker.log_text(), TIMEOUT_S,
                   what="the view to subscribe")
        for attempt in range(6):
            reader.write(spec_key())
            try:
                wait_until(lambda: "EXPRESS LANE" in out_path.read_text(), TIMEOUT_S / 6,
                           what="a plain block")
                break
            except AssertionError:
                if attempt == 5:
                    print(watch.stderr.read().decode() if watch.poll() is not None else "")
                    raise
        text = out_path.read_text()
        assert SPEC_VIN in text and "EXPRESS LANE: NO" in text and "\x1b" not in text
        assert "DUE SOON" in line_with(text, "Engine oil and filter  ")
    finally:
        watch.terminate()
        assert watch.wait(timeout=30) == 0


@pytest.mark.parametrize(("lang", "words"), [("en", "in 38-74 days"), ("de", "in 38-74 Tagen"),
                                             ("zh", "38-74 天后")])
def test_render_shows_the_interval_in_words(lang: str, words: str) -> None:
    state = WatchState()
    state.apply(f"{TOPIC}/readout", _spec_payload())
    lines = render(state, width=140, lang=lang, color=False, now=NOW)
    oil = next(line for line in lines if "1,800" in line or "1.800" in line)
    # The spec example's oil: due 2027-01-19 (53 days), interval 2027-01-04 to 2027-02-09.
    assert oil.rstrip().endswith(words)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_vehicle_test_shows_with_lamp_and_vin_mismatch_standing_out(lang: str) -> None:
    state = WatchState()
    state.apply(f"{TOPIC}/readout", _spec_payload())
    assert state.apply(f"{TOPIC}/diagnosis", json.dumps({
        "schema": "cbs.diagnosis/1", "outcome": "partial",
        "vehicle": {"vin": SPEC_VIN, "vin_consistent": False},
        "ecus": [{"address": 18, "name": "DME", "vin": SPEC_VIN},
                 {"address": 99, "name": "HU", "vin": "WBA8E5107FK999999"}],
        "summary": {"ecus_present": 2, "dtcs": 5, "confirmed": 2, "warning_lamp": True},
    }).encode()) is True
    lines = render(state, width=100, lang=lang, color=False, now=NOW)
    assert all(display_width(line) <= 100 for line in lines)
    text = "\n".join(lines)
    assert "HU WBA8E5107FK999999" in text and "partial" in text
    if lang == "en":
        assert "WARNING LAMP ON" in text and "VIN MISMATCH" in text
        assert "2 control units, 5 faults (2 confirmed)" in text
