"""The local executor's Job controller decisions and status documents, with canned inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.executors.local.pod.model import ContainerState, PodOutcome
from dispatcher.executors.local.status import (
    Finish,
    Retry,
    after_pod,
    container_status,
    interrupted_pod_status,
    job_status,
    match_pod_failure_policy,
    pod_manifest,
    pod_name,
    pod_status,
    was_started,
)

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)

POLICY = {
    "rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "stage-in", "operator": "In", "values": [64]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
    ]
}


def failed_pod(*exits: tuple[str, int, bool], conditions: list | None = None) -> dict:
    """A failed pod; each exit is (container, exit code, init?)."""
    states = [
        ContainerState(name, init, "terminated", exit_code=code, reason="Error" if code else "Completed")
        for name, code, init in exits
    ]
    status = pod_status(states, started=T0, outcome=PodOutcome("Failed", None, "failed", (), ()))
    if conditions:
        status["conditions"] = conditions
    return {"metadata": {"name": "j-abcde", "namespace": "ns"}, "status": status}


def spec(**fields) -> dict:
    return {"template": {"spec": {"restartPolicy": "Never"}}, **fields}


def test_pod_failure_policy_rules_match_in_order():
    stage_in = failed_pod(("stage-in", 64, True), ("run", 0, False))
    match = match_pod_failure_policy(POLICY, stage_in)
    assert match is not None
    assert match.action == "FailJob"
    assert "Container stage-in for pod ns/j-abcde failed with exit code 64" in match.message
    disrupted = failed_pod(("run", 1, False), conditions=[{"type": "DisruptionTarget", "status": "True"}])
    assert match_pod_failure_policy(POLICY, disrupted).action == "Ignore"
    assert match_pod_failure_policy(POLICY, failed_pod(("run", 2, False))).action == "Count"
    assert match_pod_failure_policy(POLICY, failed_pod(("run", 1, False))) is None
    assert match_pod_failure_policy(None, stage_in) is None
    # Exit code 0 never matches, not even NotIn.
    assert match_pod_failure_policy({"rules": [POLICY["rules"][2]]}, failed_pod(("run", 0, False))) is None


def test_after_a_pod_the_controller_completes_fails_or_retries():
    succeeded = {"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}}
    assert after_pod(spec(), succeeded, failed_before=0, deadline_exceeded=False).condition == "Complete"
    code_one = failed_pod(("run", 1, False))
    assert after_pod(spec(backoffLimit=2), code_one, failed_before=0, deadline_exceeded=False) == Retry(True)
    assert after_pod(spec(backoffLimit=2), code_one, failed_before=1, deadline_exceeded=False) == Retry(True)
    limit = after_pod(spec(backoffLimit=2), code_one, failed_before=2, deadline_exceeded=False)
    assert limit == Finish("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert after_pod(spec(), code_one, failed_before=5, deadline_exceeded=False) == Retry(True)  # default 6
    deadline = after_pod(spec(backoffLimit=9), code_one, failed_before=0, deadline_exceeded=True)
    assert (deadline.condition, deadline.reason) == ("Failed", "DeadlineExceeded")
    fail_job = after_pod(
        spec(backoffLimit=9, podFailurePolicy=POLICY),
        failed_pod(("stage-in", 64, True)),
        failed_before=0,
        deadline_exceeded=False,
    )
    assert fail_job.reason == "PodFailurePolicy"
    interrupted = {"metadata": {"name": "p"}, "status": interrupted_pod_status({"phase": "Running"})}
    assert after_pod(spec(backoffLimit=0), interrupted, failed_before=0, deadline_exceeded=False) == Retry(
        False
    )
    on_failure = {"template": {"spec": {"restartPolicy": "OnFailure"}}, "backoffLimit": 3}
    assert after_pod(on_failure, code_one, failed_before=0, deadline_exceeded=False).condition == "Failed"


def test_container_and_pod_statuses_look_like_the_kubelet_s():
    running = ContainerState("run", False, "running", started_at=T0)
    done = ContainerState(
        "run", False, "terminated", exit_code=137, signal=9, reason="Error", started_at=T0, finished_at=T1
    )
    assert container_status(running)["state"] == {"running": {"startedAt": "2026-11-25T12:00:00Z"}}
    assert container_status(done)["state"]["terminated"] == {
        "exitCode": 137,
        "signal": 9,
        "reason": "Error",
        "startedAt": "2026-11-25T12:00:00Z",
        "finishedAt": "2026-11-25T12:00:05Z",
    }
    waiting = ContainerState("stage-in", True, "waiting", reason="PodInitializing")
    status = pod_status([waiting, ContainerState("run", False, "waiting")], started=T0)
    assert status["phase"] == "Pending"
    assert status["initContainerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert pod_status([running], started=T0)["phase"] == "Running"
    assert was_started({"status": pod_status([running], started=T0)})
    assert not was_started({"status": {"phase": "Pending"}})


def test_the_pod_carries_the_job_controller_s_labels_and_owner():
    job = {
        "metadata": {"name": "j", "namespace": "ns", "uid": "u-1"},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}},
    }
    pod = pod_manifest(job, name="j-bcdfg", uid="p-1", created=T0)
    assert pod["metadata"]["labels"] == {
        "app": "x",
        "batch.kubernetes.io/controller-uid": "u-1",
        "batch.kubernetes.io/job-name": "j",
        "controller-uid": "u-1",
        "job-name": "j",
    }
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    name = pod_name("job")
    assert name.startswith("job-")
    assert len(name) == 9
    assert set(name[4:]) <= set("bcdfghjklmnpqrstvwxz2456789")


@pytest.mark.parametrize("condition", ["Complete", "Failed"])
def test_a_finished_job_status_has_both_conditions_and_no_active_pods(condition):
    pods = [{"status": {"phase": "Succeeded" if condition == "Complete" else "Failed"}}]
    finish = Finish(condition, "R", "M")
    status = job_status(
        start_time=T0,
        pods=pods,
        succeeded=condition == "Complete",
        failed=condition == "Failed",
        finish=finish,
        finished_at=T1,
    )
    first = "SuccessCriteriaMet" if condition == "Complete" else "FailureTarget"
    assert [c["type"] for c in status["conditions"]] == [first, condition]
    assert "active" not in status
    assert ("completionTime" in status) == (condition == "Complete")
    running = job_status(
        start_time=T0,
        pods=[{"status": {"phase": "Pending"}}],
        succeeded=0,
        failed=0,
        finish=None,
        finished_at=None,
    )
    assert running["active"] == 1
    assert "conditions" not in running
