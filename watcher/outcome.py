"""How a finished Job ended, decided from its conditions and its pods' states (pure).

``classify(job, pods)`` reads the documents as the API (or the local executor) gives them and names
the cause a user cares about, most specific first:

| order | outcome | evidence |
|---|---|---|
| 1 | ``succeeded`` | the Job's ``Complete`` condition |
| 2 | ``image-pull-failed`` | a container waiting: ``ErrImagePull``, ``ImagePullBackOff`` or similar |
| 3 | ``evicted`` | the pod's ``DisruptionTarget`` condition, or pod reason ``Evicted`` |
| 4 | ``oom-killed`` | a container terminated with reason ``OOMKilled`` |
| 5 | ``input-missing`` | stage-in exited 64 (missing) or 65 (forbidden) |
| 6 | ``deadline-exceeded`` | the Job's ``Failed`` condition with reason ``DeadlineExceeded`` |
| 7 | ``failed`` | the ``run`` container exited non-zero (its exit code is the outcome's) |
| 8 | ``stage-in-failed`` | stage-in exited non-zero for another reason |
| 9 | ``stage-out-failed`` | stage-out exited non-zero after the script succeeded |
| 10 | ``unknown`` | none of the above: the Job condition's reason and message are kept |

Image pulls come before the deadline because a pod stuck pulling its image is usually ended by
``activeDeadlineSeconds``: the deadline is the symptom, the image the cause. Pod-level evidence is
read from the newest pod that has any (earlier attempts of a retried Job may have failed otherwise,
e.g. evicted and retried); within it, the deadline outranks exit codes (the deadline killed it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from dispatcher.constants import (
    CONTAINER_RUN,
    CONTAINER_STAGE_IN,
    CONTAINER_STAGE_OUT,
    EXIT_INPUT_FORBIDDEN,
    EXIT_INPUT_MISSING,
)
from dispatcher.jobs import finished_condition

IMAGE_PULL_REASONS: Final = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
"""Waiting reasons the kubelet gives a container whose image cannot be pulled."""
_DEADLINE: Final = "DeadlineExceeded"


class OutcomeKind(enum.StrEnum):
    """The cause of a finished Job's end, as written into records and completion events."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    OOM_KILLED = "oom-killed"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    EVICTED = "evicted"
    IMAGE_PULL_FAILED = "image-pull-failed"
    INPUT_MISSING = "input-missing"
    STAGE_IN_FAILED = "stage-in-failed"
    STAGE_OUT_FAILED = "stage-out-failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a Job ended: the kind, a short machine reason, a human message, the script's exit code."""

    kind: OutcomeKind
    reason: str
    """CamelCase reason as Kubernetes spells them (``OOMKilled``, ``DeadlineExceeded``, ``Evicted``…)."""
    message: str
    exit_code: int | None
    """Exit code of the ``run`` container, when it terminated; None when it never ran or was lost."""

    @property
    def succeeded(self) -> bool:
        """True only for ``succeeded``."""
        return self.kind is OutcomeKind.SUCCEEDED


@dataclass(frozen=True, slots=True)
class _Container:
    """One container's status, flattened: which pod, its name, and its state's detail."""

    pod: str
    name: str
    waiting: Mapping[str, Any] | None
    terminated: Mapping[str, Any] | None

    @property
    def exit_code(self) -> int | None:
        code = (self.terminated or {}).get("exitCode")
        return code if isinstance(code, int) and not isinstance(code, bool) else None


