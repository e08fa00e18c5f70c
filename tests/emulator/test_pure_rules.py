"""The emulator's pure rules with canned inputs: selectors, patches, paths, Job policy, pod status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.executors.local.runner import ContainerState
from tests.k8s_emulator import job_policy, pod_status
from tests.k8s_emulator.errors import ApiError
from tests.k8s_emulator.faults import FaultInjector, FaultPlan, FaultRule
from tests.k8s_emulator.patches import apply_patch, merge_patch, strategic_merge_patch
from tests.k8s_emulator.requestinfo import resolve
from tests.k8s_emulator.selectors import Selection, parse_field_selector, parse_label_selector
from tests.k8s_emulator.store import Store, TooOldError
from tests.k8s_emulator.watches import transition


def _obj(labels: dict[str, str]) -> dict:
    return {"metadata": {"name": "x", "namespace": "n", "labels": labels}}


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("a=1", {"a": "1"}, True),
        ("a!=1", {}, True),
        ("a notin (1,2)", {}, True),
        ("a in (1,2)", {}, False),
        ("a in (1, 2),b", {"a": "2", "b": ""}, True),
        ("!a", {"a": "1"}, False),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "x"}, False),
        ("example.com/tier=web", {"example.com/tier": "web"}, True),
    ],
)
def test_label_selector_semantics(selector, labels, matches):
    assert parse_label_selector(selector).matches(_obj(labels)) is matches


@pytest.mark.parametrize("bad", ["a in (1", "a=b=c", "=x", "a in (b c)", "n>x"])
def test_malformed_label_selectors_are_400(bad):
    with pytest.raises(ApiError) as rejected:
        parse_label_selector(bad)
    assert rejected.value.code == 400


def test_field_selector_reads_nested_fields_and_refuses_unknown_ones():
    pod = {"metadata": {"name": "p", "namespace": "n"}, "status": {"phase": "Running"}}
    assert parse_field_selector("status.phase=Running,metadata.name!=q", "pods").matches(pod)
    assert not parse_field_selector("status.phase==Pending", "pods").matches(pod)
    with pytest.raises(ApiError, match=r"field label not supported: status\.phase"):
        parse_field_selector("status.phase=Running", "configmaps")


def test_merge_patch_is_rfc_7386():
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == {
        "a": {"c": 2, "d": 3},
        "l": [2],
    }


def test_strategic_merge_merges_keyed_lists_and_finalizer_sets():
    target = {
        "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
        "metadata": {"finalizers": ["one"]},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }
    patch = {
        "spec": {"containers": [{"name": "b", "image": "z"}, {"name": "a", "$patch": "delete"}]},
        "metadata": {"finalizers": ["two"]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Done", "status": "True"}]},
    }
    assert strategic_merge_patch(target, patch) == {
        "spec": {"containers": [{"name": "b", "image": "z"}]},
        "metadata": {"finalizers": ["one", "two"]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Done", "status": "True"}]},
    }


def test_json_patch_and_server_side_apply_are_415_naming_the_media_type():
    for media in ("application/json-patch+json", "application/apply-patch+yaml"):
        with pytest.raises(ApiError) as refused:
            apply_patch(media, {}, [])
        assert refused.value.code == 415
        assert repr(media) in refused.value.message


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/n/pods", {}, ("list", "pods", "n", None, None)),
        ("GET", "/api/v1/namespaces/n/pods", {"watch": "True"}, ("watch", "pods", "n", None, None)),
        ("GET", "/api/v1/namespaces/n/pods/p/log", {}, ("get", "pods", "n", "p", "log")),
        ("PATCH", "/apis/batch/v1/namespaces/n/jobs/j/status", {}, ("patch", "jobs", "n", "j", "status")),
        ("GET", "/apis/batch/v1/jobs", {"watch": "1"}, ("watch", "jobs", None, None, None)),
        (
            "DELETE",
            "/api/v1/namespaces/n/configmaps",
            {},
            ("deletecollection", "configmaps", "n", None, None),
        ),
        ("GET", "/api/v1/namespaces/n", {}, ("get", "namespaces", None, "n", None)),
        (
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/n/leases",
            {},
            ("create", "leases", "n", None, None),
        ),
    ],
)
def test_request_paths_resolve_like_the_apiserver(method, path, query, expected):
    info = resolve(method, path, query)
    assert (info.verb, info.resource_name, info.namespace, info.name, info.subresource) == expected


@pytest.mark.parametrize("path", ["/api/v1/namespaces/n/widgets", "/api/v1/namespaces/n/configmaps/c/status"])
def test_unknown_resources_and_subresources_are_404(path):
    with pytest.raises(ApiError) as missing:
        resolve("GET", path, {})
    assert missing.value.code == 404


def _failed_pod(exit_codes: dict[str, int], conditions: list[dict] | None = None) -> dict:
    statuses = [{"name": n, "state": {"terminated": {"exitCode": c}}} for n, c in exit_codes.items()]
    return {
        "metadata": {"name": "p", "namespace": "n"},
        "status": {"phase": "Failed", "containerStatuses": statuses, "conditions": conditions or []},
    }


def test_pod_failure_policy_matching():
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]
    }
    assert job_policy.match_pod_failure_policy(policy, _failed_pod({"main": 42})).action == "FailJob"
    assert job_policy.match_pod_failure_policy(policy, _failed_pod({"side": 42})).action == "Count"
    assert job_policy.match_pod_failure_policy(policy, _failed_pod({"main": 1})) is None
    disrupted = _failed_pod({"main": 42}, [{"type": "DisruptionTarget", "status": "True"}])
    assert job_policy.match_pod_failure_policy(policy, disrupted).action == "Ignore"
    # Exit code 0 never matches, whatever the operator.
    assert job_policy.match_pod_failure_policy(policy, _failed_pod({"main": 0})) is None


def test_job_failure_reasons_in_order():
    spec = {"backoffLimit": 1, "activeDeadlineSeconds": 10}
    assert job_policy.failure_of(spec, failed=1, policy_failure=None, active_seconds=1) is None
    assert (
        job_policy.failure_of(spec, failed=2, policy_failure=None, active_seconds=1).reason
        == "BackoffLimitExceeded"
    )
    assert (
        job_policy.failure_of(spec, failed=0, policy_failure=None, active_seconds=10).reason
        == "DeadlineExceeded"
    )
    forced = job_policy.Failure("PodFailurePolicy", "m")
    assert job_policy.failure_of(spec, failed=2, policy_failure=forced, active_seconds=10) is forced


def test_pods_wanted_respects_parallelism_and_completions():
    assert job_policy.pods_wanted({"parallelism": 2, "completions": 3}, succeeded=0, active=0) == 2
    assert job_policy.pods_wanted({"parallelism": 2, "completions": 3}, succeeded=2, active=0) == 1
    assert job_policy.pods_wanted({"parallelism": 2, "completions": 3}, succeeded=1, active=2) == 0
    assert job_policy.pods_wanted({"parallelism": 3, "completions": None}, succeeded=0, active=1) == 2


def test_container_status_from_a_runner_state():
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    state = ContainerState(
        name="main",
        init=False,
        state="terminated",
        exit_code=137,
        signal=9,
        reason=None,
        message=None,
        started_at=moment,
        finished_at=moment,
        restart_count=0,
    )
    status = pod_status.container_status({"name": "main", "image": "busybox"}, state, "uid-1")
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == 137
    assert terminated["signal"] == 9
    assert terminated["reason"] == "Error"
    assert terminated["startedAt"] == "2026-01-02T03:04:05Z"
    assert status["ready"] is False
    assert status["containerID"] == terminated["containerID"]


def test_store_history_replay_and_compaction():
    store = Store(history_window=3)
    for index in range(5):
        store.put("configmaps", {"metadata": {"name": f"c{index}", "namespace": "n"}})
    assert store.revision == 6
    assert [e.obj["metadata"]["name"] for e in store.events_since("configmaps", 3)] == ["c2", "c3", "c4"]
    with pytest.raises(TooOldError, match=r"too old resource version: 2 \(4\)"):
        store.events_since("configmaps", 2)
    assert store.events_since("configmaps", store.revision) == []


def test_selector_transitions_of_a_modified_object():
    store = Store()
    store.put("configmaps", {"metadata": {"name": "c", "namespace": "n", "labels": {"t": "a"}}})
    store.put("configmaps", {"metadata": {"name": "c", "namespace": "n", "labels": {"t": "b"}}})
    (_, modified) = store.events_since("configmaps", 0)
    assert transition(modified, Selection("n", parse_label_selector("t=a"))) == "DELETED"
    assert transition(modified, Selection("n", parse_label_selector("t=b"))) == "ADDED"
    assert transition(modified, Selection("n")) == "MODIFIED"
    assert transition(modified, Selection("other")) is None


def test_fault_dice_are_deterministic_and_restricted():
    rules = (FaultRule(500, 0.5), FaultRule(429, 0.5, verbs=frozenset({"create"})))
    first = FaultInjector(FaultPlan(rules, seed=3))
    second = FaultInjector(FaultPlan(rules, seed=3))
    codes = [getattr(first.decide("create", "jobs").error, "code", None) for _ in range(50)]
    assert codes == [getattr(second.decide("create", "jobs").error, "code", None) for _ in range(50)]
    assert set(codes) == {500, 429}  # together the two rules cover every request
    assert {getattr(first.decide("get", "jobs").error, "code", None) for _ in range(50)} == {500, None}
    with pytest.raises(ValueError, match="within"):
        FaultRule(500, 1.5)
