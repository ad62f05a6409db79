"""Multi-site deployment (docs/multi-site.md), with real processes on loopback: two sites, each
with its own mosquitto configured from examples/mosquitto-bridge/site.conf and a real agent
(``python -m agent run``) reading a pseudo-terminal key reader, bridged to a central mosquitto.

* readouts of both sites arrive at the central broker, with their MQTT 5 properties;
* they survive an outage of the central broker: keys read while it is down are queued by the
  site brokers (persistent bridge sessions) and all arrive once it is back;
* integrators share the load with an MQTT 5 shared subscription: two subscribers in one group
  each get a part, together all of them, none twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from broker import MosquittoBroker, Received, Subscriber, free_port, wait_until
from site_rig import AgentRun, PtyKeyReader, fleet_sessions

ROOT = Path(__file__).resolve().parents[2]
SITE_CONF = ROOT / "examples" / "mosquitto-bridge" / "site.conf"
CENTRAL_ACL = ROOT / "examples" / "mosquitto-bridge" / "central.acl"
PASSWORDS = {"bridge-S1": "bridge-one", "bridge-S2": "bridge-two", "integrator": "reads-all"}
SITES = ("S1", "S2")
READER = "desk1"
TIMEOUT_S = 60.0
INTEGRATOR = {"username": "integrator", "password": PASSWORDS["integrator"]}

# Lines of the example that only make sense on a real installation (ports, files, TLS, the
# site's own accounts); everything else, the whole bridge behaviour and its account at the
# centre, is used as written.
_INSTALLATION_ONLY = {"listener", "persistence_location", "per_listener_settings",
                      "allow_anonymous", "password_file", "acl_file", "bridge_cafile",
                      "bridge_certfile", "bridge_keyfile"}


def site_broker_config(site: str, port: int, workdir: Path, central_port: int) -> str:
    """examples/mosquitto-bridge/site.conf for ``site`` on loopback, without TLS and without
    accounts at the site, reconnecting after 1 s instead of 5 (only to keep the test short)."""
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true",
             f"persistence_location {workdir}/"]
    for raw in SITE_CONF.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split()[0]
        if key in _INSTALLATION_ONLY:
            continue
        if key == "address":
            line = f"address 127.0.0.1:{central_port}"
        elif key == "restart_timeout":
            line = "restart_timeout 1 1"
        elif key == "remote_password":
            line = f"remote_password {PASSWORDS[f'bridge-{site}']}"
        lines.append(line.replace("S1", site))
    return "\n".join(lines)


@dataclass
class Site:
    name: str
    broker: MosquittoBroker
    reader: PtyKeyReader
    agent: AgentRun
    local: Subscriber  # what the agent delivered to its own site broker


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, dict[str, Site]]]:
    central = MosquittoBroker(tmp_path / "central", persistence=True, allow_anonymous=False,
                              users=PASSWORDS, acl_file=CENTRAL_ACL).start()
    sites: dict[str, Site] = {}
    try:
        for name in SITES:
            workdir = tmp_path / f"site-{name}"
            workdir.mkdir()
            port = free_port()
            broker = MosquittoBroker(workdir, port=port, config_text=site_broker_config(
                name, port, workdir, central.port)).start()
            local = Subscriber.for_broker(broker, f"cbs/v1/{name}/+/readout").start()
            reader = PtyKeyReader()
            agent = AgentRun.serial(workdir, reader, site=name, name=READER, broker_url=broker.url)
            sites[name] = Site(name, broker, reader, agent, local)
        for site in sites.values():
            site.reader.wait_connected()
        yield central, sites
    except AssertionError:
        for site in sites.values():
            print(f"--- agent {site.name} ---\n{site.agent.tail()}\n--- broker {site.name} ---\n"
                  f"{site.broker.log_text()[-2000:]}")
        raise
    finally:
        for site in sites.values():
            site.agent.stop()
            site.local.stop()
            site.reader.close()
            site.broker.stop()
        central.stop()


def _readouts(messages: list[Received]) -> list[Received]:
    return [m for m in messages if m.topic.endswith("/readout")]


def _ids(messages: list[Received]) -> set[str]:
    return {m.json()["readout_id"] for m in _readouts(messages)}


def _lay(sites: dict[str, Site], count: int, start: int) -> dict[str, list[str]]:
    """``count`` keys on every site's reader; the VINs laid per site."""
    laid = {}
    for number, site in enumerate(sites.values()):
        sessions = fleet_sessions(number + 1, count, start=start)
        site.reader.lay_keys(sessions)
        laid[site.name] = [s.vin for s in sessions]
    return laid


