"""Pure decisions of the local runner: container states for each event, and the pod's phase."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from dispatcher.executors.local.pod.model import (
    REASON_BACK_OFF,
    REASON_CANNOT_RUN,
    REASON_COMPLETED,
    REASON_CONTAINER_CREATING,
    REASON_ERROR,
    REASON_POD_INITIALIZING,
    ContainerState,
    PodOutcome,
)
from dispatcher.executors.local.pod.spec import ContainerSpec, PodPlan

# Kubernetes reports a container that could not be created with exit code 128 (containerd StartError).
CANNOT_RUN_EXIT_CODE = 128


def now() -> datetime:
    """The current time, timezone-aware UTC, as every timestamp the runner reports."""
    return datetime.now(UTC)


def initial_state(container: ContainerSpec, plan: PodPlan) -> ContainerState:
    """The waiting state a container starts in (PodInitializing while init containers are pending)."""
    initializing = container.init or bool(plan.init_containers)
    reason = REASON_POD_INITIALIZING if initializing else REASON_CONTAINER_CREATING
    return ContainerState(container.name, container.init, "waiting", reason=reason)


def running_state(container: ContainerSpec, *, restart_count: int) -> ContainerState:
    """The state of a container whose process has just started."""
    return ContainerState(
        container.name, container.init, "running", started_at=now(), restart_count=restart_count
    )


def exited_state(
    container: ContainerSpec,
    *,
    exit_code: int,
    signal: int | None,
    started_at: datetime | None,
    restart_count: int,
) -> ContainerState:
    """The state of a container whose main process has exited."""
    return ContainerState(
        container.name,
        container.init,
        "terminated",
        exit_code=exit_code,
        signal=signal,
        reason=REASON_COMPLETED if exit_code == 0 else REASON_ERROR,
        started_at=started_at,
        finished_at=now(),
        restart_count=restart_count,
    )


def cannot_run_state(
    container: ContainerSpec, message: str, *, exit_code: int = CANNOT_RUN_EXIT_CODE, restart_count: int = 0
) -> ContainerState:
    """The state of a container that could not be started at all."""
    return ContainerState(
        container.name,
        container.init,
        "terminated",
        exit_code=exit_code,
        reason=REASON_CANNOT_RUN,
        message=message,
        finished_at=now(),
        restart_count=restart_count,
    )


def waiting_state(container: ContainerSpec, reason: str, message: str) -> ContainerState:
    """The state of a container that cannot start yet, waiting for its cause to go away."""
    return ContainerState(container.name, container.init, "waiting", reason=reason, message=message)


def back_off_state(container: ContainerSpec, last: ContainerState, *, restart_count: int) -> ContainerState:
    """The state of a failed container waiting to be restarted in place."""
    return ContainerState(
        container.name,
        container.init,
        "waiting",
        reason=REASON_BACK_OFF,
        message=f"back-off restarting failed container {container.name} (exit code {last.exit_code})",
        restart_count=restart_count,
        last_terminated=last,
    )


def pod_outcome(
    plan: PodPlan, states: Mapping[str, ContainerState], kill: tuple[str, str | None] | None
) -> PodOutcome:
    """How the pod ended, given each container's final state and the kill request (reason, message), if any.

    A killed pod failed whatever its containers did. Otherwise it failed if an init container did
    not complete (a sidecar only counts if it could not start) or any regular container did not
    exit 0; it succeeded if every regular container exited 0.
    """
    init_states = tuple(states[container.name] for container in plan.init_containers)
    main_states = tuple(states[container.name] for container in plan.containers)
    if kill is not None:
        reason, message = kill
        return PodOutcome("Failed", reason, message or f"pod killed: {reason}", init_states, main_states)
    problems = []
    for container, state in zip(plan.init_containers, init_states, strict=True):
        # The first init container that stopped the pod is the whole story: later ones never ran.
        if container.sidecar and state.reason == REASON_CANNOT_RUN:
            problems.append(_describe("sidecar container", state))
            break
        if not container.sidecar and not _succeeded(state):
            problems.append(_describe("init container", state))
            break
    if not problems:
        problems = [_describe("container", state) for state in main_states if not _succeeded(state)]
    if problems:
        return PodOutcome("Failed", None, "; ".join(problems), init_states, main_states)
    return PodOutcome("Succeeded", None, None, init_states, main_states)


def _succeeded(state: ContainerState) -> bool:
    return state.state == "terminated" and state.exit_code == 0


def _describe(kind: str, state: ContainerState) -> str:
    if state.reason == REASON_CANNOT_RUN:
        return f"{kind} {state.name} cannot run: {state.message}"
    if state.state != "terminated":
        return f"{kind} {state.name} did not run"
    if state.signal is not None:
        return f"{kind} {state.name} was killed by signal {state.signal} (exit code {state.exit_code})"
    return f"{kind} {state.name} exited with code {state.exit_code}"
