"""The reception desk in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium, against a private mosquitto, the real agent reading a
key reader on a pty, and the real ``cbs-agent desk`` process.

Set ``CBS_DESK_SCREENSHOTS=DIR`` to keep screenshots of the queue and the vehicle page at
1280x800 and 1920x1080 (docs/images/ holds the ones the README shows).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from broker import MosquittoBroker, Subscriber, die_with_parent, free_port, wait_until
from site_rig import AgentRun, PtyKeyReader, clean_environment, fleet_sessions, key_bytes

from agent.desk.security import hash_password
from agent.domain.approval import fault_finding_lines, proposal_lines, selection_totals
from agent.domain.catalogue import default_catalogue

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

SITE, READER = "S1", "desk1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SIZES = ((1280, 800), (1920, 1080))
CONFIG = """
[proposal]
look_ahead_days = 3650
"""


def spec_key() -> bytes:
    from test_watch_view import spec_key as watch_spec_key
    return watch_spec_key()


class DeskRun:
    """``python -m agent desk`` on a free port, its log in ``workdir``."""

    def __init__(self, workdir: Path, broker: MosquittoBroker, *args: str,
                 host: str = "127.0.0.1", config_text: str | None = None,
                 port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = host
        self.log_path = workdir / "desk.log"
        config = workdir / "desk.toml"
        config.write_text(CONFIG if config_text is None else config_text)
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "desk", "--broker", broker.url, "--site", SITE,
                 "--host", host, "--port", str(self.port), "--state-dir", str(workdir / "state"),
                 "--config", str(config), *args],
                stdout=log, stderr=log, cwd=workdir, env=clean_environment(),
                preexec_fn=die_with_parent)
        wait_until(self._up, 30, "the desk to answer HTTP")

    @property
    def url(self) -> str:
        # A desk on every address is still reached on loopback: tests talk to 127.0.0.1 only.
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}"

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the desk exited: {self.log_path.read_text()}")
        try:
            with urllib.request.urlopen(self.url + "/static/desk.css", timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> int:
        """SIGTERM and wait (SIGKILL if it hangs); the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return int(self.process.returncode)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,800", "--lang=en-GB"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.skip(f"chromium does not start here: {exc.msg}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def rig(tmp_path: Path, make_broker) -> Iterator[tuple[MosquittoBroker, PtyKeyReader, DeskRun]]:
    broker = make_broker(persistence=True)
    reader = PtyKeyReader()
    (tmp_path / "agent").mkdir()
    agent_config = tmp_path / "agent" / "agent.toml"
    agent_config.write_text(CONFIG)
    agent = AgentRun.serial(tmp_path / "agent", reader, site=SITE, name=READER,
                            broker_url=broker.url, extra=("--config", str(agent_config)))
    desk = None
    try:
        reader.wait_connected()
        desk = DeskRun(tmp_path / "desk", broker)
        yield broker, reader, desk
    except AssertionError:
        print("--- agent ---\n" + agent.tail())
        if desk is not None:
            print("--- desk ---\n" + desk.log_path.read_text()[-4000:])
        raise
    finally:
        if desk is not None:
            desk.stop()
        agent.stop()
        reader.close()



def wait_for(driver: Any, condition: Any, timeout_s: float = 10, what: str = "page") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = condition(driver)
        except WebDriverException:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def screenshots(driver: Any, name: str) -> None:
    target = os.environ.get("CBS_DESK_SCREENSHOTS")
    if not target:
        return
    Path(target).mkdir(parents=True, exist_ok=True)
    scrolled = driver.execute_script("return window.scrollY;")
    for width, height in SIZES:
        driver.set_window_size(width, height)
        time.sleep(0.3)
        driver.execute_script("window.scrollTo(0, arguments[0]);", scrolled)
        driver.save_screenshot(str(Path(target) / f"desk-{name}-{width}x{height}.png"))
    driver.set_window_size(*SIZES[0])


