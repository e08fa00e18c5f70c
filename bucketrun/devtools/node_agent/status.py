"""A pod's `status` as a kubelet writes it, from the local runner's container states (pure).

Read from the kubelet's status generation (pkg/kubelet/kubelet_pods.go, pkg/kubelet/status/generate.go):
- container entries carry name, image, imageID, containerID, ready, started, restartCount, state and
  lastState (the previous run's terminated state once a container was restarted);
- conditions: PodReadyToStartContainers (False once the pod is terminal: its sandbox is gone),
  Initialized (False with ContainersNotInitialized while an init container has not completed),
  ContainersReady and Ready (False with ContainersNotReady naming the unready containers, or PodCompleted
  once Succeeded); PodScheduled and any condition the kubelet does not own are kept as they are;
- a condition keeps its lastTransitionTime while its status stays the same;
- the phase is Pending until every init container has completed and every regular container has
  started at least once, then Running; the terminal phase comes from the runner's outcome;
- once the pod is terminal, a container still waiting (never started: an init container failed, or
  the pod was deleted or hit its deadline first) is reported terminated with reason
  ContainerStatusUnknown, exit code 137, as the status manager's TerminatePod does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dispatcher.domain.timestamps import rfc3339
from dispatcher.executors.local.runner import ContainerState

HOST_IP = "127.0.0.1"
"""Every pod of the agent runs on this host, in its network namespace."""
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
TERMINAL_PHASES = ("Succeeded", "Failed")
UNKNOWN_REASON = "ContainerStatusUnknown"
UNKNOWN_MESSAGE = "The container could not be located when the pod was terminated"
UNKNOWN_EXIT_CODE = 137
RUNTIME = "local"
"""The scheme of containerIDs (`<runtime>://<id>`, as `containerd://…` on a real node)."""


@dataclass(frozen=True)
class ContainerRecord:
    """A container's current state and the terminated state of its previous run (after a restart)."""

    current: ContainerState
    last: ContainerState | None = None


def container_id(pod_uid: str, name: str, restart_count: int) -> str:
    """A stable ID for one run of one container."""
    digest = hashlib.sha256(f"{pod_uid}/{name}/{restart_count}".encode()).hexdigest()
    return f"{RUNTIME}://{digest}"


def image_id(image: str) -> str:
    """A digest reference for *image* as a runtime reports it (no image is pulled: a stable fake digest)."""
    digest = hashlib.sha256(image.encode()).hexdigest()
    return f"{image.split('@', maxsplit=1)[0]}@sha256:{digest}"


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def state_document(state: ContainerState, cid: str | None) -> dict[str, Any]:
    """The `state` (or `lastState`) object for *state*."""
    if state.state == "waiting":
        waiting = {"reason": state.reason or "ContainerCreating"}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    if state.state == "running":
        return {"running": {"startedAt": _time(state.started_at) or rfc3339(datetime.now(UTC))}}
    exit_code = state.exit_code if state.exit_code is not None else 0
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": state.reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": _time(state.started_at),
        "finishedAt": _time(state.finished_at),
    }
    if state.message:
        terminated["message"] = state.message
    if cid is not None and state.started_at is not None:
        terminated["containerID"] = cid
    return {"terminated": {key: value for key, value in terminated.items() if value is not None}}


def container_status(spec: Mapping[str, Any], record: ContainerRecord, pod_uid: str) -> dict[str, Any]:
    """One entry of containerStatuses / initContainerStatuses."""
    state = record.current
    image = str(spec.get("image") or "")
    status: dict[str, Any] = {
        "name": state.name,
        "image": image,
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": state.restart_count,
        "state": {},
        "lastState": {},
    }
    ran = state.state == "running" or (state.state == "terminated" and state.started_at is not None)
    cid = container_id(pod_uid, state.name, state.restart_count)
    status["state"] = state_document(state, cid)
    if ran:
        status["containerID"] = cid
        status["imageID"] = image_id(image)
    if record.last is not None:
        last_cid = container_id(pod_uid, state.name, record.last.restart_count)
        status["lastState"] = state_document(record.last, last_cid)
        status["imageID"] = image_id(image)
    if state.state == "running":
        status["started"] = True
        # No readiness probes here: a running regular container is ready; a running sidecar too.
        status["ready"] = True
    elif state.state == "terminated":
        # A completed init container counts as ready; a finished regular container does not.
        status["ready"] = state.init and state.exit_code == 0
    return status


def _condition(
    kind: str, ok: bool, now: str, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None}
    condition["lastTransitionTime"] = now
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _names(containers: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(container.get("name")) for container in containers]


def _completed(status: Mapping[str, Any]) -> bool:
    return bool(status.get("state", {}).get("terminated", {}).get("exitCode") == 0)


