"""How a finished Job ended, decided from its conditions and its pods' states (pure).

``classify(job, pods)`` reads the documents as the API (or the local executor) gives them and names
the cause a user cares about, most specific first:

| order | outcome | evidence |
|---|---|---|
| 1 | ``succeeded`` | the Job's ``Complete`` condition |
| 2 | ``image-pull-failed`` | a container waiting: ``ErrImagePull``, ``ImagePullBackOff``, ... |
| 2 | ``config-error`` | a container waiting: ``CreateContainerConfigError`` (no such Secret, ConfigMap |
|   |                  | or key), ``CreateContainerError``; or ended ``ContainerCannotRun``, ``StartError`` |
| 2 | ``unschedulable`` | the pod's ``PodScheduled`` condition False with reason ``Unschedulable`` |
| 2 | ``pod-create-refused`` | no pod at all: the Job controller's ``FailedCreate`` Events |
|   |                        | (``dispatcher.domain.refused``; the sweep gives it to the recorder) |
| 3 | ``evicted`` | the pod's ``DisruptionTarget`` condition, or pod reason ``Evicted`` |
| 4 | ``oom-killed`` | a container terminated with reason ``OOMKilled`` |
| 5 | ``input-missing`` | stage-in exited 64 (missing) or 65 (forbidden) |
| 6 | ``deadline-exceeded`` | the Job's ``Failed`` condition with reason ``DeadlineExceeded`` |
| 7 | ``failed`` | the ``run`` container exited non-zero (its exit code is the outcome's) |
| 8 | ``stage-in-failed`` | stage-in exited non-zero for another reason |
| 9 | ``stage-out-failed`` | stage-out exited non-zero after the script succeeded |
| 10 | ``unknown`` | none of the above: the Job condition's reason and message are kept |

The pod that never got going (row 2, first match in container order) comes before the deadline because
such a pod is usually ended by ``activeDeadlineSeconds``: the deadline is the symptom, the image, the
missing Secret or the missing node the cause. Pod-level evidence is read from the newest pod that has
any (earlier attempts of a retried Job may have failed otherwise, e.g. evicted and retried); within it,
the deadline outranks exit codes (the deadline killed it).

A Job that has not finished is ``unknown`` (``NotFinished``) unless its newest pod shows row 2: that is
how the watcher records a Job it ends because its pod can never start. ``stuck_reason(pod, now, grace)``
is that decision: row 2's evidence, held for at least *grace*, in a pod that is still waiting. An
unschedulable pod counts only when no node could ever take it (``unschedulable_for_good``); a pod that
waits for a busy node's capacity waits, as Kubernetes lets it, bounded by the Job's deadline. A Job whose
pods admission refuses has no pod to look at: ``dispatcher.domain.refused.refused_reason(job, events, now,
grace)`` decides that one from the Job's Events.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from dispatcher.domain import kube
from dispatcher.domain.jobs import api_time, finished_condition
from job_templates.stager.contract import (
    CONTAINER_RUN,
    CONTAINER_STAGE_IN,
    CONTAINER_STAGE_OUT,
    EXIT_INPUT_FORBIDDEN,
    EXIT_INPUT_MISSING,
    EXIT_MOUNT_REFUSED,
)

IMAGE_PULL_REASONS: Final = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
"""Waiting reasons the kubelet gives a container whose image cannot be pulled."""
CONFIG_ERROR_REASONS: Final = frozenset({"CreateContainerConfigError", "CreateContainerError"})
"""Waiting reasons the kubelet gives a container it cannot create: a Secret, ConfigMap or key its env
needs is missing (``CreateContainerConfigError``), or the runtime refused to create it."""
CANNOT_RUN_REASONS: Final = frozenset({"ContainerCannotRun", "StartError"})
"""Terminated reasons of a container whose process never started (the local runner's, containerd's)."""
UNSCHEDULABLE: Final = "Unschedulable"
"""Reason of the ``PodScheduled=False`` condition of a pod no node can take."""
_PREEMPTION: Final = "preemption:"
"""Where the scheduler's message turns from the nodes' filters to what preemption could do about them."""
_NOT_HELPFUL: Final = "Preemption is not helpful for scheduling"
"""Preemption's answer for a node that could not take the pod even empty (a filter that no eviction
changes: a request above its allocatable, a selector, an untolerated taint)."""
_CAPACITY: Final = ("Insufficient ", "Too many pods")
"""Filter reasons of a node that is full now and may not be later (NodeResourcesFit)."""
_STILL_WAITING: Final = frozenset({"Pending", "Running"})
"""Pod phases in which a container can still be waiting to start."""
_DEADLINE: Final = "DeadlineExceeded"
NOT_FINISHED: Final = "NotFinished"


class OutcomeKind(enum.StrEnum):
    """The cause of a finished Job's end, as written into records and completion events."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    OOM_KILLED = "oom-killed"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    EVICTED = "evicted"
    IMAGE_PULL_FAILED = "image-pull-failed"
    CONFIG_ERROR = "config-error"
    UNSCHEDULABLE = "unschedulable"
    POD_CREATE_REFUSED = "pod-create-refused"
    INPUT_MISSING = "input-missing"
    STAGE_IN_FAILED = "stage-in-failed"
    STAGE_OUT_FAILED = "stage-out-failed"
    UNKNOWN = "unknown"


