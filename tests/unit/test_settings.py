"""Settings: environment variables over a YAML file over defaults, nested with ``__``, secrets never shown."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest

from dispatcher.runtime.settings import (
    CONFIG_ENV,
    MASK,
    Settings,
    SettingsError,
    describe_lines,
    env_name,
    load_services_settings,
    redact_url,
    secret_fields,
)

ACCESS = "AKIA-test-access-1234"
SECRET = "s3cr3t-value-never-printed"
AMQP_PASSWORD = "rabbit-pw-never-printed"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Each test starts from the required credentials only, whatever the machine's environment holds."""
    for name in list(os.environ):
        if name.upper().startswith("BUCKETRUN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BUCKETRUN_STORAGE__ACCESS_KEY", ACCESS)
    monkeypatch.setenv("BUCKETRUN_STORAGE__SECRET_KEY", SECRET)


def write_config(tmp_path, text: str):
    path = tmp_path / "bucketrun.yaml"
    path.write_text(text)
    return path


def test_defaults_are_usable_once_credentials_are_given():
    settings = Settings.load()
    assert settings.amqp.exchange == "bucketrun.events"
    assert settings.amqp.exchange_type == "fanout"
    assert settings.amqp.retry_tiers == (1, 5, 30, 120)
    assert settings.storage.region == "us-east-1"
    assert settings.cluster.executor == "local"
    assert settings.storage.access_key.get_secret_value() == ACCESS


def test_environment_overrides_defaults_with_nested_delimiter(monkeypatch):
    monkeypatch.setenv("BUCKETRUN_AMQP__PREFETCH", "7")
    monkeypatch.setenv("BUCKETRUN_AMQP__EXCHANGE_TYPE", "topic")
    monkeypatch.setenv("BUCKETRUN_AMQP__RETRY_TIERS", "[30, 2, 2, 10]")
    monkeypatch.setenv("BUCKETRUN_CLUSTER__EXECUTOR", "kubernetes")
    monkeypatch.setenv("bucketrun_dispatch__drain_timeout", "3.5")  # case does not matter
    settings = Settings.load()
    assert settings.amqp.prefetch == 7
    assert settings.amqp.exchange_type == "topic"
    assert settings.amqp.retry_tiers == (2, 10, 30)  # sorted, duplicates dropped
    assert settings.cluster.executor == "kubernetes"
    assert settings.dispatch.drain_timeout == 3.5


def test_file_sets_values_and_environment_wins_over_it(tmp_path, monkeypatch):
    config = write_config(
        tmp_path,
        "amqp:\n  prefetch: 11\n  exchange: minio-events\n"
        "storage:\n  endpoint: minio.storage.svc:9000\n"
        "services:\n  paths: [/etc/bucketrun/services]\n",
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv("BUCKETRUN_AMQP__PREFETCH", "3")
    settings = Settings.load()
    assert settings.amqp.prefetch == 3  # environment wins
    assert settings.amqp.exchange == "minio-events"  # file value kept beside it in the same group
    assert settings.storage.endpoint == "minio.storage.svc:9000"
    assert settings.storage.secret_key.get_secret_value() == SECRET  # environment fills the rest
    assert [str(path) for path in settings.services.paths] == ["/etc/bucketrun/services"]


def test_file_alone_can_hold_the_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("BUCKETRUN_STORAGE__ACCESS_KEY")
    monkeypatch.delenv("BUCKETRUN_STORAGE__SECRET_KEY")
    config = write_config(tmp_path, "storage:\n  access_key: from-file\n  secret_key: also-from-file\n")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert Settings.load().storage.access_key.get_secret_value() == "from-file"


def test_missing_config_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "nowhere.yaml"))
    with pytest.raises(SettingsError, match=r"BUCKETRUN_CONFIG names '.*nowhere\.yaml'"):
        Settings.load()