def publish(broker: MosquittoBroker, topic: str, payload: dict[str, Any],
            retain: bool = False) -> None:
    import paho.mqtt.publish as single

    single.single(topic, json.dumps(payload), qos=1, retain=retain, hostname=broker.host,
                  port=broker.port)


def gross(driver: Any) -> str:
    return str(driver.find_element(By.ID, "total-gross").get_attribute("data-value"))


def test_a_key_read_appears_live_and_the_approval_is_published(rig, browser) -> None:
    broker, reader, desk = rig
    readouts = Subscriber.for_broker(broker, f"cbs/v1/{SITE}/{READER}/readout").start()
    approvals = Subscriber.for_broker(broker, f"cbs/v1/{SITE}/+/approval").start()
    try:
        browser.get(desk.url + "/")
        wait_for(browser, lambda d: "link-ok" in d.find_element(By.ID, "link")
                 .get_attribute("class"), what="the broker connected")
        browser.execute_script("window.notReloaded = true;")

        # 1. A key read appears within a second or two, without a reload.
        laid = time.monotonic()
        reader.write(spec_key())
        payload = readouts.wait_for_count(1)[0].json()
        arrived = time.monotonic()
        vin = payload["vehicle"]["vin"]
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-vin="{vin}"]'),
                 timeout_s=5, what="the vehicle in the queue")
        shown = time.monotonic()
        assert shown - arrived < 1.0 and shown - laid < 2.0, (shown - laid, shown - arrived)
        assert browser.execute_script("return window.notReloaded === true;")
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-vin="{vin}"]').text
        assert "48,371 km" in row and "Due soon" in row and "No" in row
        # a second key comes on top
        reader.write(key_bytes(fleet_sessions(7, 1)[0]))
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue-rows tr")) == 2,
                 what="the second vehicle")
        first = browser.find_elements(By.CSS_SELECTOR, "#queue-rows tr")[0]
        assert first.get_attribute("data-vin") != vin  # newest first
        screenshots(browser, "queue")

        # 2. The vehicle: the page's totals are the published proposal's; the vehicle test
        #    published meanwhile is on it.
        from desk_payloads import diagnosis
        publish(broker, f"cbs/v1/{SITE}/{READER}/diagnosis",
                diagnosis(vin, lamp=True, other_vin="WBA00000000000000",
                          readout_id=payload["readout_id"]))
        time.sleep(0.3)
        browser.find_element(By.LINK_TEXT, vin).click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "proposal-form"), what="the vehicle")
        proposal = payload["proposal"]
        assert gross(browser) == proposal["totals"]["gross"]
        assert "Engine oil and filter" in browser.page_source
        assert "Cylinder 1 misfire detected" in browser.page_source
        assert "Warning lamp ON" in browser.page_source and "BDC (WBA00000000000000)" in (
            browser.page_source)
        # ... and prominently: the alerts stand above the service items, in view at once.
        alerts = browser.find_element(By.ID, "alerts")
        assert alerts.is_displayed() and alerts.location["y"] < browser.find_element(
            By.ID, "h-services").location["y"]
        assert "Warning lamp ON" in alerts.text and "VIN mismatch" in alerts.text
        # The confirmed P0301 of the DME (on the key and in the vehicle test) is one priced
        # fault-finding line: the shipped catalogue's 60 minutes at the proposal's rate.
        (fault_line,) = fault_finding_lines(
            payload, None, default_catalogue().fault_finding, places=2,
            labour_rate_per_hour=Decimal(proposal["labour_rate_per_hour"]))
        fault_row = browser.find_element(
            By.CSS_SELECTOR, f'input[value="{fault_line.key}"]').find_element(By.XPATH, "../..")
        assert "Fault finding DME (0x12): P0301" in fault_row.text
        assert "60 min" in fault_row.text and "€156.00" in fault_row.text
        screenshots(browser, "vehicle")
        browser.execute_script("document.getElementById('proposal').scrollIntoView();")
        screenshots(browser, "proposal")

        # 3. Ticking lines changes the totals (exactly, as the desk's arithmetic).
        lines = proposal_lines(proposal)
        optional = next(line for line in lines if not line.required)
        required = [line for line in lines if line.required]
        box = browser.find_element(By.CSS_SELECTOR, f'input[value="{optional.key}"]')
        browser.execute_script("arguments[0].focus();", box)
        browser.switch_to.active_element.send_keys(Keys.SPACE)  # by keyboard
        expected = selection_totals([*required, optional], places=2,
                                    tax_rate_pct=Decimal(proposal["tax_rate_pct"]))
        wait_for(browser, lambda d: gross(d) == format(expected.gross, "f"),
                 what="the totals with the optional line")
        assert gross(browser) == proposal["totals_with_optional"]["gross"] or len(lines) > 2
        for line in required:
            browser.find_element(By.CSS_SELECTOR, f'input[value="{line.key}"]').click()
        only = selection_totals([optional], places=2,
                                tax_rate_pct=Decimal(proposal["tax_rate_pct"]))
        wait_for(browser, lambda d: gross(d) == format(only.gross, "f"),
                 what="the totals of the optional line alone")
        # Ticking the fault finding adds its price, taxed once on the total, and its minutes.
        fault_box = browser.find_element(By.CSS_SELECTOR, f'input[value="{fault_line.key}"]')
        fault_box.click()
        with_fault = selection_totals([optional, fault_line], places=2,
                                      tax_rate_pct=Decimal(proposal["tax_rate_pct"]))
        assert with_fault.gross > only.gross
        wait_for(browser, lambda d: gross(d) == format(with_fault.gross, "f"),
                 what="the totals with the fault-finding line")
        assert f"{with_fault.labour_minutes} of 60 min" in browser.find_element(
            By.ID, "verdict-minutes").text
        fault_box.click()
        wait_for(browser, lambda d: gross(d) == format(only.gross, "f"),
                 what="the totals without the fault-finding line again")

        # A vehicle test arriving while the page is open is offered, the ticks kept.
        later = diagnosis(vin, confirmed=False)
        later["diagnosis_id"], later["finished_at"] = "diag-later", "2026-12-06T09:30:00.000Z"
        later["ecus"][0]["software"] = "SW 99.1"
        publish(broker, f"cbs/v1/{SITE}/{READER}/diagnosis", later)
        wait_for(browser, lambda d: d.find_element(By.ID, "news").is_displayed(),
                 what="the offer of the new vehicle test")
        browser.find_element(By.ID, "news-link").click()
        wait_for(browser, lambda d: "SW 99.1" in d.page_source, what="the new vehicle test")
        assert gross(browser) == format(only.gross, "f")

        # 4. Approving publishes cbs.approval/1 with exactly the ticked lines.
        browser.find_element(By.ID, "approve").click()
        wait_for(browser, lambda d: "Approval recorded" in d.page_source, what="the confirmation")
        approval = approvals.wait_for_count(1)[0]
        assert approval.topic == f"cbs/v1/{SITE}/{READER}/approval"
        wire = approval.json()
        assert wire["schema"] == "cbs.approval/1" and wire["readout_id"] == payload["readout_id"]
        assert [s["index"] for s in wire["approved"]["services"]] == [optional.index]
        assert wire["diagnosis_id"] == "diag-later"
        assert sorted(s["index"] for s in wire["declined"]["services"]) == sorted(
            line.index for line in required)
        assert wire["totals"]["gross"] == format(only.gross, "f")
        assert wire["approved"]["fault_finding"] == []
        assert wire["declined"]["fault_finding"] == [{"ecu": 0x12, "name": "DME", "priced": True,
                                                      "labour_minutes": 60, "net": "156.00"}]
        assert approval.user_property.get("schema") == "cbs.approval/1"

        # 5. Chinese at a click.
        browser.find_element(By.LINK_TEXT, "简体中文").click()
        wait_for(browser, lambda d: "机油及机油滤清器" in d.page_source, what="Chinese names")
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-Hans"
    finally:
        readouts.stop()
        approvals.stop()


