"""The local executor's Job controller decisions and Kubernetes-shaped status documents (pure).

What the Kubernetes Job controller and kubelet would report, built from the local runner's container
states: the pod a Job creates (name, labels, owner), each pod's status with its container states and
exit codes, and the Job's status with the conditions and reasons the real controller writes. Also the
controller's decision after each pod: complete, fail (backoff limit, deadline, pod failure policy) or
start another pod.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from dispatcher.domain import kube
from dispatcher.domain.constants import (
    LABEL_JOB_CONTROLLER_UID,
    LABEL_JOB_NAME,
    LABEL_LEGACY_JOB_CONTROLLER_UID,
    LABEL_LEGACY_JOB_NAME,
)
from dispatcher.domain.timestamps import rfc3339
from dispatcher.executors.local.pod.model import ContainerState, PodOutcome

# Condition reasons and messages as the Kubernetes Job controller writes them.
REASON_BACKOFF_LIMIT: Final = "BackoffLimitExceeded"
REASON_DEADLINE: Final = "DeadlineExceeded"
REASON_POD_FAILURE_POLICY: Final = "PodFailurePolicy"
REASON_COMPLETIONS: Final = "CompletionsReached"
MESSAGE_BACKOFF_LIMIT: Final = "Job has reached the specified backoff limit"
MESSAGE_DEADLINE: Final = "Job was active longer than specified deadline"
MESSAGE_COMPLETIONS: Final = "Reached expected number of succeeded pods"
DEFAULT_BACKOFF_LIMIT: Final = 6
"""``spec.backoffLimit`` when the Job does not set it (Kubernetes' default)."""

# The condition a pod gets when the local executor itself stopped while the pod ran (as Kubernetes
# marks pods disrupted by a node going away); such a pod never counts against backoffLimit.
DISRUPTION_CONDITION: Final = "DisruptionTarget"
REASON_INTERRUPTED: Final = "ExecutorRestarted"
MESSAGE_INTERRUPTED: Final = "the local executor stopped while this pod ran; the Job was started again"

_POD_SUFFIX_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet
_POD_SUFFIX_LENGTH: Final = 5

Action = Literal["FailJob", "Ignore", "Count"]


def pod_name(job_name: str) -> str:
    """``<job>-<5 random characters>``, as the Job controller's generateName gives its pods."""
    suffix = "".join(secrets.choice(_POD_SUFFIX_ALPHABET) for _ in range(_POD_SUFFIX_LENGTH))
    return f"{job_name}-{suffix}"


def job_pod_labels(job_name: str, job_uid: str) -> dict[str, str]:
    """The labels Kubernetes adds to every pod of a Job (new and legacy spellings)."""
    return {
        LABEL_JOB_CONTROLLER_UID: job_uid,
        LABEL_JOB_NAME: job_name,
        LABEL_LEGACY_JOB_CONTROLLER_UID: job_uid,
        LABEL_LEGACY_JOB_NAME: job_name,
    }


def pod_manifest(job: Mapping[str, Any], *, name: str, uid: str, created: datetime) -> dict[str, Any]:
    """The Pod the Job controller would create for *job*: its template plus the Job's labels and owner."""
    job_meta = job["metadata"]
    template = job["spec"]["template"]
    template_meta = kube.meta(template)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": job_meta.get("namespace", "default"),
        "uid": uid,
        "creationTimestamp": rfc3339(created),
        "labels": {
            **(template_meta.get("labels") or {}),
            **job_pod_labels(job_meta["name"], job_meta["uid"]),
        },
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": job_meta["name"],
                "uid": job_meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if template_meta.get("annotations"):
        metadata["annotations"] = dict(template_meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def container_status(state: ContainerState) -> dict[str, Any]:
    """A ``containerStatuses`` entry for one container state."""
    detail: dict[str, Any]
    if state.state == "terminated":
        detail = {"exitCode": state.exit_code, "reason": state.reason}
        if state.signal is not None:
            detail["signal"] = state.signal
        if state.message:
            detail["message"] = state.message
        if state.started_at is not None:
            detail["startedAt"] = rfc3339(state.started_at)
        if state.finished_at is not None:
            detail["finishedAt"] = rfc3339(state.finished_at)
    elif state.state == "running":
        detail = {"startedAt": rfc3339(state.started_at)} if state.started_at is not None else {}
    else:
        detail = {"reason": state.reason} if state.reason else {}
        if state.message:
            detail["message"] = state.message
    return {
        "name": state.name,
        "state": {state.state: detail},
        "ready": state.state == "running",
        "started": state.state == "running",
        "restartCount": state.restart_count,
    }


def pod_status(
    states: Sequence[ContainerState], *, started: datetime | None, outcome: PodOutcome | None = None
) -> dict[str, Any]:
    """A Pod's ``status``: phase, start time and container states (init containers apart)."""
    phase: str
    if outcome is not None:
        phase = outcome.phase
    elif any(state.state != "waiting" for state in states if not state.init):
        phase = "Running"
    else:
        phase = "Pending"
    status: dict[str, Any] = {"phase": phase}
    if started is not None:
        status["startTime"] = rfc3339(started)
    if outcome is not None and outcome.phase == "Failed":
        if outcome.reason:
            status["reason"] = outcome.reason
        if outcome.message:
            status["message"] = outcome.message
    init = [container_status(state) for state in states if state.init]
    if init:
        status["initContainerStatuses"] = init
    status["containerStatuses"] = [container_status(state) for state in states if not state.init]
    return status


def interrupted_pod_status(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status of a pod that was running when the executor stopped: Failed, with a
    ``DisruptionTarget`` condition, keeping the container states it had reached."""
    return {
        **status,
        "phase": "Failed",
        "reason": REASON_INTERRUPTED,
        "message": MESSAGE_INTERRUPTED,
        "conditions": [{"type": DISRUPTION_CONDITION, "status": "True", "reason": REASON_INTERRUPTED}],
    }


def was_started(pod: Mapping[str, Any]) -> bool:
    """True for a pod whose containers were started and which has not ended."""
    status = kube.pod_status(pod)
    return status.get("phase") in ("Pending", "Running") and "startTime" in status


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """The first ``podFailurePolicy`` rule that matched a failed pod."""

    action: Action
    message: str


def match_pod_failure_policy(policy: Mapping[str, Any] | None, pod: Mapping[str, Any]) -> PolicyMatch | None:
    """The first rule of *policy* matching the failed *pod* (exit codes, then pod conditions), or None.

    Follows Kubernetes: an exit code rule never matches exit code 0; regular containers are checked
    before init containers; an unknown action is ignored.
    """
    status = kube.pod_status(pod)
    statuses = [*(status.get("containerStatuses") or ()), *(status.get("initContainerStatuses") or ())]
    conditions = status.get("conditions") or ()
    pod_ref = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
    for index, rule in enumerate((policy or {}).get("rules") or ()):
        action = rule.get("action")
        if action not in ("FailJob", "Ignore", "Count"):
            continue
        on_exit = rule.get("onExitCodes")
        if on_exit is not None:
            for container in statuses:
                code = _exit_code_matching(on_exit, container)
                if code is not None:
                    return PolicyMatch(
                        action,
                        f"Container {container['name']} for pod {pod_ref} failed with exit code {code} "
                        f"matching {action} rule at index {index}",
                    )
        for pattern in rule.get("onPodConditions") or ():
            for condition in conditions:
                if condition.get("type") == pattern.get("type") and condition.get("status") == pattern.get(
                    "status", "True"
                ):
                    return PolicyMatch(
                        action,
                        f"Pod {pod_ref} has condition {condition['type']} matching {action} rule at index "
                        f"{index}",
                    )
    return None


def _exit_code_matching(requirement: Mapping[str, Any], container: Mapping[str, Any]) -> int | None:
    wanted = requirement.get("containerName")
    if wanted is not None and container.get("name") != wanted:
        return None
    terminated = (container.get("state") or {}).get("terminated")
    if not terminated:
        return None
    code = terminated.get("exitCode")
    if not isinstance(code, int) or code == 0:
        return None
    inside = code in set(requirement.get("values") or ())
    return code if inside == (requirement.get("operator") == "In") else None


@dataclass(frozen=True, slots=True)
class Finish:
    """The Job is over: ``Complete`` or ``Failed``, with the controller's reason and message."""

    condition: Literal["Complete", "Failed"]
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Start another pod; ``counted`` says whether the failed one counts against backoffLimit."""

    counted: bool


def after_pod(
    spec: Mapping[str, Any],
    pod: Mapping[str, Any],
    *,
    failed_before: int,
    deadline_exceeded: bool,
) -> Finish | Retry:
    """What the Job controller does once a pod has ended (*failed_before*: counted failures so far).

    A pod that succeeded completes the Job. Otherwise the Job's deadline, then the pod failure
    policy (FailJob, Ignore, Count), then ``backoffLimit`` decide. An interrupted pod (the executor
    stopped) never counts, whatever the policy. With ``restartPolicy: OnFailure`` the containers were
    restarted in place up to the limit already, so a failed pod fails the Job.
    """
    status = kube.pod_status(pod)
    if status.get("phase") == "Succeeded":
        return Finish("Complete", REASON_COMPLETIONS, MESSAGE_COMPLETIONS)
    if deadline_exceeded:
        return Finish("Failed", REASON_DEADLINE, MESSAGE_DEADLINE)
    if status.get("reason") == REASON_INTERRUPTED:
        return Retry(counted=False)
    match = match_pod_failure_policy(spec.get("podFailurePolicy"), pod)
    if match is not None and match.action == "FailJob":
        return Finish("Failed", REASON_POD_FAILURE_POLICY, match.message)
    if match is not None and match.action == "Ignore":
        return Retry(counted=False)
    return _count_failure(spec, failed_before)


def _count_failure(spec: Mapping[str, Any], failed_before: int) -> Finish | Retry:
    """One more failure against ``backoffLimit``."""
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure":
        # The runner already restarted the containers in place backoffLimit times.
        return Finish("Failed", REASON_BACKOFF_LIMIT, MESSAGE_BACKOFF_LIMIT)
    limit = spec.get("backoffLimit")
    limit = DEFAULT_BACKOFF_LIMIT if limit is None else int(limit)
    if failed_before + 1 > limit:
        return Finish("Failed", REASON_BACKOFF_LIMIT, MESSAGE_BACKOFF_LIMIT)
    return Retry(counted=True)


def job_status(
    *,
    start_time: datetime,
    pods: Sequence[Mapping[str, Any]],
    succeeded: int,
    failed: int,
    finish: Finish | None,
    finished_at: datetime | None,
) -> dict[str, Any]:
    """A Job's ``status`` as the controller writes it (counts, start/completion time, conditions)."""
    active = [pod for pod in pods if kube.pod_status(pod).get("phase") in ("Pending", "Running")]
    status: dict[str, Any] = {"startTime": rfc3339(start_time)}
    if active and finish is None:
        status["active"] = len(active)
    status["ready"] = sum(1 for pod in active if _ready(pod)) if finish is None else 0
    if succeeded:
        status["succeeded"] = succeeded
    if failed:
        status["failed"] = failed
    if finish is not None and finished_at is not None:
        stamp = rfc3339(finished_at)
        first = "SuccessCriteriaMet" if finish.condition == "Complete" else "FailureTarget"
        status["conditions"] = [
            _condition(first, finish.reason, finish.message, stamp),
            _condition(finish.condition, finish.reason, finish.message, stamp),
        ]
        if finish.condition == "Complete":
            status["completionTime"] = stamp
    status["uncountedTerminatedPods"] = {}
    return status


def _condition(type_: str, reason: str, message: str, stamp: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def _ready(pod: Mapping[str, Any]) -> bool:
    statuses = kube.pod_status(pod).get("containerStatuses") or ()
    return bool(statuses) and all(status.get("ready") for status in statuses)