_WAITING_KINDS: Final[Mapping[str, tuple[OutcomeKind, str]]] = {
    **dict.fromkeys(IMAGE_PULL_REASONS, (OutcomeKind.IMAGE_PULL_FAILED, "the image cannot be pulled")),
    **dict.fromkeys(CONFIG_ERROR_REASONS, (OutcomeKind.CONFIG_ERROR, "the container cannot be created")),
}
"""Each waiting reason of a container that may never start: its outcome kind and a default detail."""


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
    init: bool
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
    condition = _condition(job, finished) if finished else kube.Condition()
    run_exit = _run_exit_code(pods)
    if finished == "Complete":
        return Outcome(OutcomeKind.SUCCEEDED, "Completed", "the script exited 0", run_exit)
    if finished is None:
        stuck = _never_started(pods[-1], run_exit) if pods else None
        if stuck is not None:
            return stuck[0]
        return Outcome(OutcomeKind.UNKNOWN, NOT_FINISHED, "the Job has not finished", run_exit)
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


def stuck_reason(pod: Mapping[str, Any], now: datetime, grace: timedelta) -> Outcome | None:
    """Why *pod* can never start on its own, once it has shown it for at least *grace*; else None.

    The evidence is row 2 of the table: a container waiting on an image that cannot be pulled or a
    configuration that cannot be satisfied, or a pod no node can take. It counts from the moment the
    pod could have started that container: ``PodScheduled``'s transition for an unschedulable pod;
    ``Initialized``'s for a regular container (the kubelet starts them once the init containers are
    done); the pod's ``startTime`` for an init container. A pod that has ended, or is being deleted,
    is not stuck.
    """
    if kube.pod_status(pod).get("phase", "Pending") not in _STILL_WAITING or kube.meta(pod).get(
        "deletionTimestamp"
    ):
        return None
    found = _never_started(pod, None)
    if found is None:
        return None
    outcome, since = found
    if outcome.kind is OutcomeKind.UNSCHEDULABLE and not unschedulable_for_good(outcome.message):
        return None
    return outcome if since is not None and now - since >= grace else None


def unschedulable_for_good(message: str) -> bool:
    """Whether the scheduler's ``Unschedulable`` *message* says that no node could ever take the pod,
    rather than that the nodes are full now.

    kube-scheduler ends it with what preemption found for each node (``preemption: 0/N nodes are
    available: ...``): ``Preemption is not helpful for scheduling`` for a node that could not take the
    pod even empty, ``No preemption victims found for incoming pod`` for one that is only busy. Measured
    on kube-scheduler v1.37.2 with a node of 2 CPUs: a 512-CPU pod gets the first, a 1.5-CPU pod beside
    another the second. Without that part (preemption off), only node-full filters (``Insufficient X``,
    ``Too many pods``) count as waiting."""
    filters, found, preemption = message.partition(_PREEMPTION)
    if found:
        return _NOT_HELPFUL in preemption and "No preemption victims" not in preemption
    _, _, reasons = filters.partition("nodes are available:")
    parts = [part.strip().lstrip("0123456789 ").rstrip(".") for part in reasons.split(",")]
    parts = [part for part in parts if part]
    return not parts or not all(part.startswith(_CAPACITY) for part in parts)


