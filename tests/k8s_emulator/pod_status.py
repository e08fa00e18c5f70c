"""A pod's `status` as the kubelet reports it, from the local runner's container states (pure).

Conditions follow Kubernetes: PodReadyToStartContainers, Initialized, Ready, ContainersReady,
PodScheduled, plus DisruptionTarget when the pod was killed (e.g. for a Job's activeDeadlineSeconds);
a condition keeps its lastTransitionTime while its status does not change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from tests.k8s_emulator.clock import rfc3339
from tests.k8s_emulator.labels import HOST_IP, POD_IP

TERMINAL_PHASES = ("Succeeded", "Failed")


class ContainerStateLike(Protocol):
    """The fields of `dispatcher.executors.local.runner.ContainerState` this module reads."""

    @property
    def name(self) -> str: ...
    @property
    def init(self) -> bool: ...
    @property
    def state(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def signal(self) -> int | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def message(self) -> str | None: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def restart_count(self) -> int: ...


def container_id(pod_uid: str, name: str, restart_count: int) -> str:
    """A stable containerd-style ID for one run of one container."""
    digest = hashlib.sha256(f"{pod_uid}/{name}/{restart_count}".encode()).hexdigest()
    return f"containerd://{digest}"


def _time(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


def waiting_status(container: Mapping[str, Any], reason: str, message: str | None = None) -> dict[str, Any]:
    """A container that has not started: state.waiting with *reason*."""
    waiting: dict[str, Any] = {"reason": reason}
    if message:
        waiting["message"] = message
    return {
        "name": container.get("name"),
        "image": container.get("image"),
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "lastState": {},
        "state": {"waiting": waiting},
    }


def container_status(container: Mapping[str, Any], state: ContainerStateLike, pod_uid: str) -> dict[str, Any]:
    """One entry of containerStatuses / initContainerStatuses from a runner state."""
    status = waiting_status(container, state.reason or "ContainerCreating", state.message)
    status["restartCount"] = state.restart_count
    if state.state == "waiting":
        return status
    cid = container_id(pod_uid, state.name, state.restart_count)
    status["containerID"] = cid
    status["imageID"] = f"docker.io/library/{container.get('image')}"
    if state.state == "running":
        status["state"] = {"running": {"startedAt": _time(state.started_at) or rfc3339()}}
        status["started"] = True
        status["ready"] = not state.init
        return status
    exit_code = state.exit_code if state.exit_code is not None else 0
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": state.reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": _time(state.started_at),
        "finishedAt": _time(state.finished_at),
        "containerID": cid,
    }
    if state.signal is not None:
        terminated["signal"] = state.signal
    if state.message:
        terminated["message"] = state.message
    status["state"] = {"terminated": {k: v for k, v in terminated.items() if v is not None}}
    status["started"] = False
    # An init container that finished successfully counts as ready; a finished main container does not.
    status["ready"] = state.init and exit_code == 0
    return status


def _names(containers: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(c.get("name")) for c in containers]


def _condition(
    type_: str, ok: bool, now: str, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": type_,
        "status": "True" if ok else "False",
        "lastProbeTime": None,
        "lastTransitionTime": now,
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def keep_transition_times(
    old: Iterable[Mapping[str, Any]], new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """*new* conditions, with lastTransitionTime carried over from *old* where the status did not change."""
    previous = {c.get("type"): c for c in old}
    for condition in new:
        before = previous.get(condition["type"])
        if before is not None and before.get("status") == condition["status"]:
            condition["lastTransitionTime"] = before.get(
                "lastTransitionTime", condition["lastTransitionTime"]
            )
    return new


def pod_conditions(
    pod: Mapping[str, Any],
    statuses: Mapping[str, Mapping[str, Any]],
    phase: str,
    *,
    disruption: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The pod's conditions for *phase* and its container statuses (by container name)."""
    spec = pod.get("spec", {})
    now = rfc3339()
    init_containers = spec.get("initContainers") or []
    containers = spec.get("containers") or []
    terminal = phase in TERMINAL_PHASES
    unfinished_init = [
        name
        for name in _names(init_containers)
        if statuses.get(name, {}).get("state", {}).get("terminated", {}).get("exitCode") != 0
    ]
    initialized = not unfinished_init or (terminal and phase == "Succeeded")
    unready = [name for name in _names(containers) if not statuses.get(name, {}).get("ready")]
    ready = not unready and not terminal
    if terminal:
        ready_reason, ready_message = "PodCompleted", None
    else:
        ready_reason, ready_message = (
            "ContainersNotReady",
            f"containers with unready status: [{' '.join(unready)}]",
        )
    conditions = [
        _condition("PodReadyToStartContainers", not terminal, now),
        _condition(
            "Initialized",
            initialized,
            now,
            *(
                ()
                if initialized
                else (
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(unfinished_init)}]",
                )
            ),
        ),
        _condition("Ready", ready, now, *(() if ready else (ready_reason, ready_message))),
        _condition("ContainersReady", ready, now, *(() if ready else (ready_reason, ready_message))),
        _condition("PodScheduled", True, now),
    ]
    if disruption is not None:
        conditions.append(_condition("DisruptionTarget", True, now, disruption[0], disruption[1]))
    return keep_transition_times(pod.get("status", {}).get("conditions") or [], conditions)


def running_phase(pod: Mapping[str, Any], statuses: Mapping[str, Mapping[str, Any]]) -> str:
    """Pending while a main container has not started yet, else Running (terminal phases come from the
    outcome). As the kubelet's getPhase: one container waiting (to be created, for its image, for a
    missing Secret) keeps the pod Pending even while another runs; one waiting to be restarted has run."""
    started = False
    for name in _names(pod.get("spec", {}).get("containers") or []):
        status = statuses.get(name, {})
        state = status.get("state", {})
        if "waiting" in state and not status.get("restartCount"):
            return "Pending"
        started = started or "running" in state or "terminated" in state
    return "Running" if started else "Pending"


def build_status(
    pod: Mapping[str, Any],
    statuses: Mapping[str, Mapping[str, Any]],
    phase: str,
    *,
    start_time: str,
    reason: str | None = None,
    message: str | None = None,
    disruption: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The whole pod status: phase, conditions, IPs, startTime, (init)containerStatuses in spec order."""
    spec = pod.get("spec", {})
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": pod_conditions(pod, statuses, phase, disruption=disruption),
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": start_time,
        "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
    }
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    init_containers = spec.get("initContainers") or []
    if init_containers:
        status["initContainerStatuses"] = [
            statuses[name] for name in _names(init_containers) if name in statuses
        ]
    status["containerStatuses"] = [
        statuses[name] for name in _names(spec.get("containers") or []) if name in statuses
    ]
    return status


def initial_statuses(pod: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every container waiting, as right after scheduling (main containers wait for init ones)."""
    spec = pod.get("spec", {})
    init_containers = spec.get("initContainers") or []
    statuses = {str(c.get("name")): waiting_status(c, "PodInitializing") for c in init_containers}
    main_reason = "PodInitializing" if init_containers else "ContainerCreating"
    statuses.update(
        {str(c.get("name")): waiting_status(c, main_reason) for c in spec.get("containers") or []}
    )
    return statuses
