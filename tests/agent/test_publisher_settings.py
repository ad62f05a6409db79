"""What the publisher is configured with: topic names, MQTT settings, the error tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.contract.topics import NAME_PATTERN, Topics, subscription_filter, validate_name
from agent.errors import (
    ConfigError,
    OutboxError,
    PublisherError,
    ReaderDisconnected,
    ReaderError,
    TransientError,
)
from agent.mqtt.settings import MqttSettings
from protocols.errors import CbsError

# -- topics ------------------------------------------------------------------------------------


def test_topic_tree() -> None:
    topics = Topics("cbs/v1", "S1", "desk_1-a")
    assert topics.status == "cbs/v1/S1/desk_1-a/status"
    assert topics.readout == "cbs/v1/S1/desk_1-a/readout"
    assert topics.rejected == "cbs/v1/S1/desk_1-a/rejected"
    assert topics.vehicle("WBA8E5107FK123456") == "cbs/v1/S1/vehicles/WBA8E5107FK123456"
    assert topics.reader_filter == "cbs/v1/S1/desk_1-a/#"
    assert topics.vehicles_filter == "cbs/v1/S1/vehicles/+"
    assert Topics("site/x", "S", "r").status == "site/x/S/r/status"


def test_subscription_filters() -> None:
    assert subscription_filter() == "cbs/v1/+/+/#"
    assert subscription_filter(site="S1") == "cbs/v1/S1/+/#"
    assert subscription_filter("acme/cbs", "S1", "desk1") == "acme/cbs/S1/desk1/#"


@pytest.mark.parametrize("name", ["x y", "", "a/b", "a+b", "#", "ä", "x" * 65, "S1\n"])
def test_bad_names_are_refused_with_one_line(name: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_name("site", name)
    assert str(error.value) == f"site name {name!r} must match {NAME_PATTERN}"


def test_good_names_pass_and_vehicles_is_not_a_reader() -> None:
    assert validate_name("reader", "x" * 64) == "x" * 64
    assert validate_name("site", "vehicles") == "vehicles"
    with pytest.raises(ConfigError, match="reserved"):
        Topics("cbs/v1", "S1", "vehicles")


@pytest.mark.parametrize("prefix", ["", "/cbs", "cbs/", "cbs//v1", "cbs/+", "cbs/#"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ConfigError, match="prefix"):
        Topics(prefix, "S1", "desk1")


def test_a_vin_must_be_one_plain_level() -> None:
    with pytest.raises(ValueError):
        Topics("cbs/v1", "S1", "d").vehicle("WBA/+")


# -- settings ----------------------------------------------------------------------------------


def test_defaults_follow_the_contract() -> None:
    settings = MqttSettings()
    assert (settings.url, settings.host, settings.port, settings.tls) == (
        "mqtt://127.0.0.1:1883", "127.0.0.1", 1883, False)
    assert settings.protocol == "5" and settings.prefix == "cbs/v1"
    assert settings.status_interval_s == 30 and settings.retain_vehicles
    assert settings.client_id_for("S1", "desk1") == "cbs-agent-S1-desk1"
    assert MqttSettings(client_id="mine").client_id_for("S1", "desk1") == "mine"


def test_urls() -> None:
    assert MqttSettings(url="mqtts://broker.example").port == 8883
    tls = MqttSettings(url="mqtts://broker.example:1884")
    assert (tls.host, tls.port, tls.tls) == ("broker.example", 1884, True)
    assert MqttSettings(url="mqtt://[::1]:1999").host == "::1"
    # model_copy(update=...) skips validation; derived values still follow the URL.
    assert MqttSettings().model_copy(update={"url": "mqtts://h:9"}).port == 9
    with pytest.raises(ValidationError):
        MqttSettings().with_url("tcp://h")


@pytest.mark.parametrize(("data", "message"), [
    ({"url": "tcp://h:1883"}, "mqtt.url: broker URL 'tcp://h:1883' must start with mqtt:// or mqtts://"),
    ({"url": "mqtt://u:p@h"}, "mqtt.url: broker URL must not contain credentials"),
    ({"url": "mqtt://h:70000"}, "mqtt.url: broker URL 'mqtt://h:70000' is invalid"),
    ({"url": "mqtt://h/x"}, "mqtt.url: broker URL 'mqtt://h/x' must be only scheme://host:port"),
    ({"protocol": "4"}, "mqtt.protocol: "),
    ({"password": "x"}, "mqtt: a password needs a username"),
    ({"ca_file": "/nonexistent/ca.crt", "url": "mqtts://h"},
     "mqtt.ca_file: file '/nonexistent/ca.crt' cannot be read: No such file or directory"),
    ({"max_inflight": 0}, "mqtt.max_inflight: "),
    ({"prefix": "cbs/#"}, "mqtt.prefix: topic prefix 'cbs/#'"),
    ({"reconnect_min_s": 10, "reconnect_max_s": 1}, "mqtt: reconnect_min_s must not exceed"),
    ({"typo_option": 1}, "mqtt.typo_option: "),
])
def test_load_refuses_with_one_config_error_line(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        MqttSettings.load(data)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_tls_options_need_an_mqtts_url(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not checked here")
    with pytest.raises(ConfigError, match="ca_file given but the broker URL is not mqtts://"):
        MqttSettings.load({"url": "mqtt://h", "ca_file": str(ca)})
    with pytest.raises(ConfigError, match="keyfile needs certfile"):
        MqttSettings.load({"url": "mqtts://h", "keyfile": str(ca)})


def test_password_file_is_read_once_at_load(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret pass\nignored second line\n")
    settings = MqttSettings.load({"username": "u", "password_file": str(path)})
    path.write_text("changed\n")
    assert settings.password_value() == "s3cret pass"
    assert "s3cret" not in repr(settings)
    assert settings.with_url("mqtt://elsewhere").password_value() == "changed"  # a new load


def test_password_file_problems(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ConfigError, match=f"password_file '{empty}' is empty"):
        MqttSettings.load({"username": "u", "password_file": str(empty)})
    with pytest.raises(ConfigError, match="is a directory"):
        MqttSettings.load({"username": "u", "password_file": str(tmp_path)})
    with pytest.raises(ConfigError, match="not both"):
        MqttSettings.load({"username": "u", "password": "p", "password_file": str(empty)})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("x\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot be read: Permission denied"):
        MqttSettings.load({"username": "u", "password_file": str(path)})


def test_protocol_given_as_a_number() -> None:
    assert MqttSettings.load({"protocol": 5}).protocol == "5"
    assert MqttSettings.load({"protocol": "3.1.1"}).protocol == "3.1.1"


# -- errors ------------------------------------------------------------------------------------


def test_error_tree() -> None:
    assert issubclass(ConfigError, CbsError) and issubclass(ConfigError, ValueError)
    assert issubclass(OutboxError, CbsError)
    assert issubclass(ReaderDisconnected, ReaderError)
    assert issubclass(ReaderDisconnected, TransientError) and issubclass(ReaderDisconnected, OSError)
    assert issubclass(PublisherError, CbsError)
    assert not issubclass(ConfigError, TransientError)


def test_unusable_tls_files_stop_the_start(tmp_path: Path) -> None:
    from agent.mqtt.publisher import MqttPublisher
    from agent.store.outbox import Outbox

    garbage = tmp_path / "ca.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    settings = MqttSettings(url="mqtts://127.0.0.1:1", ca_file=garbage)
    with Outbox(tmp_path / "o.db") as outbox, pytest.raises(ConfigError, match="TLS files"):
        MqttPublisher(settings, outbox, Topics("cbs/v1", "S1", "desk1"))