def _wait_local(sites: dict[str, Site], count: int) -> None:
    for site in sites.values():
        site.local.wait_for(lambda ms: len(_readouts(ms)) >= count, TIMEOUT_S,
                            what=f"{count} readouts at site {site.name}")


def test_two_sites_arrive_centrally_and_survive_a_central_outage(deployment) -> None:
    central, sites = deployment
    watcher = Subscriber.for_broker(central, ("cbs/v1/#", "$SYS/broker/connection/+/state"),
                                    persistent=True, client_id="central-watcher",
                                    **INTEGRATOR).start()
    try:
        before = _lay(sites, 3, start=0)
        vehicle_topics = {f"cbs/v1/{s}/vehicles/{vin}"
                          for s, vins in before.items() for vin in vins}
        watcher.wait_for(lambda ms: len(_readouts(ms)) >= 6
                         and {m.topic for m in ms} >= vehicle_topics, TIMEOUT_S,
                         what="6 readouts and their vehicle topics centrally")
        first = _readouts(watcher.snapshot())
        assert {m.topic for m in first} == {f"cbs/v1/{s}/{READER}/readout" for s in SITES}
        for message in first:  # the bridge speaks MQTT 5: the contract's properties survive it
            assert message.content_type == "application/json"
            assert ("schema", "cbs.readout/1") in message.user_properties
            payload = message.json()
            assert message.topic == f"cbs/v1/{payload['site']}/{payload['reader']}/readout"
        retained = {m.topic for m in watcher.snapshot() if "/vehicles/" in m.topic}
        assert retained == vehicle_topics
        bridges = {m.topic: m.payload for m in watcher.snapshot() if m.topic.startswith("$SYS")}
        assert bridges == {f"$SYS/broker/connection/bridge-{s}/state": b"1" for s in SITES}

        central.stop()  # the line to the centre is down (or the centre restarts)
        during = _lay(sites, 4, start=3)
        _wait_local(sites, 7)  # read and delivered at the sites while the centre is away
        central.start()

        expected = set().union(*(_ids(site.local.snapshot()) for site in sites.values()))
        assert len(expected) == 14
        watcher.wait_for(lambda ms: _ids(ms) >= expected, TIMEOUT_S,
                         what="every readout of both sites at the centre after the outage")
        arrived = _readouts(watcher.snapshot())
        vins = {(m.json()["site"], m.json()["vehicle"]["vin"]) for m in arrived}
        assert {(s, v) for s, laid in during.items() for v in laid} <= vins
        assert _ids(arrived) == expected
        for site in sites.values():  # per site (one reader each), the order of reading is kept
            ids_in_order = [m.json()["readout_id"] for m in arrived
                            if m.json()["site"] == site.name]
            local_order = [m.json()["readout_id"] for m in _readouts(site.local.snapshot())]
            deduplicated = list(dict.fromkeys(ids_in_order))
            assert deduplicated == local_order
    finally:
        watcher.stop()


def test_shared_subscription_splits_the_load(deployment) -> None:
    central, sites = deployment
    group = "$share/dms/cbs/v1/+/+/readout"
    workers = [Subscriber.for_broker(central, group, client_id=f"dms-worker-{n}",
                                     **INTEGRATOR).start() for n in (1, 2)]
    try:
        _lay(sites, 6, start=0)
        _wait_local(sites, 6)
        expected = set().union(*(_ids(site.local.snapshot()) for site in sites.values()))
        assert len(expected) == 12

        wait_until(lambda: set().union(*(_ids(w.snapshot()) for w in workers)) >= expected,
                   TIMEOUT_S, what="all readouts across the group")
        parts = [_ids(worker.snapshot()) for worker in workers]
        assert all(parts), f"each worker gets a part: {[len(p) for p in parts]}"
        assert parts[0].isdisjoint(parts[1]), "a message goes to one member of the group"
        assert parts[0] | parts[1] == expected
    finally:
        for worker in workers:
            worker.stop()
