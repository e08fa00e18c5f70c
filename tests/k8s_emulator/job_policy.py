"""The Job controller's decisions as pure functions: pod failure policy, finish conditions, pods to create."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.k8s_emulator.clock import rfc3339

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


@dataclass(frozen=True)
class PolicyMatch:
    """The first podFailurePolicy rule that matched a failed pod."""

    action: str
    rule_index: int
    message: str


def _exit_code_match(
    requirement: Mapping[str, Any], statuses: Iterable[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    wanted_container = requirement.get("containerName")
    values = set(requirement.get("values") or ())
    operator = requirement.get("operator")
    for status in statuses:
        if wanted_container is not None and status.get("name") != wanted_container:
            continue
        terminated = (status.get("state") or {}).get("terminated")
        if not terminated:
            continue
        code = terminated.get("exitCode", 0)
        # Kubernetes never matches exit code 0, whatever the operator.
        if code != 0 and ((operator == "In") == (code in values)):
            return status
    return None


def match_pod_failure_policy(policy: Mapping[str, Any] | None, pod: Mapping[str, Any]) -> PolicyMatch | None:
    """The first rule of *policy* matching the failed *pod* (regular containers, then init ones), or None."""
    if not policy:
        return None
    status = pod.get("status") or {}
    containers = list(status.get("containerStatuses") or ())
    init_containers = list(status.get("initContainerStatuses") or ())
    conditions = status.get("conditions") or ()
    meta = pod.get("metadata", {})
    pod_ref = f"{meta.get('namespace')}/{meta.get('name')}"
    for index, rule in enumerate(policy.get("rules") or ()):
        action = rule.get("action", "")
        if rule.get("onExitCodes") is not None:
            matched = _exit_code_match(rule["onExitCodes"], containers) or _exit_code_match(
                rule["onExitCodes"], init_containers
            )
            if matched is not None:
                code = matched["state"]["terminated"]["exitCode"]
                return PolicyMatch(
                    action,
                    index,
                    f"Container {matched.get('name')} for pod {pod_ref} failed with exit code {code} "
                    f"matching {action} rule at index {index}",
                )
        for pattern in rule.get("onPodConditions") or ():
            for condition in conditions:
                if condition.get("type") == pattern.get("type") and condition.get("status") == pattern.get(
                    "status", "True"
                ):
                    return PolicyMatch(
                        action,
                        index,
                        f"Pod {pod_ref} has condition {condition.get('type')} "
                        f"matching {action} rule at index {index}",
                    )
    return None


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