def _never_started(pod: Mapping[str, Any], run_exit: int | None) -> tuple[Outcome, datetime | None] | None:
    """Row 2 of the table in one pod (first container in order, then scheduling), and since when."""
    status = kube.pod_status(pod)
    for container in _containers(pod):
        found = _never_ran(container)
        if found is not None:
            kind, reason, detail = found
            message = f"container {container.name} of pod {container.pod}: {detail}"
            since = api_time(status.get("startTime")) if container.init else _turn_of_containers(pod)
            return Outcome(kind, reason, message, run_exit), since
    scheduled = _find_condition(pod, "PodScheduled", status_="False")
    if scheduled is not None and scheduled.get("reason") == UNSCHEDULABLE:
        detail = scheduled.get("message") or "no node can run it"
        since = api_time(scheduled.get("lastTransitionTime")) or api_time(
            kube.meta(pod).get("creationTimestamp")
        )
        outcome = Outcome(OutcomeKind.UNSCHEDULABLE, UNSCHEDULABLE, f"pod {_name(pod)}: {detail}", run_exit)
        return outcome, since
    return None


def _never_ran(container: _Container) -> tuple[OutcomeKind, str, str] | None:
    """(kind, reason, detail) of a container that cannot be pulled, created or started; else None."""
    waiting, terminated = container.waiting or {}, container.terminated or {}
    reason = str(waiting.get("reason"))
    if reason in _WAITING_KINDS:
        kind, default = _WAITING_KINDS[reason]
        return kind, reason, str(waiting.get("message") or default)
    ended = str(terminated.get("reason"))
    if ended in CANNOT_RUN_REASONS:
        return OutcomeKind.CONFIG_ERROR, ended, str(terminated.get("message") or "it cannot run")
    return None


def _turn_of_containers(pod: Mapping[str, Any]) -> datetime | None:
    """When the kubelet began starting the regular containers: when the init containers were done (else
    when the pod started)."""
    initialized = _find_condition(pod, "Initialized")
    if initialized is not None and initialized.get("lastTransitionTime"):
        return api_time(initialized["lastTransitionTime"])
    return api_time(kube.pod_status(pod).get("startTime"))


def _pod_evidence(pod: Mapping[str, Any], run_exit: int | None) -> Outcome | None:
    """A pod that never got going, eviction, OOM kill or missing input in one pod, in that order."""
    status = kube.pod_status(pod)
    containers = list(_containers(pod))
    never_started = _never_started(pod, run_exit)
    if never_started is not None:
        return never_started[0]
    disruption = _find_condition(pod, "DisruptionTarget")
    if status.get("reason") == "Evicted" or disruption is not None:
        evidence = disruption or kube.Condition()
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
    if stage_in is not None and stage_in.exit_code == EXIT_MOUNT_REFUSED:
        message = "the service's mount could not be staged (the stage-in log says why)"
        return Outcome(OutcomeKind.STAGE_IN_FAILED, "MountRefused", message, None)
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
    status = kube.pod_status(pod)
    for init, entries in (
        (True, status.get("initContainerStatuses")),
        (False, status.get("containerStatuses")),
    ):
        for entry in entries or ():
            if isinstance(entry, Mapping):
                yield _container(_name(pod), init, entry)


def _container(pod: str, init: bool, entry: Mapping[str, Any]) -> _Container:
    state = entry.get("state") or {}
    return _Container(
        pod,
        str(entry.get("name", "")),
        init,
        state.get("waiting") if isinstance(state.get("waiting"), Mapping) else None,
        state.get("terminated") if isinstance(state.get("terminated"), Mapping) else None,
    )


def _named(containers: Sequence[_Container], name: str) -> _Container | None:
    return next((container for container in containers if container.name == name), None)


def _name(pod: Mapping[str, Any]) -> str:
    return str(kube.meta(pod).get("name", "?"))


def _find_condition(obj: Mapping[str, Any], type_: str, *, status_: str = "True") -> kube.Condition | None:
    """The condition *type_* of a pod or Job, when its status is *status_*."""
    for condition in kube.conditions(obj):
        if condition.get("type") == type_ and condition.get("status") == status_:
            return condition
    return None


def _condition(job: Mapping[str, Any], type_: str) -> kube.Condition:
    return _find_condition(job, type_) or kube.Condition()