def classify(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Outcome:
    """The outcome of the finished *job*, given its *pods* (oldest first, as listed).

    A Job that has not finished yet is ``unknown`` with reason ``NotFinished``.
    """
    finished = finished_condition(job)
    condition = _condition(job, finished) if finished else {}
    run_exit = _run_exit_code(pods)
    if finished == "Complete":
        return Outcome(OutcomeKind.SUCCEEDED, "Completed", "the script exited 0", run_exit)
    if finished is None:
        return Outcome(OutcomeKind.UNKNOWN, "NotFinished", "the Job has not finished", run_exit)
    deadline = None
    if condition.get("reason") == _DEADLINE:
        message = str(condition.get("message") or "the Job ran longer than its deadline")
        deadline = Outcome(OutcomeKind.DEADLINE_EXCEEDED, _DEADLINE, message, run_exit)
    # The newest pod with any evidence decides: an earlier attempt may have failed another way.
    for pod in reversed(pods):
        found = _pod_evidence(pod, run_exit) or deadline or _exit_evidence(pod)
        if found is not None:
            return found
    if deadline is not None:
        return deadline
    reason = str(condition.get("reason") or "Unknown")
    message = str(condition.get("message") or "the Job failed for a reason its pods do not show")
    return Outcome(OutcomeKind.UNKNOWN, reason, message, run_exit)


def _pod_evidence(pod: Mapping[str, Any], run_exit: int | None) -> Outcome | None:
    """Image pull, eviction, OOM kill or missing input in one pod, in that order."""
    status = pod.get("status") or {}
    containers = list(_containers(pod))
    for container in containers:
        reason = (container.waiting or {}).get("reason")
        if reason in IMAGE_PULL_REASONS:
            detail = (container.waiting or {}).get("message") or "the image cannot be pulled"
            message = f"container {container.name} of pod {container.pod}: {detail}"
            return Outcome(OutcomeKind.IMAGE_PULL_FAILED, str(reason), message, run_exit)
    disruption = _pod_condition(status, "DisruptionTarget")
    if status.get("reason") == "Evicted" or disruption is not None:
        evidence = disruption or {}
        reason = "Evicted" if status.get("reason") == "Evicted" else str(evidence.get("reason") or "Evicted")
        detail = status.get("message") or evidence.get("message") or "the pod was evicted"
        return Outcome(OutcomeKind.EVICTED, reason, f"pod {_name(pod)}: {detail}", run_exit)
    for container in sorted(containers, key=lambda c: c.name != CONTAINER_RUN):  # the script's first
        if (container.terminated or {}).get("reason") == "OOMKilled":
            message = f"container {container.name} of pod {container.pod} ran out of memory"
            return Outcome(OutcomeKind.OOM_KILLED, "OOMKilled", message, run_exit)
    stage_in = _named(containers, CONTAINER_STAGE_IN)
    if stage_in is not None and stage_in.exit_code in (EXIT_INPUT_MISSING, EXIT_INPUT_FORBIDDEN):
        missing = stage_in.exit_code == EXIT_INPUT_MISSING
        what = "does not exist (any more)" if missing else "could not be read (access denied or expired)"
        reason = "InputMissing" if missing else "InputForbidden"
        return Outcome(OutcomeKind.INPUT_MISSING, reason, f"the input object {what}", None)
    return None


def _exit_evidence(pod: Mapping[str, Any]) -> Outcome | None:
    """A non-zero exit of run, stage-in or stage-out in one pod, in that order."""
    containers = list(_containers(pod))
    run = _named(containers, CONTAINER_RUN)
    if run is not None and run.exit_code not in (None, 0):
        message = f"the script exited with code {run.exit_code} (pod {run.pod})"
        return Outcome(OutcomeKind.FAILED, "ScriptFailed", message, run.exit_code)
    stage_in = _named(containers, CONTAINER_STAGE_IN)
    if stage_in is not None and stage_in.exit_code not in (None, 0):
        message = f"stage-in exited with code {stage_in.exit_code} (pod {stage_in.pod})"
        return Outcome(OutcomeKind.STAGE_IN_FAILED, "StageInFailed", message, None)
    stage_out = _named(containers, CONTAINER_STAGE_OUT)
    if stage_out is not None and stage_out.exit_code not in (None, 0):
        message = f"stage-out exited with code {stage_out.exit_code} (pod {stage_out.pod})"
        return Outcome(
            OutcomeKind.STAGE_OUT_FAILED, "StageOutFailed", message, run.exit_code if run else None
        )
    return None


def _run_exit_code(pods: Sequence[Mapping[str, Any]]) -> int | None:
    """The exit code of the newest ``run`` container that terminated."""
    for pod in reversed(pods):
        run = _named(list(_containers(pod)), CONTAINER_RUN)
        if run is not None and run.exit_code is not None:
            return run.exit_code
    return None


def _containers(pod: Mapping[str, Any]) -> Iterator[_Container]:
    status = pod.get("status") or {}
    for entry in (*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())):
        if not isinstance(entry, Mapping):
            continue
        state = entry.get("state") or {}
        yield _Container(
            _name(pod),
            str(entry.get("name", "")),
            state.get("waiting") if isinstance(state.get("waiting"), Mapping) else None,
            state.get("terminated") if isinstance(state.get("terminated"), Mapping) else None,
        )


def _named(containers: Sequence[_Container], name: str) -> _Container | None:
    return next((container for container in containers if container.name == name), None)


def _name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def _pod_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or ():
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return None


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return {}