def test_bad_value_error_names_the_variable_the_key_and_the_value(monkeypatch):
    monkeypatch.setenv("BUCKETRUN_AMQP__PREFETCH", "lots")
    with pytest.raises(SettingsError) as caught:
        Settings.load()
    message = str(caught.value)
    assert "BUCKETRUN_AMQP__PREFETCH" in message
    assert "amqp.prefetch" in message
    assert "'lots'" in message


def test_bad_list_item_names_the_list_variable(monkeypatch):
    monkeypatch.setenv("BUCKETRUN_AMQP__RETRY_TIERS", "[1, -5]")
    with pytest.raises(SettingsError, match=r"BUCKETRUN_AMQP__RETRY_TIERS \(key amqp\.retry_tiers"):
        Settings.load()


def test_missing_credentials_are_reported_by_variable(monkeypatch):
    monkeypatch.delenv("BUCKETRUN_STORAGE__SECRET_KEY")
    with pytest.raises(SettingsError, match=r"BUCKETRUN_STORAGE__SECRET_KEY .*required but not set"):
        Settings.load()


def test_a_misspelt_setting_is_refused_not_ignored(monkeypatch):
    monkeypatch.setenv("BUCKETRUN_AMQP__PREFECTH", "5")
    with pytest.raises(SettingsError, match="BUCKETRUN_AMQP__PREFECTH"):
        Settings.load()


def test_every_problem_is_reported_at_once(monkeypatch):
    monkeypatch.setenv("BUCKETRUN_AMQP__PREFETCH", "0")
    monkeypatch.setenv("BUCKETRUN_METRICS__PORT", "70000")
    monkeypatch.setenv("BUCKETRUN_STORAGE__ENDPOINT", "https://minio:9000")
    with pytest.raises(SettingsError) as caught:
        Settings.load()
    message = str(caught.value)
    for name in ("BUCKETRUN_AMQP__PREFETCH", "BUCKETRUN_METRICS__PORT", "BUCKETRUN_STORAGE__ENDPOINT"):
        assert name in message
    assert "choose HTTPS with 'secure'" in message


@pytest.mark.parametrize("name", ["amq.direct", "", "bad\nname"])
def test_amqp_names_are_checked(monkeypatch, name):
    monkeypatch.setenv("BUCKETRUN_AMQP__INGRESS_QUEUE", name)
    with pytest.raises(SettingsError, match="BUCKETRUN_AMQP__INGRESS_QUEUE"):
        Settings.load()


def test_secrets_are_masked_in_repr_str_and_describe(monkeypatch):
    monkeypatch.setenv("BUCKETRUN_AMQP__URL", f"amqp://bucketrun:{AMQP_PASSWORD}@rabbit.svc:5672/prod")
    settings = Settings.load()
    described = settings.describe()
    shown = [repr(settings), str(settings), json.dumps(described), "\n".join(describe_lines(described))]
    for text in shown:
        for secret in (SECRET, ACCESS, AMQP_PASSWORD):
            assert secret not in text
    assert described["storage"]["access_key"] == MASK
    assert described["amqp"]["url"] == f"amqp://bucketrun:{MASK}@rabbit.svc:5672/prod"  # host still visible
    assert "storage.secret_key = '**********'" in describe_lines(described)


def test_secrets_never_appear_in_validation_errors(monkeypatch):
    monkeypatch.setenv("BUCKETRUN_AMQP__URL", f"http://user:{AMQP_PASSWORD}@host/")
    monkeypatch.setenv("BUCKETRUN_STORAGE__SECRET_KEY", json.dumps({"not": SECRET}))
    with pytest.raises(SettingsError) as caught:
        Settings.load()
    message = str(caught.value)
    assert "BUCKETRUN_AMQP__URL" in message
    assert AMQP_PASSWORD not in message
    assert SECRET not in message
    assert caught.value.__cause__ is None  # pydantic's own error (with inputs) is not chained


