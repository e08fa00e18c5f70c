"""The Job controller's decisions as pure functions: pod failure policy, finish conditions, pods to create."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# One pod failure policy for both places Jobs run: bucketrun's local executor and this emulator.
from dispatcher.executors.local.status import PolicyMatch, match_pod_failure_policy
from tests.k8s_emulator.clock import rfc3339

__all__ = ["PolicyMatch", "match_pod_failure_policy"]  # re-exported for the controller

# Condition reasons and messages as the Kubernetes Job controller writes them.
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
DEADLINE_EXCEEDED = "DeadlineExceeded"
POD_FAILURE_POLICY = "PodFailurePolicy"
COMPLETIONS_REACHED = "CompletionsReached"
MESSAGES = {
    BACKOFF_LIMIT_EXCEEDED: "Job has reached the specified backoff limit",
    DEADLINE_EXCEEDED: "Job was active longer than specified deadline",
    COMPLETIONS_REACHED: "Reached expected number of succeeded pods",
}
FAIL_JOB, IGNORE, COUNT, FAIL_INDEX = "FailJob", "Ignore", "Count", "FailIndex"


def condition(type_: str, reason: str, message: str, now: str | None = None) -> dict[str, Any]:
    """A Job condition with status True, as the controller writes it."""
    stamp = now or rfc3339()
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def has_condition(job: Mapping[str, Any], type_: str, status: str = "True") -> bool:
    """True when the Job has condition *type_* with *status*."""
    return any(
        c.get("type") == type_ and c.get("status") == status
        for c in (job.get("status") or {}).get("conditions") or ()
    )


def is_finished(job: Mapping[str, Any]) -> bool:
    """Complete or Failed (the Job controller will not touch it again)."""
    return has_condition(job, "Complete") or has_condition(job, "Failed")


def finished_at(job: Mapping[str, Any]) -> str | None:
    """When the Job finished: the Complete/Failed condition's transition time."""
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c.get("lastTransitionTime"))
    return None


def pod_phase(pod: Mapping[str, Any]) -> str:
    """The pod's phase ("Pending" when unset)."""
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_terminal(pod: Mapping[str, Any]) -> bool:
    """Succeeded or Failed."""
    return pod_phase(pod) in ("Succeeded", "Failed")


def is_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


def pods_wanted(spec: Mapping[str, Any], succeeded: int, active: int) -> int:
    """How many new pods to create now (non-indexed Jobs; completions None means a work queue)."""
    parallelism = int(spec.get("parallelism", 1) or 0)
    completions = spec.get("completions")
    if completions is None:
        return 0 if succeeded > 0 else max(parallelism - active, 0)
    return max(min(parallelism, int(completions) - succeeded) - active, 0)


def completed(spec: Mapping[str, Any], succeeded: int, active: int) -> bool:
    """Whether enough pods succeeded for the Job to be complete."""
    completions = spec.get("completions")
    if completions is None:
        return succeeded > 0 and active == 0
    return succeeded >= int(completions)


@dataclass(frozen=True)
class Failure:
    """Why a Job fails: a condition reason and message."""

    reason: str
    message: str


def failure_of(
    spec: Mapping[str, Any], *, failed: int, policy_failure: Failure | None, active_seconds: float | None
) -> Failure | None:
    """The Job's failure, if any: a FailJob rule, then the backoff limit, then the active deadline."""
    if policy_failure is not None:
        return policy_failure
    if failed > int(spec.get("backoffLimit", 6)):
        return Failure(BACKOFF_LIMIT_EXCEEDED, MESSAGES[BACKOFF_LIMIT_EXCEEDED])
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and active_seconds is not None and active_seconds >= float(deadline):
        return Failure(DEADLINE_EXCEEDED, MESSAGES[DEADLINE_EXCEEDED])
    return None


def with_condition(conditions: Sequence[Mapping[str, Any]], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """*conditions* with *new* replacing the one of its type (kept as is when its status is unchanged)."""
    result = [dict(c) for c in conditions if c.get("type") != new["type"]]
    existing = next((c for c in conditions if c.get("type") == new["type"]), None)
    if existing is not None and existing.get("status") == new.get("status"):
        return [dict(c) for c in conditions]
    result.append(dict(new))
    return result
