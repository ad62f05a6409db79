"""The desk's pages, feed state, proposal ticks, approval and login, with Starlette's TestClient."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from desk_payloads import (
    PREFIX,
    READER,
    SITE,
    SPEC_READ_AT,
    SPEC_VIN,
    diagnosis,
    express_session,
    readout_of,
    spec_readout,
    status,
)
from starlette.testclient import TestClient

from agent.contract.schemas import payload_schema
from agent.desk.app import DeskConfig, create_app
from agent.desk.feed import DeskFeed
from agent.desk.security import LoginLimiter, hash_password
from agent.desk.state import DeskState, model_year
from agent.domain.approval import Approval, proposal_lines, selection_totals
from agent.domain.catalogue import FaultFinding, default_catalogue
from agent.domain.express import express_verdict
from agent.domain.models import to_json
from agent.mqtt.settings import MqttSettings

NOW = SPEC_READ_AT + timedelta(minutes=3)
BASE = f"{PREFIX}/{SITE}"


class Sink:
    def __init__(self) -> None:
        self.approvals: list[Approval] = []

    def record(self, approval: Approval) -> str:
        self.approvals.append(approval)
        return f"{BASE}/{approval.reader}/approval"


SHIPPED_FAULT_FINDING = default_catalogue().fault_finding


def make_desk(*, require_login: bool = False, password: str | None = None,
              limiter: LoginLimiter | None = None,
              fault_finding: FaultFinding | None = SHIPPED_FAULT_FINDING,
              ) -> tuple[TestClient, DeskFeed, Sink]:
    feed = DeskFeed(MqttSettings(), DeskState(prefix=PREFIX, site=SITE))
    with feed.locked() as state:
        state.set_broker(True)
        state.apply(f"{BASE}/{READER}/status", status(), now=NOW)
    sink = Sink()
    config = DeskConfig(site=SITE, prefix=PREFIX, desk_name="desk-test", language="en",
                        secret="x" * 64, require_login=require_login,
                        password_hash=hash_password(password) if password else None,
                        fault_finding=fault_finding)
    app = create_app(config, feed, sink, clock=lambda: NOW, limiter=limiter)
    return TestClient(app, base_url="http://127.0.0.1"), feed, sink


def put(feed: DeskFeed, topic: str, payload: dict[str, Any] | bytes) -> None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with feed.locked() as state:
        state.apply(topic, raw, now=NOW)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


# -- the one express-lane verdict -----------------------------------------------------------


def test_express_verdict_is_the_proposals_and_says_why() -> None:
    spec = spec_readout()
    verdict = express_verdict(spec)
    assert verdict.eligible is spec["proposal"]["express"]["eligible"] is False
    assert verdict.reasons == ("check_control_active", "fault_confirmed")

    express = readout_of(express_session(), NOW)
    verdict = express_verdict(express)
    assert express["summary"]["express_eligible"] and express["proposal"]["express"]["eligible"]
    assert verdict.eligible and verdict.reasons == ()
    assert verdict.minutes == 30 and verdict.budget_minutes == 60

    # The key said "express" but the vehicle test found a confirmed fault: not any more.
    found = express_verdict(express, diagnosis(express["vehicle"]["vin"]))
    assert not found.eligible and found.reasons == ("diagnosis_fault",)
    # The summary said yes, the time budget says no: the terminal once showed YES here.
    long_job = json.loads(json.dumps(express))
    long_job["proposal"]["express"]["minutes"] = 75
    assert express_verdict(long_job).reasons == ("over_budget",)
    assert express_verdict({}).reasons == ("nothing_due", "no_proposal")


def test_watch_shows_the_same_verdict() -> None:
    from agent.tools.watch import WatchState, render

    watch = WatchState()
    long_job = readout_of(express_session(), NOW)
    long_job["proposal"]["express"]["minutes"] = 75
    watch.apply(f"{BASE}/{READER}/readout", json.dumps(long_job).encode())
    screen = "\n".join(render(watch, width=120, color=False, now=NOW))
    assert "EXPRESS LANE: NO" in screen and "longer than the lane's time" in screen
    assert f"Total incl. tax {long_job['proposal']['totals']['gross']} EUR" in screen


# -- exact totals of a selection --------------------------------------------------------------


def test_selection_totals_reproduce_the_published_totals() -> None:
    proposal = spec_readout()["proposal"]
    lines = proposal_lines(proposal)
    assert [line.required for line in lines] == [True, False]
    rate = Decimal(proposal["tax_rate_pct"])
    required = selection_totals([x for x in lines if x.required], tax_rate_pct=rate, places=2)
    everything = selection_totals(lines, tax_rate_pct=rate, places=2)
    assert json.loads(to_json(required)) == proposal["totals"]
    assert json.loads(to_json(everything)) == proposal["totals_with_optional"]
    assert proposal["totals_with_optional"]["gross"] == "351.62"  # docs/proposal.md


# -- state --------------------------------------------------------------------------------------


def test_state_keeps_latest_visits_and_deduplicates() -> None:
    state = DeskState(prefix=PREFIX, site=SITE)
    first = spec_readout(SPEC_READ_AT - timedelta(days=200))
    second = spec_readout()
    assert state.apply(f"{BASE}/{READER}/readout", json.dumps(second).encode(), now=NOW)
    assert not state.apply(f"{BASE}/vehicles/{SPEC_VIN}", json.dumps(second).encode(), now=NOW)
    assert state.apply(f"{BASE}/{READER}/readout", json.dumps(first).encode(), now=NOW)
    record = state.vehicles[SPEC_VIN]
    assert record.latest["readout_id"] == second["readout_id"]
    assert [v["readout_id"] for v in record.visits] == [first["readout_id"]]
    assert [r.vin for r in state.queue(NOW)] == [SPEC_VIN]
    assert state.queue(NOW + timedelta(days=1)) == []  # today's vehicles only
    assert not state.apply(f"{BASE}/{READER}/readout", b"not json", now=NOW)
    assert state.ignored == 1
    state.apply(f"{BASE}/{READER}/status", status("offline"), now=NOW)
    assert [a.reader for a in state.agents_away(NOW)] == [READER]


def test_model_year_from_the_vin() -> None:
    assert model_year(SPEC_VIN, "2022-03", NOW.date()) == 2015  # F = 2015
    assert model_year("WBS8M9C59J5K98765", None, NOW.date()) == 2018


# -- pages ----------------------------------------------------------------------------------------


def test_queue_lists_todays_vehicles_with_status_words_and_security_headers() -> None:
    client, feed, _ = make_desk()
    put(feed, f"{BASE}/{READER}/readout", spec_readout())
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert SPEC_VIN in html and "48,371 km" in html and "Due soon" in html and "2015" in html
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script>" not in html and 'src="/static/desk.js"' in html  # no inline script
    assert client.get("/static/desk.js").status_code == 200


def test_payload_html_is_shown_as_text() -> None:
    client, feed, _ = make_desk()
    hostile = spec_readout()
    hostile["vehicle"]["vin"] = "<script>alert(1)</script>"
    hostile["readout_id"] = "hostile"
    hostile["proposal"]["required"][0]["type"] = "<img src=x onerror=alert(2)>"
    put(feed, f"{BASE}/{READER}/readout", hostile)
    queue = client.get("/").text
    assert "<script>alert(1)" not in queue and "&lt;script&gt;alert(1)&lt;/script&gt;" in queue
    page = client.get("/vehicle/<script>alert(1)</script>").text
    assert "<script>alert" not in page and "<img src=x" not in page


def test_broker_away_is_said_on_the_page() -> None:
    client, feed, _ = make_desk()
    with feed.locked() as state:
        state.set_broker(False)
    assert "Message broker unreachable" in client.get("/").text


def test_vehicle_page_shows_everything_the_advisor_needs() -> None:
    client, feed, _ = make_desk()
    readout = spec_readout()
    put(feed, f"{BASE}/{READER}/readout", readout)
    put(feed, f"{BASE}/vehicles/{SPEC_VIN}/diagnosis",
        diagnosis(SPEC_VIN, lamp=True, other_vin="WBA00000000000000"))
    older = spec_readout(SPEC_READ_AT - timedelta(days=300))
    put(feed, f"{BASE}/{READER}/readout", older)
    html = client.get(f"/vehicle/{SPEC_VIN}").text
    for needed in ("Engine oil and filter", "Brake fluid", "Due soon", "258", "P0301",
                   "Cylinder 1 misfire detected", "DME", "SW 12.4.1", "Warning lamp ON",
                   "VIN mismatch", "BDC (WBA00000000000000)", "Earlier visits",
                   "Reminder planned for", "Express lane: no", "an active check-control message",
                   "Fault finding DME (0x12): P0301", "repair quoted once the cause is found"):
        assert needed in html, needed
    totals = re.search(r'id="total-gross" data-value="([^"]+)"', html)
    assert totals is not None and totals.group(1) == readout["proposal"]["totals"]["gross"]
    assert "€229.65" in html


def test_ticking_lines_changes_the_totals_exactly() -> None:
    client, feed, _ = make_desk()
    readout = spec_readout()
    put(feed, f"{BASE}/{READER}/readout", readout)
    base = f"/vehicle/{SPEC_VIN}/totals"
    required = client.get(base, params=[("line", "service:0"), ("ticked", "1")]).json()
    both = client.get(base, params=[("line", "service:0"), ("line", "service:1"),
                                    ("ticked", "1")]).json()
    none = client.get(base, params=[("ticked", "1")]).json()
    assert required["gross"]["value"] == readout["proposal"]["totals"]["gross"]
    assert both["gross"]["value"] == readout["proposal"]["totals_with_optional"]["gross"]
    assert none["gross"]["value"] == "0.00" and none["express"]["eligible"] is False
    # The key's confirmed P0301 of the DME: its fault finding, 60 min at 156.00/h.
    with_fault = client.get(base, params=[("line", "service:0"), ("line", "fault:18")]).json()
    assert with_fault["complete"] is True and with_fault["incomplete_text"] == ""
    assert with_fault["net"]["value"] == "348.98"  # 192.98 + 156.00
    assert with_fault["tax"]["value"] == "66.31" and with_fault["gross"]["value"] == "415.29"
    assert with_fault["labour_minutes"] == 90


def test_languages_use_their_names_and_locale_formats() -> None:
    client, feed, _ = make_desk()
    put(feed, f"{BASE}/{READER}/readout", spec_readout())
    zh = client.get(f"/vehicle/{SPEC_VIN}", params={"lang": "zh-CN"}).text
    assert "机油及机油滤清器" in zh and 'lang="zh-Hans"' in zh
    de = client.get(f"/vehicle/{SPEC_VIN}", params={"lang": "de"}).text
    assert "Motoröl und Filter" in de and "229,65\xa0€" in de and "48.371 km" in de
    # the choice stays for the session
    assert "Motoröl und Filter" in client.get(f"/vehicle/{SPEC_VIN}").text


def test_approval_publishes_exactly_the_ticked_lines() -> None:
    client, feed, sink = make_desk()
    readout = spec_readout()
    put(feed, f"{BASE}/{READER}/readout", readout)
    page = client.get(f"/vehicle/{SPEC_VIN}").text
    form = {"readout_id": readout["readout_id"], "do": "approve",
            "line": ["service:1", "fault:18"]}
    assert client.post(f"/vehicle/{SPEC_VIN}/approve", data=form).status_code == 403  # no CSRF
    assert sink.approvals == []
    response = client.post(f"/vehicle/{SPEC_VIN}/approve", data={**form, "csrf": csrf_of(page)},
                           follow_redirects=False)
    assert response.status_code == 303
    (approval,) = sink.approvals
    wire = json.loads(to_json(approval))
    jsonschema.validate(wire, payload_schema("approval"))
    assert wire["schema"] == "cbs.approval/1" and wire["vin"] == SPEC_VIN
    assert wire["readout_id"] == readout["readout_id"] and wire["diagnosis_id"] is None
    assert [s["index"] for s in wire["approved"]["services"]] == [1]
    assert [s["index"] for s in wire["declined"]["services"]] == [0]
    assert wire["approved"]["faults"] == [{"ecu": 18, "code": "03011F", "sae": "P0301",
                                          "source": "key"}]
    assert wire["approved"]["fault_finding"] == [{"ecu": 18, "name": "DME", "priced": True,
                                                  "labour_minutes": 60, "net": "156.00"}]
    assert wire["declined"]["faults"] == wire["declined"]["fault_finding"] == []
    assert wire["totals"]["net"] == "258.50" and wire["totals"]["complete"] is True
    assert wire["totals"]["labour_minutes"] == 90 and wire["express"]["minutes"] == 90
    assert wire["express"]["eligible"] is False
    shown = client.get(response.headers["location"]).text
    assert approval.approval_id in shown


def test_approval_of_an_outdated_page_is_refused() -> None:
    client, feed, sink = make_desk()
    readout = spec_readout()
    put(feed, f"{BASE}/{READER}/readout", readout)
    page = client.get(f"/vehicle/{SPEC_VIN}").text
    put(feed, f"{BASE}/{READER}/readout", spec_readout(SPEC_READ_AT + timedelta(minutes=1)))
    response = client.post(f"/vehicle/{SPEC_VIN}/approve", follow_redirects=False, data={
        "csrf": csrf_of(page), "readout_id": readout["readout_id"], "line": "service:0"})
    assert response.status_code == 303 and "notice=newer" in response.headers["location"]
    assert sink.approvals == []


@pytest.mark.parametrize("lang", ["en", "de", "zh"])
def test_printable_proposal(lang: str) -> None:
    client, feed, _ = make_desk()
    put(feed, f"{BASE}/{READER}/readout", spec_readout())
    response = client.get(f"/vehicle/{SPEC_VIN}/proposal.pdf", params={"lang": lang})
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    css = client.get("/static/desk.css").text
    assert "@media print" in css


def test_login_when_required() -> None:
    clock = [0.0]
    client, feed, _ = make_desk(require_login=True, password="correct horse",
                                limiter=LoginLimiter(attempts=3, clock=lambda: clock[0]))
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/events").status_code == 401
    login = client.get("/login").text
    token = csrf_of(login)
    for _ in range(3):
        assert client.post("/login", data={"csrf": token, "password": "wrong"}).status_code == 401
    assert client.post("/login", data={"csrf": token, "password": "correct horse"}
                       ).status_code == 429
    clock[0] += 61
    response = client.post("/login", data={"csrf": token, "password": "correct horse"},
                           follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/").status_code == 200


def test_earlier_visits_survive_a_restart_of_the_desk(tmp_path) -> None:
    from agent.desk.visits import VisitStore

    store = VisitStore(tmp_path / "desk-visits.sqlite3", per_vehicle=3)
    feed = DeskFeed(MqttSettings(), DeskState(prefix=PREFIX, site=SITE), visits=store)
    readouts = [spec_readout(SPEC_READ_AT - timedelta(days=100 * n)) for n in range(5)]
    for readout in readouts:
        feed._on_message(None, None, type("M", (), {
            "topic": f"{BASE}/{READER}/readout", "payload": json.dumps(readout).encode()})())
    store.close()

    again = DeskFeed(MqttSettings(), DeskState(prefix=PREFIX, site=SITE),
                     visits=VisitStore(tmp_path / "desk-visits.sqlite3", per_vehicle=3))
    assert again.restore() == 3
    record = again.state.vehicles[SPEC_VIN]
    assert record.latest["readout_id"] == readouts[0]["readout_id"]
    assert [v["readout_id"] for v in record.visits] == [r["readout_id"] for r in readouts[1:3]]


def test_an_agent_away_is_said_on_the_page() -> None:
    client, feed, _ = make_desk()
    put(feed, f"{BASE}/{READER}/status", status("offline"))
    assert f"Key reader {READER} is away" in client.get("/").text
    put(feed, f"{BASE}/{READER}/status", status("online", connected=False))
    assert f"Key reader {READER}: reader unplugged" in client.get("/").text


def test_every_asset_ships_in_the_package() -> None:
    from pathlib import Path

    import agent.desk

    here = Path(agent.desk.__file__).parent
    for path in [*(here / "templates").iterdir(), *(here / "static").iterdir()]:
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


def test_hash_password_and_a_taken_port_from_the_command_line(tmp_path) -> None:
    import socket
    import subprocess
    import sys

    from agent.desk.security import verify_password

    done = subprocess.run([sys.executable, "-m", "agent", "desk", "--hash-password"],
                          input="front desk 42\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and verify_password("front desk 42", done.stdout.strip())
    short = subprocess.run([sys.executable, "-m", "agent", "desk", "--hash-password"],
                           input="short\n", capture_output=True, text=True, timeout=60)
    assert short.returncode == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = subprocess.run([sys.executable, "-m", "agent", "desk", "--site", SITE,
                               "--port", str(port), "--state-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1


def test_a_vehicle_test_before_the_readout_joins_it() -> None:
    state = DeskState(prefix=PREFIX, site=SITE)
    state.apply(f"{BASE}/vehicles/{SPEC_VIN}/diagnosis", json.dumps(diagnosis(SPEC_VIN)).encode())
    assert SPEC_VIN not in state.vehicles and len(state.orphan_diagnoses) == 1
    state.apply(f"{BASE}/vehicles/{SPEC_VIN}", json.dumps(spec_readout()).encode())
    assert state.vehicles[SPEC_VIN].diagnosis is not None and not state.orphan_diagnoses


# -- fault-finding lines, warning lamp, VIN mismatch, recurring -------------------------------


def test_the_vehicle_tests_alerts_come_first_and_in_the_queue() -> None:
    """The warning lamp and a VIN mismatch stand at the top of the vehicle page, before the
    service items, and beside the VIN in today's queue; a recurring fault is marked in the
    vehicle test and on its fault-finding line."""
    client, feed, _ = make_desk()
    put(feed, f"{BASE}/{READER}/readout", spec_readout())
    report = diagnosis(SPEC_VIN, lamp=True, other_vin="WBA00000000000000")
    report["ecus"][0]["dtcs"][0]["recurring"] = True
    put(feed, f"{BASE}/vehicles/{SPEC_VIN}/diagnosis", report)
    html = client.get(f"/vehicle/{SPEC_VIN}").text
    alerts = html.index('id="alerts"')
    assert alerts < html.index('id="h-services"')
    top = html[alerts:html.index("</div>", alerts)]
    assert 'role="alert"' in top and "Warning lamp ON" in top
    assert "VIN mismatch: BDC (WBA00000000000000) report another VIN" in top
    assert html.count("↻ recurring") == 2  # the vehicle test's fault and the proposal line
    queue = client.get("/").text
    row = queue[queue.index(f'data-vin="{SPEC_VIN}"'):]
    row = row[:row.index("</tr>")]
    assert "⚠ Warning lamp ON" in row and "⚠ VIN mismatch" in row
    de = client.get(f"/vehicle/{SPEC_VIN}", params={"lang": "de"}).text
    assert "Warnleuchte AN" in de and "wiederkehrend" in de and "Fehlersuche DME (0x12)" in de


def test_a_clean_vehicle_test_raises_no_alert() -> None:
    client, feed, _ = make_desk()
    put(feed, f"{BASE}/{READER}/readout", spec_readout())
    put(feed, f"{BASE}/vehicles/{SPEC_VIN}/diagnosis", diagnosis(SPEC_VIN, confirmed=False))
    html = client.get(f"/vehicle/{SPEC_VIN}").text
    assert 'id="alerts"' not in html and "badge-alert" not in client.get("/").text


def test_a_report_linked_by_key_readout_id_with_another_vin_is_a_mismatch() -> None:
    """The car answered with a VIN other than the key's: the report still joins the key
    readout it names (key_readout_id), and the desk says the VINs differ."""
    client, feed, _ = make_desk()
    readout = spec_readout()
    put(feed, f"{BASE}/{READER}/readout", readout)
    other = "WBA00000000000001"
    report = diagnosis(other, readout_id=readout["readout_id"])
    put(feed, f"{BASE}/{READER}/diagnosis", report)
    with feed.locked() as state:
        assert state.vehicles[SPEC_VIN].diagnosis == report and other not in state.vehicles
    html = client.get(f"/vehicle/{SPEC_VIN}").text
    top = html[html.index('id="alerts"'):html.index('id="h-services"')]
    assert "VIN mismatch" in top and "DME (WBA00000000000001)" in top


def test_the_vehicle_tests_faults_are_priced_with_the_keys_in_one_line_per_unit() -> None:
    """The spec readout's P0301 (DME, on the key) and the vehicle test's P0301 of the DME
    are one line; the BDC's confirmed fault is a second; the KOMBI's pending one none."""
    client, feed, _ = make_desk()
    put(feed, f"{BASE}/{READER}/readout", spec_readout())
    report = diagnosis(SPEC_VIN)
    report["ecus"][1]["dtcs"] = [{"code": "A1B2C3", "sae": None, "failure_type": 195,
                                  "status": 9, "confirmed": True, "pending": False,
                                  "warning_lamp": False, "occurrences": 1}]
    report["ecus"].append({"address": 0x60, "name": "KOMBI", "vin": SPEC_VIN, "dtcs": [
        {"code": "B00001", "sae": None, "confirmed": False, "pending": True}], "errors": []})
    put(feed, f"{BASE}/vehicles/{SPEC_VIN}/diagnosis", report)
    html = client.get(f"/vehicle/{SPEC_VIN}").text
    assert html.count('value="fault:') == 2
    assert "Fault finding DME (0x12): P0301" in html and "Fault finding BDC (0x40): A1B2C3" in html
    totals = client.get(f"/vehicle/{SPEC_VIN}/totals", params=[
        ("line", "fault:18"), ("line", "fault:64"), ("ticked", "1")]).json()
    # DME 60 min (156.00) + BDC 30 min (78.00) = 234.00 net, 44.46 tax
    assert (totals["net"]["value"], totals["tax"]["value"], totals["gross"]["value"]) == (
        "234.00", "44.46", "278.46")
    assert totals["labour_minutes"] == 90 and totals["complete"] is True


def test_express_is_refused_with_a_confirmed_fault_and_counts_the_fault_finding_minutes() -> None:
    """An oil service that fits the hour: a confirmed fault of the vehicle test refuses the
    lane (the key's confirmed DTC does the same); ticking its fault finding adds its
    minutes, 30 + 60 over the budget of 60."""
    client, feed, _ = make_desk()
    express = readout_of(express_session(), NOW)
    vin = express["vehicle"]["vin"]
    put(feed, f"{BASE}/{READER}/readout", express)
    base = f"/vehicle/{vin}/totals"
    alone = client.get(base, params=[("line", "service:0"), ("ticked", "1")]).json()
    assert alone["express"]["eligible"] is True
    put(feed, f"{BASE}/vehicles/{vin}/diagnosis", diagnosis(vin))
    refused = client.get(base, params=[("line", "service:0"), ("ticked", "1")]).json()
    assert refused["express"]["eligible"] is False
    assert refused["express"]["reasons"] == ["the vehicle test found a confirmed fault"]
    both = client.get(base, params=[("line", "service:0"), ("line", "fault:18"),
                                    ("ticked", "1")]).json()
    assert both["labour_minutes"] == 90 and both["express"]["minutes"] == "90 of 60 min"
    assert both["express"]["reasons"] == ["the vehicle test found a confirmed fault",
                                          "the work takes longer than the lane's time"]

    from protocols.key_session import StoredDtc
    on_key = readout_of(express_session("WBS8M9C59J5K98766", dtcs=(
        StoredDtc(index=0, code=0x03011F, status=0x2F, ecu_address=0x12, occurrences=1),)),
        NOW + timedelta(seconds=1))  # another read time: another readout_id
    verdict = express_verdict(on_key)
    assert not verdict.eligible and "fault_confirmed" in verdict.reasons
    put(feed, f"{BASE}/{READER}/readout", on_key)
    key_line = client.get(f"/vehicle/{on_key['vehicle']['vin']}/totals", params=[
        ("line", "service:0"), ("line", "fault:18"), ("ticked", "1")]).json()
    assert key_line["express"]["eligible"] is False and key_line["labour_minutes"] == 90
    assert "a confirmed fault on the key" in key_line["express"]["reasons"]


def test_without_fault_finding_in_the_catalogue_the_line_is_on_request() -> None:
    client, feed, sink = make_desk(fault_finding=None)
    readout = spec_readout()
    put(feed, f"{BASE}/{READER}/readout", readout)
    html = client.get(f"/vehicle/{SPEC_VIN}").text
    assert "Fault finding DME (0x12): P0301" in html and "on request" in html
    totals = client.get(f"/vehicle/{SPEC_VIN}/totals", params=[
        ("line", "service:0"), ("line", "fault:18"), ("ticked", "1")]).json()
    assert totals["gross"]["value"] == readout["proposal"]["totals"]["gross"]
    assert totals["complete"] is False and totals["incomplete_text"]
    assert "an item is not in the price catalogue" in totals["express"]["reasons"]
    client.post(f"/vehicle/{SPEC_VIN}/approve", data={
        "csrf": csrf_of(html), "readout_id": readout["readout_id"], "do": "approve",
        "line": ["service:0", "fault:18"]})
    (approval,) = sink.approvals
    wire = json.loads(to_json(approval))
    jsonschema.validate(wire, payload_schema("approval"))
    assert wire["approved"]["fault_finding"] == [{"ecu": 18, "name": "DME", "priced": False,
                                                  "labour_minutes": None, "net": None}]
    assert "unpriced_item" in wire["express"]["reasons"]


def test_the_approval_documented_is_what_the_desk_publishes() -> None:
    """docs/approval.md's example: the spec readout's engine oil and the DME's fault finding
    approved, the brake fluid declined."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "approval.md").read_text("utf-8")
    example = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))  # type: ignore[union-attr]
    jsonschema.validate(example, payload_schema("approval"))
    client, feed, sink = make_desk()
    readout = spec_readout()
    put(feed, f"{BASE}/{READER}/readout", readout)
    page = client.get(f"/vehicle/{SPEC_VIN}").text
    client.post(f"/vehicle/{SPEC_VIN}/approve", data={
        "csrf": csrf_of(page), "readout_id": readout["readout_id"], "do": "approve",
        "line": ["service:0", "fault:18"]})
    wire = json.loads(to_json(sink.approvals[0]))
    for key in ("approved", "declined", "totals", "express", "currency", "tax_rate_pct"):
        assert wire[key] == example[key], key


