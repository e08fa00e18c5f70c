"""classify(job, pods): the cause of a finished Job's end, from Kubernetes-shaped documents."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.domain.outcome import OutcomeKind, classify


def job(condition: str | None, reason: str = "", message: str = "") -> dict[str, Any]:
    conditions = []
    if condition == "Failed":
        conditions.append({"type": "FailureTarget", "status": "True", "reason": reason, "message": message})
    if condition is not None:
        conditions.append({"type": condition, "status": "True", "reason": reason, "message": message})
    return {
        "metadata": {"name": "j", "uid": "u"},
        "status": {"startTime": "2026-01-01T00:00:00Z", "conditions": conditions},
    }


def terminated(name: str, code: int, reason: str | None = None) -> dict[str, Any]:
    detail = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error")}
    return {"name": name, "state": {"terminated": detail}, "ready": False, "restartCount": 0}


def waiting(name: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}, "ready": False}


def pod(
    *containers: dict[str, Any], init: tuple[dict[str, Any], ...] = (), name: str = "j-abcde", **status: Any
):
    return {
        "metadata": {"name": name},
        "status": {
            "phase": status.pop("phase", "Failed"),
            "initContainerStatuses": list(init),
            "containerStatuses": list(containers),
            **status,
        },
    }


STAGE_IN_OK = (terminated("stage-in", 0),)
CASES = {
    "succeeded": (
        job("Complete", "CompletionsReached"),
        [pod(terminated("run", 0), terminated("stage-out", 0), init=STAGE_IN_OK, phase="Succeeded")],
        OutcomeKind.SUCCEEDED,
        "Completed",
        0,
    ),
    "script exit 1": (
        job("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        [pod(terminated("run", 1), terminated("stage-out", 0), init=STAGE_IN_OK)],
        OutcomeKind.FAILED,
        "ScriptFailed",
        1,
    ),
    "retried: the newest attempt decides": (
        job("Failed", "BackoffLimitExceeded"),
        [
            pod(terminated("run", 137, "OOMKilled"), init=STAGE_IN_OK, name="j-1"),
            pod(terminated("run", 3), init=STAGE_IN_OK, name="j-2"),
        ],
        OutcomeKind.FAILED,
        "ScriptFailed",
        3,
    ),
    # The newest pod's `run` gives the exit code even where the outcome comes from elsewhere: a Job that
    # succeeded on its second attempt exited 0, not with the first attempt's code.
    "succeeded on a retry: the newest run's exit code": (
        job("Complete", "CompletionsReached"),
        [
            pod(terminated("run", 1), terminated("stage-out", 0), init=STAGE_IN_OK, name="j-1"),
            pod(
                terminated("run", 0),
                terminated("stage-out", 0),
                init=STAGE_IN_OK,
                name="j-2",
                phase="Succeeded",
            ),
        ],
        OutcomeKind.SUCCEEDED,
        "Completed",
        0,
    ),
    "deadline on a retry: the newest run's exit code": (
        job("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
        [
            pod(terminated("run", 4), init=STAGE_IN_OK, name="j-1"),
            pod(terminated("run", 143), init=STAGE_IN_OK, name="j-2", reason="DeadlineExceeded"),
        ],
        OutcomeKind.DEADLINE_EXCEEDED,
        "DeadlineExceeded",
        143,
    ),
    "OOM killed": (
        job("Failed", "BackoffLimitExceeded"),
        [pod(terminated("run", 137, "OOMKilled"), terminated("stage-out", 3), init=STAGE_IN_OK)],
        OutcomeKind.OOM_KILLED,
        "OOMKilled",
        137,
    ),
    "deadline exceeded": (
        job("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
        [pod(terminated("run", 143), init=STAGE_IN_OK, reason="DeadlineExceeded")],
        OutcomeKind.DEADLINE_EXCEEDED,
        "DeadlineExceeded",
        143,
    ),
    "evicted (reason Evicted)": (
        job("Failed", "BackoffLimitExceeded"),
        [
            pod(
                terminated("run", 137),
                init=STAGE_IN_OK,
                reason="Evicted",
                message="The node was low on resource: memory.",
            )
        ],
        OutcomeKind.EVICTED,
        "Evicted",
        137,
    ),
    "evicted (DisruptionTarget)": (
        job("Failed", "BackoffLimitExceeded"),
        [
            pod(
                terminated("run", 143),
                init=STAGE_IN_OK,
                conditions=[
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "TerminationByKubelet",
                        "message": "preempted",
                    }
                ],
            )
        ],
        OutcomeKind.EVICTED,
        "TerminationByKubelet",
        143,
    ),
    "image pull failure ended by the deadline": (
        job("Failed", "DeadlineExceeded"),
        [
            pod(
                waiting("run", "ImagePullBackOff", 'Back-off pulling image "nope:1"'),
                waiting("stage-out", "PodInitializing"),
                init=STAGE_IN_OK,
                phase="Pending",
            )
        ],
        OutcomeKind.IMAGE_PULL_FAILED,
        "ImagePullBackOff",
        None,
    ),
    "invalid image name": (
        job("Failed", "DeadlineExceeded"),
        [pod(waiting("run", "InvalidImageName"), phase="Pending")],
        OutcomeKind.IMAGE_PULL_FAILED,
        "InvalidImageName",
        None,
    ),
    "input missing (stage-in 64)": (
        job("Failed", "PodFailurePolicy", "Container stage-in for pod ns/j-abcde failed with exit code 64"),
        [pod(waiting("run", "PodInitializing"), init=(terminated("stage-in", 64),))],
        OutcomeKind.INPUT_MISSING,
        "InputMissing",
        None,
    ),
    "input forbidden (stage-in 65)": (
        job("Failed", "PodFailurePolicy"),
        [pod(waiting("run", "PodInitializing"), init=(terminated("stage-in", 65),))],
        OutcomeKind.INPUT_MISSING,
        "InputForbidden",
        None,
    ),
    "mount refused (stage-in 66)": (
        job("Failed", "PodFailurePolicy"),
        [pod(waiting("run", "PodInitializing"), init=(terminated("stage-in", 66),))],
        OutcomeKind.STAGE_IN_FAILED,
        "MountRefused",
        None,
    ),
    "stage-in failed otherwise": (
        job("Failed", "BackoffLimitExceeded"),
        [pod(waiting("run", "PodInitializing"), init=(terminated("stage-in", 1),))],
        OutcomeKind.STAGE_IN_FAILED,
        "StageInFailed",
        None,
    ),
    "stage-out failed after a good script": (
        job("Failed", "BackoffLimitExceeded"),
        [pod(terminated("run", 0), terminated("stage-out", 2), init=STAGE_IN_OK)],
        OutcomeKind.STAGE_OUT_FAILED,
        "StageOutFailed",
        0,
    ),
    "no pods left": (
        job("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        [],
        OutcomeKind.UNKNOWN,
        "BackoffLimitExceeded",
        None,
    ),
    "deadline with no pod evidence": (
        job("Failed", "DeadlineExceeded"),
        [],
        OutcomeKind.DEADLINE_EXCEEDED,
        "DeadlineExceeded",
        None,
    ),
    "not finished": (
        job(None),
        [pod(waiting("run", "ContainerCreating"), phase="Pending")],
        OutcomeKind.UNKNOWN,
        "NotFinished",
        None,
    ),
}


@pytest.mark.parametrize(
    ("job_doc", "pods", "kind", "reason", "exit_code"), list(CASES.values()), ids=list(CASES)
)
def test_classify(job_doc, pods, kind, reason, exit_code) -> None:
    outcome = classify(job_doc, pods)
    assert (outcome.kind, outcome.reason, outcome.exit_code) == (kind, reason, exit_code)
    assert outcome.message
    assert outcome.succeeded == (kind is OutcomeKind.SUCCEEDED)


def test_messages_name_the_container_and_pod() -> None:
    image = classify(
        job("Failed", "DeadlineExceeded"), [pod(waiting("run", "ErrImagePull", "not found"), name="j-x1")]
    )
    assert image.message == "container run of pod j-x1: not found"
    evicted = classify(
        job("Failed", "X"), [pod(terminated("run", 1), reason="Evicted", message="low memory", name="j-x2")]
    )
    assert evicted.message == "pod j-x2: low memory"


def test_the_local_executor_documents_classify_the_same_way() -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    from dispatcher.executors.local.status import Finish, job_status  # noqa: PLC0415

    now = datetime(2026, 1, 1, tzinfo=UTC)
    failed = pod(terminated("run", 7), init=STAGE_IN_OK)
    status = job_status(
        start_time=now,
        pods=[failed],
        succeeded=0,
        failed=1,
        finish=Finish("Failed", "BackoffLimitExceeded", "limit"),
        finished_at=now,
    )
    outcome = classify({"metadata": {"name": "j"}, "status": status}, [failed])
    assert (outcome.kind, outcome.exit_code) == (OutcomeKind.FAILED, 7)
