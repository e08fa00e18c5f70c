"""A service's Secret (its `environment.secrets`): what the Job references, and what `services
apply|list|delete` plan for it, as pure data. Values never reach a plan line, a repr or a Job."""

from __future__ import annotations

import json

import pytest

from bucketrun.admin.inventory import inventory
from bucketrun.admin.plan import (
    Action,
    Change,
    Observed,
    SecretView,
    desired_state,
    plan_apply,
    plan_delete,
)
from dispatcher.domain.events import build_message, parse_message
from dispatcher.fdl import ServiceDefinition, load_services_text
from dispatcher.rendering.context import placeholder_grants
from dispatcher.rendering.render import JobRenderer
from dispatcher.rendering.secrets import ServiceSecret, secret_name, service_secrets

VALUE = "s3cr3t-Value-Unit"
OTHER = "other-Value-Unit"

FDL = """
functions:
  oscar:
  - c:
      name: {name}
      image: alpine:3.20
      script: "echo hi"
      input: [{{storage_provider: minio, path: photos/in}}]
      output: [{{storage_provider: minio, path: photos/out}}]
{environment}
"""


def service(name: str = "upper", **secrets: str) -> ServiceDefinition:
    environment = ""
    if secrets:
        environment = "      environment:\n        secrets:\n" + "".join(
            f"          {key}: {json.dumps(value)}\n" for key, value in secrets.items()
        )
    text = FDL.format(name=name, environment=environment)
    return load_services_text(text, source="t.yaml", base_dir=None).services[0]


def secret_changes(*services: ServiceDefinition, found: dict[str, SecretView] | None) -> list[Change]:
    want = desired_state(services, arn="arn:minio:sqs::_:amqp", records_bucket="records", config_maps=[])
    changes = plan_apply(want, Observed({}, {}, found))
    return [change for change in changes if "secret" in change.action or "secret" in change.text]


def ours(name: str = "upper", **data: str) -> dict[str, SecretView]:
    view = SecretView(secret_name(name), name, True, {key: value.encode() for key, value in data.items()})
    return {view.name: view}


def rendered_job(definition: ServiceDefinition) -> str:
    (event,) = parse_message(
        build_message(
            event_name="s3:ObjectCreated:Put", bucket="photos", key="in/a.txt", size=1, sequencer="1"
        )
    )
    return json.dumps(JobRenderer().render_job(definition, event, placeholder_grants(definition, event)))


# -- the Job -------------------------------------------------------------------------------------------


def test_a_job_references_the_secret_only_when_its_service_has_secrets() -> None:
    plain = rendered_job(service())
    assert "secretKeyRef" not in plain
    assert secret_name("upper") not in plain
    keyed = rendered_job(service(API_KEY=VALUE))
    assert '{"secretKeyRef": {"name": "bucketrun-upper-secrets", "key": "API_KEY"}}' in keyed
    assert VALUE not in keyed


def test_service_secrets_holds_only_services_with_secrets_and_never_prints_a_value() -> None:
    (secret,) = service_secrets([service("plain"), service("keyed", API_KEY=VALUE)])
    assert (secret.name, secret.labels) == (
        "bucketrun-keyed-secrets",
        {"app.kubernetes.io/managed-by": "bucketrun", "bucketrun.io/service": "keyed"},
    )
    assert secret.plain_values() == {"API_KEY": VALUE}
    assert VALUE not in repr(secret)
    assert ServiceSecret.of(service("plain")) is None


# -- apply ---------------------------------------------------------------------------------------------


def test_apply_creates_a_missing_secret_naming_its_keys_only() -> None:
    (change,) = secret_changes(service(API_KEY=VALUE, B=OTHER), found={})
    assert (change.action, change.target) == (Action.CREATE_SECRET, "bucketrun-upper-secrets")
    assert change.text == "create secret bucketrun-upper-secrets (keys API_KEY, B)"
    assert change.secret is not None
    assert change.secret.plain_values() == {"API_KEY": VALUE, "B": OTHER}
    assert VALUE not in repr(change)


def test_apply_leaves_an_equal_secret_alone_and_says_which_keys_differ() -> None:
    (same,) = secret_changes(service(API_KEY=VALUE), found=ours(API_KEY=VALUE))
    assert (same.action, same.text) == (Action.UNCHANGED, "secret bucketrun-upper-secrets unchanged")
    (changed,) = secret_changes(service(API_KEY=OTHER, NEW=VALUE), found=ours(API_KEY=VALUE, OLD=VALUE))
    assert changed.action is Action.UPDATE_SECRET
    assert changed.text == "update secret bucketrun-upper-secrets: add NEW; change API_KEY; remove OLD"
    assert VALUE not in repr(changed)
    assert OTHER not in repr(changed)


def test_apply_takes_over_a_secret_of_that_name_that_is_not_labelled_as_bucketruns() -> None:
    foreign = SecretView(secret_name("upper"), None, False, {"API_KEY": VALUE.encode()})
    (change,) = secret_changes(service(API_KEY=VALUE), found={foreign.name: foreign})
    assert change.action is Action.UPDATE_SECRET
    assert "take it over" in change.text


def test_apply_removes_bucketruns_secret_once_the_service_has_none_and_never_someone_elses() -> None:
    (change,) = secret_changes(service(), found=ours(API_KEY=VALUE))
    assert (change.action, change.target) == (Action.DELETE_SECRET, "bucketrun-upper-secrets")
    foreign = SecretView(secret_name("upper"), None, False, {"K": b"v"})
    assert secret_changes(service(), found={foreign.name: foreign}) == []
    assert secret_changes(service(), found={}) == []


def test_without_a_cluster_secrets_are_a_note_only_when_a_service_has_some() -> None:
    (note,) = secret_changes(service(API_KEY=VALUE), found=None)
    assert note.action is Action.NOTE
    assert "bucketrun serve" in note.text
    assert secret_changes(service(), found=None) == []


# -- delete and list -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("view", "deleted"),
    [
        (SecretView("bucketrun-upper-secrets", "upper", True), True),
        (SecretView("bucketrun-upper-secrets", None, False), False),  # not labelled as bucketrun's
        (SecretView("bucketrun-upper-secrets", "other", True), False),  # labelled for another service
    ],
)
def test_delete_removes_only_bucketruns_secret_of_that_service(view: SecretView, deleted: bool) -> None:
    changes = plan_delete(["upper"], Observed({}, {}, {view.name: view}))
    found = [change for change in changes if change.action is Action.DELETE_SECRET]
    assert [change.text for change in found] == (["delete secret bucketrun-upper-secrets"] if deleted else [])


def test_list_says_whether_the_secret_is_there_and_matches_never_what_it_holds() -> None:
    want = desired_state(
        [service("a", K=VALUE), service("b", K=VALUE), service("c", K=VALUE), service("d")],
        arn="arn:minio:sqs::_:amqp",
        records_bucket="records",
        config_maps=[],
    )
    found = {**ours("a", K=VALUE), **ours("b", K=OTHER), **ours("d", K=VALUE)}
    statuses = {s.name: s for s in inventory(Observed({}, {}, found), want)}
    assert {name: s.secret for name, s in statuses.items()} == {
        "a": "present",
        "b": "drifted",
        "c": "missing",
        "d": "left over",
    }
    assert ", secret present," in statuses["a"].line()
    for status in statuses.values():
        assert VALUE not in json.dumps(status.to_json())
    assert inventory(Observed({}, {}, None), want)[0].secret == "not checked"