@pytest.mark.parametrize("lang", ["en", "de", "zh"])
def test_printable_proposal_with_a_fault_finding_line_and_the_alerts(lang: str) -> None:
    client, feed, _ = make_desk()
    put(feed, f"{BASE}/{READER}/readout", spec_readout())
    report = diagnosis(SPEC_VIN, lamp=True, other_vin="WBA00000000000000")
    report["ecus"][0]["dtcs"][0]["recurring"] = True
    put(feed, f"{BASE}/vehicles/{SPEC_VIN}/diagnosis", report)
    response = client.get(f"/vehicle/{SPEC_VIN}/proposal.pdf", params=[
        ("lang", lang), ("line", "service:0"), ("line", "fault:18"), ("ticked", "1")])
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")


def test_a_broken_catalogue_stops_the_desk_with_one_line(tmp_path) -> None:
    import subprocess
    import sys

    from agent.domain.catalogue import DEFAULT_CATALOGUE_PATH

    dealer = tmp_path / "dealer.toml"
    dealer.write_text(DEFAULT_CATALOGUE_PATH.read_text("utf-8").replace(
        "default_minutes = 30", "default_minutes = -1"), encoding="utf-8")
    config = tmp_path / "desk.toml"
    config.write_text(f'[catalogue]\npath = "{dealer}"\n')
    done = subprocess.run([sys.executable, "-m", "agent", "desk", "--site", SITE, "--port", "0",
                           "--state-dir", str(tmp_path / "state"), "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"cbs-agent: catalogue {dealer}: fault_finding.default_minutes: "
                                   "expected a whole number of minutes >= 0, got -1")