def test_secret_fields_are_found_by_type():
    assert set(secret_fields()) == {("amqp", "url"), ("storage", "access_key"), ("storage", "secret_key")}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://u:p@h:5672/v", f"amqp://u:{MASK}@h:5672/v"),
        ("amqps://u:p@[::1]/", f"amqps://u:{MASK}@[::1]/"),
        ("amqp://h/", "amqp://h/"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_env_name_stops_at_list_indices():
    assert env_name(("amqp", "retry_tiers", 2)) == "BUCKETRUN_AMQP__RETRY_TIERS"


@pytest.mark.parametrize(("timeout", "seconds"), [(None, 21600), (3600, 25200), (10**7, 7 * 24 * 3600)])
def test_grant_lifetime_is_timeout_plus_margin_capped_at_seven_days(timeout, seconds):
    assert Settings.load().storage.grant_lifetime(timeout) == timedelta(seconds=seconds)


def test_explicit_overrides_win_over_everything(monkeypatch):
    monkeypatch.setenv("BUCKETRUN_AMQP__PREFETCH", "3")
    assert Settings.load(amqp={"prefetch": 99}).amqp.prefetch == 99


def test_default_run_resources_are_oscars_and_settable_as_quantities(monkeypatch):
    assert (Settings.load().cluster.default_cpu, Settings.load().cluster.default_memory) == ("0.2", "256Mi")
    monkeypatch.setenv("BUCKETRUN_CLUSTER__DEFAULT_CPU", "1500m")
    monkeypatch.setenv("BUCKETRUN_CLUSTER__DEFAULT_MEMORY", "1Gi")
    cluster = Settings.load().cluster
    assert (cluster.default_cpu, cluster.default_memory) == ("1500m", "1Gi")
    monkeypatch.setenv("BUCKETRUN_CLUSTER__DEFAULT_MEMORY", "lots")
    with pytest.raises(SettingsError, match=r"BUCKETRUN_CLUSTER__DEFAULT_MEMORY .*invalid quantity"):
        Settings.load()
    monkeypatch.setenv("BUCKETRUN_CLUSTER__DEFAULT_MEMORY", "0")
    with pytest.raises(SettingsError, match="BUCKETRUN_CLUSTER__DEFAULT_MEMORY"):
        Settings.load()


def test_the_watch_read_timeout_is_two_bookmark_intervals_and_settable(monkeypatch):
    assert Settings.load().cluster.watch_read_timeout == 130.0  # the API server bookmarks every 60 s
    monkeypatch.setenv("BUCKETRUN_CLUSTER__WATCH_READ_TIMEOUT", "75")
    assert Settings.load().cluster.watch_read_timeout == 75.0
    monkeypatch.setenv("BUCKETRUN_CLUSTER__WATCH_READ_TIMEOUT", "0")
    with pytest.raises(SettingsError, match="BUCKETRUN_CLUSTER__WATCH_READ_TIMEOUT"):
        Settings.load()


def test_the_services_group_loads_alone_without_the_stores_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("BUCKETRUN_STORAGE__ACCESS_KEY")
    monkeypatch.delenv("BUCKETRUN_STORAGE__SECRET_KEY")
    with pytest.raises(SettingsError):
        Settings.load()
    assert load_services_settings().cluster is None
    monkeypatch.setenv(
        CONFIG_ENV, str(write_config(tmp_path, "services: {cluster: from-file}\namqp: {prefetch: 0}\n"))
    )
    assert load_services_settings().cluster == "from-file"  # the other groups are not even read
    monkeypatch.setenv("BUCKETRUN_SERVICES__CLUSTER", "edge-site")
    assert load_services_settings().cluster == "edge-site"
    monkeypatch.setenv("BUCKETRUN_SERVICES__CLUSTER", " ")
    with pytest.raises(
        SettingsError, match=r"BUCKETRUN_SERVICES__CLUSTER .*cluster id ' ' must be non-blank"
    ):
        load_services_settings()