def _is_sidecar(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def kubelet_conditions(
    pod: Mapping[str, Any], statuses: Mapping[str, Mapping[str, Any]], phase: str, now: str
) -> list[dict[str, Any]]:
    """The four conditions the kubelet owns, for *phase* and the container statuses (by name)."""
    spec = pod.get("spec") or {}
    terminal = phase in TERMINAL_PHASES
    init_containers = spec.get("initContainers") or []
    incomplete = [
        str(c.get("name"))
        for c in init_containers
        if not (_is_sidecar(c) and statuses.get(str(c.get("name")), {}).get("started"))
        and not _completed(statuses.get(str(c.get("name")), {}))
    ]
    initialized = not incomplete or phase == "Succeeded"
    init_reason = (
        ()
        if initialized
        else ("ContainersNotInitialized", f"containers with incomplete status: [{' '.join(incomplete)}]")
    )
    unready = [
        name for name in _names(spec.get("containers") or []) if not statuses.get(name, {}).get("ready")
    ]
    ready_reason: tuple[str, str | None]
    if phase == "Succeeded":
        ready, ready_reason = False, ("PodCompleted", None)
    else:
        ready = not unready and not terminal
        ready_reason = ("ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
    not_ready = () if ready else ready_reason
    return [
        _condition("PodReadyToStartContainers", not terminal, now),
        _condition("Initialized", initialized, now, *init_reason),
        _condition("Ready", ready, now, *not_ready),
        _condition("ContainersReady", ready, now, *not_ready),
    ]


def merge_conditions(old: Sequence[Mapping[str, Any]], owned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """*owned* (the kubelet's) with their transition times kept where the status did not change, after
    the conditions other components own (PodScheduled, DisruptionTarget, …), kept as they are."""
    previous = {str(c.get("type")): c for c in old}
    for condition in owned:
        before = previous.get(condition["type"])
        if (
            before is not None
            and before.get("status") == condition["status"]
            and before.get("lastTransitionTime")
        ):
            condition["lastTransitionTime"] = before["lastTransitionTime"]
    foreign = [dict(c) for c in old if c.get("type") not in KUBELET_CONDITIONS]
    return foreign + owned


def running_phase(pod: Mapping[str, Any], statuses: Mapping[str, Mapping[str, Any]]) -> str:
    """Pending or Running for a pod that is not terminal (see the module docstring)."""
    spec = pod.get("spec") or {}
    for container in spec.get("initContainers") or []:
        status = statuses.get(str(container.get("name")), {})
        if not (_completed(status) or (_is_sidecar(container) and status.get("started"))):
            return "Pending"
    for name in _names(spec.get("containers") or []):
        status = statuses.get(name, {})
        if "waiting" in status.get("state", {}) and not status.get("lastState"):
            return "Pending"
    return "Running"


def _never_located(record: ContainerRecord) -> ContainerRecord:
    """A container still waiting when its pod became terminal, as the kubelet's status manager ends it."""
    state = record.current
    if state.state != "waiting":
        return record
    unknown = ContainerState(
        state.name,
        state.init,
        "terminated",
        exit_code=UNKNOWN_EXIT_CODE,
        reason=UNKNOWN_REASON,
        message=UNKNOWN_MESSAGE,
        restart_count=state.restart_count,
    )
    return ContainerRecord(unknown, record.last)


def pod_status(
    pod: Mapping[str, Any],
    records: Mapping[str, ContainerRecord],
    *,
    phase: str | None,
    start_time: str,
    reason: str | None = None,
    message: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The whole status to write (*phase* None: Pending or Running, worked out from the containers)."""
    spec = pod.get("spec") or {}
    uid = str(pod.get("metadata", {}).get("uid", ""))
    if phase in TERMINAL_PHASES:
        records = {name: _never_located(record) for name, record in records.items()}
    containers = {
        str(c.get("name")): c for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
    }
    statuses = {
        name: container_status(containers[name], record, uid)
        for name, record in records.items()
        if name in containers
    }
    actual = phase or running_phase(pod, statuses)
    moment = rfc3339(now or datetime.now(UTC))
    old = pod.get("status") or {}
    status: dict[str, Any] = {
        "phase": actual,
        "conditions": merge_conditions(
            old.get("conditions") or [], kubelet_conditions(pod, statuses, actual, moment)
        ),
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": HOST_IP,
        "podIPs": [{"ip": HOST_IP}],
        "startTime": start_time,
        "reason": reason,
        "message": message,
    }
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [
            statuses[n] for n in _names(spec["initContainers"]) if n in statuses
        ]
    status["containerStatuses"] = [statuses[n] for n in _names(spec.get("containers") or []) if n in statuses]
    return status