def test_the_approval_survives_a_broker_outage(rig, browser) -> None:
    broker, reader, desk = rig
    approvals = Subscriber.for_broker(broker, f"cbs/v1/{SITE}/+/approval", persistent=True,
                                      client_id="desk-test-approvals").start()
    try:
        browser.get(desk.url + "/")
        reader.write(spec_key())
        vin = "WBA8E5107FK123456"
        wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, vin), what="the vehicle")
        browser.find_element(By.LINK_TEXT, vin).click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "approve"), what="the vehicle page")
        broker.stop()
        wait_for(browser, lambda d: "Message broker unreachable" in d.find_element(
            By.ID, "link").text, timeout_s=15, what="the page to say the broker is away")
        browser.find_element(By.ID, "approve").click()
        wait_for(browser, lambda d: "Approval recorded" in d.page_source, what="the confirmation")
        time.sleep(0.5)
        broker.start()
        wire = approvals.wait_for_count(1, timeout_s=30)[0].json()
        assert wire["vin"] == vin and [s["index"] for s in wire["approved"]["services"]] == [0]
    finally:
        approvals.stop()


def test_payload_html_shows_as_text_and_the_page_survives_a_desk_restart(rig, browser) -> None:
    broker, reader, desk = rig
    browser.get(desk.url + "/")
    wait_for(browser, lambda d: "link-ok" in d.find_element(By.ID, "link").get_attribute("class"),
             what="the broker connected")
    from desk_payloads import spec_readout
    hostile = spec_readout(datetime.now(timezone.utc))
    hostile["readout_id"] = "hostile-1"
    hostile["vehicle"]["vin"] = "<img src=x onerror=alert(1)>"
    hostile["reader"] = "<b>bold</b>"
    publish(broker, f"cbs/v1/{SITE}/{READER}/readout", hostile)
    wait_for(browser, lambda d: "<img src=x onerror=alert(1)>" in d.find_element(
        By.ID, "queue-rows").text, what="the hostile VIN shown as text")
    assert not browser.find_elements(By.CSS_SELECTOR, "#queue-rows img, #queue-rows b")
    browser.execute_script("window.notReloaded = true;")

    # The desk restarts: the page says so, reconnects by itself and goes on showing keys.
    port = desk.port
    assert desk.stop() == 0  # SIGTERM: a clean stop
    wait_for(browser, lambda d: "Connection to the desk lost" in d.find_element(By.ID, "link").text,
             what="the page to say the desk is away")
    again = DeskRun(desk.log_path.parent, broker, port=port)
    try:
        wait_for(browser, lambda d: "link-ok" in d.find_element(By.ID, "link")
                 .get_attribute("class"), timeout_s=15, what="the page to reconnect")
        reader.write(spec_key())
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR,
                                                    'tr[data-vin="WBA8E5107FK123456"]'),
                 timeout_s=5, what="a key read after the restart")
        assert browser.execute_script("return window.notReloaded === true;")
    finally:
        again.stop()


def test_a_desk_on_the_network_needs_the_login(tmp_path: Path, mosquitto, browser) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "agent", "desk", "--broker", mosquitto.url, "--site", SITE,
         "--host", "0.0.0.0", "--port", str(free_port()), "--state-dir", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=60, env=clean_environment())
    assert refused.returncode == 2 and "needs a login" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    secret = f'[desk]\npassword_hash = "{hash_password("front desk 42")}"\n'
    desk = DeskRun(tmp_path / "desk", mosquitto, host="0.0.0.0", config_text=secret)
    try:
        browser.get(desk.url + "/")
        wait_for(browser, lambda d: d.current_url.endswith("/login"), what="the login page")
        browser.find_element(By.ID, "password").send_keys("not it\n")
        wait_for(browser, lambda d: "Wrong password" in d.page_source, what="the refusal")
        assert not browser.find_elements(By.ID, "queue-rows")
        browser.find_element(By.ID, "password").send_keys("front desk 42\n")
        wait_for(browser, lambda d: d.find_elements(By.ID, "queue-rows"), what="the queue")
        cookie = browser.get_cookie("cbs_desk")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    finally:
        desk.stop()
