"""Run a rendered Pod's containers as local processes, the way a kubelet would, ignoring images.

This is the `local` executor's engine and the Kubernetes emulator's kubelet, so one code path runs
pods everywhere. Kubernetes semantics, mapped to local processes:

- Init containers run one at a time, in order; then all regular containers run concurrently. The
  pod succeeds iff every regular container exits 0. With `restartPolicy: OnFailure` (and `Always`,
  which a Job never uses) a failing container is restarted in place, at most `max_restarts` times.
- A native sidecar (an init container with `restartPolicy: Always`) is started in order but not
  waited for. It is restarted if it exits, and once every regular container has finished it is
  stopped (SIGTERM, SIGKILL after the grace period), in reverse order. Its exit status does not
  decide the phase; only a sidecar that cannot start at all fails the pod.
- `command` + `args` run as given (no shell unless the command is one), with `$(VAR)` expanded from
  the container's declared env (`$$` escapes, unknown references stay; so a shell's own `$$` must be
  written `$$$$`, exactly as on a cluster). A container without a `command` cannot run locally,
  since images are ignored: it ends as ContainerCannotRun (exit code 128; 127 when the command is
  not found, 126 when it is not executable).
- The environment is the pod's declared `envFrom`/`env` (values, fieldRef, resourceFieldRef,
  configMapKeyRef, secretKeyRef) over a minimal base: PATH (this interpreter's directory first),
  HOME (a per-pod directory), HOSTNAME, LANG=C.UTF-8 and the caller's `base_env`. Nothing else from
  the host's environment is inherited. Base variables are not available to `$(VAR)`, as in
  Kubernetes, where image variables are not either.
- Volumes: emptyDir, configMap, secret, downwardAPI and projected volumes become directories under
  the workdir (a projected serviceAccountToken only where `refs` can request tokens, as the node
  agent's do); a hostPath volume is that host path; a persistentVolumeClaim volume is the hostPath
  (or `local`) path of the PersistentVolume its claim is bound to, where `refs` can read claims
  (`ClaimRefs`: the node agent's, `StaticPodRefs`): the claim, in the pod's namespace, must be Bound
  and its volume's claimRef must name it, as a kubelet checks. Other volume types, and a missing
  ConfigMap, Secret or key that is not optional (in a volume or an env ref), or a missing or unbound
  claim, make the containers that use them end as ContainerCannotRun (Kubernetes would keep them
  waiting; a local run must end). A volume whose source was missing is materialized again at each
  try to start a container that mounts it.
- With `wait_when_unstartable` (the node agent, the emulator's kubelet) such a container waits instead,
  as on a kubelet: CreateContainerConfigError for a missing env ref, ContainerCreating for a missing
  volume source (a claim not found or not Bound included), and ErrImagePull, then ImagePullBackOff, for
  an image that `pull_image` refuses. It is tried again every `retry_seconds` until it can start or
  the pod is killed.
  ConfigMap/secret/downwardAPI files are written read-only; readOnly on other mounts is not enforced.
- **Mounts are rewritten, not mounted.** A process cannot mount anything, so every occurrence of a
  mountPath (or mountPath + subPath) in env values, command, args and workingDir is replaced by the
  host directory, wherever it stands as a whole path or path prefix (`/out`, `/out/x`, `X=/out`;
  not `/outdir` or `/data/out`). A script that hard-codes a path that it does not receive through
  env or args does not see the volume.
- workingDir defaults to a per-container scratch directory under the workdir. An explicit
  workingDir under a mountPath is created if missing (a relative one, under the scratch directory);
  any other must exist on this host.
- Each container runs in its own session; stdout and stderr go, interleaved, to `log_path(name)`.
  When its main process exits, whatever it left running is killed (as when PID 1 of a container
  exits); only a process that starts a session of its own (`setsid`, a daemon) escapes.
  Killed by signal N is exit code 128 + N, reason Error. OOMKilled is never reported: an
  out-of-memory kill cannot be told apart locally, and memory limits are not enforced (RLIMIT_AS
  caps address space, not memory, and breaks runtimes that reserve large address ranges).
- `spec.activeDeadlineSeconds` kills the pod with reason DeadlineExceeded after that many seconds.
- Not implemented: probes, lifecycle hooks, resource limits, and `terminationGracePeriodSeconds`
  (the runner's own `grace_seconds` applies, or the one given to `kill`). A caller that enforces
  memory limits itself (the node agent's RSS watchdog) finds each running container's session in
  `process_ids()`.

Workdir layout: `logs/<container>.log`, `home/`, `volumes/<volume>/`, `containers/<container>/`.
The caller owns the workdir and removes it when it no longer needs the logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.executors.local.pod.environment import (
    ContainerConfigError,
    PodSources,
    base_environment,
    declared_environment,
    node_capacity,
)
from dispatcher.executors.local.pod.expansion import expand_with
from dispatcher.executors.local.pod.model import (
    REASON_CONTAINER_CREATING,
    REASON_CREATE_CONFIG_ERROR,
    REASON_ERR_IMAGE_PULL,
    REASON_IMAGE_PULL_BACK_OFF,
    ClaimRefs,
    ContainerState,
    NoPodRefs,
    PodOutcome,
    PodRefs,
    PodSpecError,
    StaticPodRefs,
)
from dispatcher.executors.local.pod.outcome import (
    CANNOT_RUN_EXIT_CODE,
    back_off_state,
    cannot_run_state,
    exited_state,
    initial_state,
    pod_outcome,
    running_state,
    waiting_state,
)
from dispatcher.executors.local.pod.processes import ContainerProcess, exit_status, start_error_exit_code
from dispatcher.executors.local.pod.spec import ContainerSpec, parse_pod
from dispatcher.executors.local.pod.volumes import PathRewriter, VolumeError, materialize, mount_source
from dispatcher.runtime.concurrency import all_or_none, cancel_all

__all__ = [
    "ClaimRefs",
    "ContainerState",
    "LocalPodRunner",
    "PodOutcome",
    "PodRefs",
    "PodSpecError",
    "StaticPodRefs",
]

DEFAULT_MAX_RESTARTS = 6
"""In-place restarts of a failing container under restartPolicy OnFailure (a Job's default backoffLimit)."""
DEADLINE_REASON = "DeadlineExceeded"
_DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
# Restart back-off: Kubernetes starts at 10 s; locally there is nothing to wait for but a crash loop.
_BACK_OFF_FIRST = 0.05
_BACK_OFF_MAX = 5.0
# How long run() waits, when it is cancelled or fails, for SIGKILLed containers to be reaped.
_REAP_TIMEOUT = 5.0


@dataclass(frozen=True)
class _Launch:
    """Everything needed to start one container's process."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path


@dataclass(frozen=True)
class _Refusal:
    """Why a container cannot start now."""

    message: str
    waiting_reason: str | None = None
    """The kubelet's waiting reason when the cause may go away (a Secret created later); None: never."""
    exit_code: int = CANNOT_RUN_EXIT_CODE


class LocalPodRunner:
    """Runs one Pod manifest once as local processes; see the module docstring for the semantics.

    *pod* is a full Pod manifest as a plain dict; a malformed one raises PodSpecError here.
    *workdir* (created if missing) receives logs, volumes and scratch directories. *refs* provides
    ConfigMaps and Secrets. *on_change* is called synchronously, in the event loop, with every new
    container state: first one waiting state per container, then each transition. Exceptions it
    raises propagate out of run() once every process is stopped. *base_env* is added to the minimal
    base environment. *grace_seconds* is the time between SIGTERM and SIGKILL. *wait_when_unstartable*,
    *pull_image* (an image in, None or why it cannot be pulled out) and *retry_seconds*: see the module
    docstring.
    """

    def __init__(
        self,
        pod: Mapping[str, Any],
        *,
        workdir: Path,
        refs: PodRefs | None = None,
        on_change: Callable[[ContainerState], None] | None = None,
        base_env: Mapping[str, str] | None = None,
        grace_seconds: float = 5.0,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        wait_when_unstartable: bool = False,
        pull_image: Callable[[str], str | None] | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        if grace_seconds < 0:
            raise ValueError(f"grace_seconds must not be negative, got {grace_seconds}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must not be negative, got {max_restarts}")
        self._plan = parse_pod(pod)
        self._workdir = Path(workdir)
        self._refs: PodRefs = refs if refs is not None else NoPodRefs()
        self._on_change = on_change
        self._base_env = dict(base_env or {})
        self._grace = grace_seconds
        self._max_restarts = max_restarts
        self._wait_when_unstartable = wait_when_unstartable
        self._pull_image = pull_image
        self._retry_seconds = retry_seconds
        self._states = {c.name: initial_state(c, self._plan) for c in self._plan.all_containers()}
        self._processes: dict[str, ContainerProcess] = {}
        self._volume_dirs: dict[str, Path] = {}
        self._volume_errors: dict[str, str] = {}
        self._kill: tuple[str, str | None] | None = None
        self._sources: PodSources | None = None
        self._kill_event = asyncio.Event()
        # Set when sidecars must stop: the regular containers are done, or the pod is killed.
        self._sidecar_stop = asyncio.Event()
        self._finished = asyncio.Event()
        self._run_called = False
        # Set once the regular containers are done: from then on a kill cannot change the outcome.
        self._decided = False

    def log_path(self, container: str) -> Path:
        """The file holding *container*'s stdout and stderr, interleaved, as written so far."""
        if container not in self._states:
            raise ValueError(f"pod {self._plan.fields.name!r} has no container {container!r}")
        return self._workdir / "logs" / f"{container}.log"

    def container_states(self) -> tuple[ContainerState, ...]:
        """The current state of every container: init containers first, in manifest order."""
        return tuple(self._states.values())

    async def run(self) -> PodOutcome:
        """Run the whole pod once and return how it ended; a failing container never raises.

        If the awaiting task is cancelled, every container is killed before the cancellation
        propagates. May be called once per runner.
        """
        if self._run_called:
            raise RuntimeError(f"run() was already called for pod {self._plan.fields.name!r}")
        self._run_called = True
        deadline: asyncio.TimerHandle | None = None
        try:
            if self._kill is None:
                self._prepare_workdir()
                for state in self._states.values():
                    self._emit(state)
                if self._plan.active_deadline_seconds is not None:
                    deadline = asyncio.get_running_loop().call_later(
                        self._plan.active_deadline_seconds,
                        self._request_kill,
                        DEADLINE_REASON,
                        _DEADLINE_MESSAGE,
                    )
                await self._run_pod()
            return pod_outcome(self._plan, self._states, self._kill)
        finally:
            if deadline is not None:
                deadline.cancel()
            self._decided = True
            await self._kill_remaining()
            self._finished.set()

    async def kill(
        self, reason: str = DEADLINE_REASON, message: str | None = None, *, grace_seconds: float | None = None
    ) -> None:
        """Stop everything still running; run() then returns Failed with *reason* and *message*.

        Running containers get SIGTERM (to their whole process group and session) and SIGKILL after
        *grace_seconds* (default: the runner's grace_seconds; a deletion's own grace period on a
        kubelet); containers not started yet stay waiting. Returns once run() has finished
        (at once if run() was not started). Safe before, during and after run(), and more than
        once: the first kill's reason wins, and a kill after the regular containers finished does
        not change the outcome.
        """
        if grace_seconds is not None and grace_seconds < 0:
            raise ValueError(f"grace_seconds must not be negative, got {grace_seconds}")
        self._request_kill(reason, message, grace_seconds)
        if self._run_called:
            await self._finished.wait()

    def process_ids(self) -> dict[str, int]:
        """The running containers' main process ids (each also its process group and session id), by
        container name: what a caller needs to watch a container's memory or signal it itself."""
        return {name: process.pid for name, process in self._processes.items()}

    def _request_kill(self, reason: str, message: str | None, grace_seconds: float | None = None) -> None:
        if self._kill is not None or self._decided:
            return
        if grace_seconds is not None:
            # Sidecars stopped after this kill, and SIGKILL escalation, use the kill's own grace.
            self._grace = grace_seconds
        self._kill = (reason, message)
        self._kill_event.set()
        self._sidecar_stop.set()
        for process in self._processes.values():
            process.terminate(self._grace)

    def _emit(self, state: ContainerState) -> ContainerState:
        self._states[state.name] = state
        if self._on_change is not None:
            self._on_change(state)
        return state

    def _pod_sources(self) -> PodSources:
        if self._sources is None:
            self._sources = PodSources(
                refs=self._refs,
                pod=self._plan.fields,
                resources={container.name: container.resources for container in self._plan.all_containers()},
                node=node_capacity(self._workdir),
            )
        return self._sources

    def _prepare_workdir(self) -> None:
        for directory in ("logs", "home", "volumes", "containers"):
            (self._workdir / directory).mkdir(parents=True, exist_ok=True)
        for name in self._states:
            self.log_path(name).touch()
        sources = self._pod_sources()
        for name, volume in self._plan.volumes.items():
            try:
                self._volume_dirs[name] = materialize(volume, self._workdir / "volumes", sources)
            except VolumeError as error:
                self._volume_errors[name] = str(error)

    async def _run_pod(self) -> None:
        sidecars: list[tuple[ContainerSpec, asyncio.Task[ContainerState]]] = []
        try:
            if await self._run_init_containers(sidecars):
                await all_or_none(
                    asyncio.create_task(
                        self._run_to_completion(container), name=f"container {container.name}"
                    )
                    for container in self._plan.containers
                )
        except BaseException:
            await cancel_all([task for _, task in sidecars])
            raise
        self._decided = True
        await self._stop_sidecars(sidecars)

    async def _run_init_containers(
        self, sidecars: list[tuple[ContainerSpec, asyncio.Task[ContainerState]]]
    ) -> bool:
        """Run the init containers in order (starting sidecars); True if the regular containers may start."""
        for container in self._plan.init_containers:
            if self._kill_event.is_set():
                return False
            if container.sidecar:
                started = await self._start_sidecar(container)
                if isinstance(started, ContainerState):
                    return False
                sidecars.append((container, started))
            elif (await self._run_to_completion(container)).exit_code != 0:
                return False
        return not self._kill_event.is_set()

    async def _run_to_completion(self, container: ContainerSpec) -> ContainerState:
        """Run a container until it exits for good (restarting it in place if the policy says so)."""
        launch = await self._launch_when_startable(container)
        if isinstance(launch, ContainerState):
            return launch
        restarts = 0
        while True:
            process = await self._start(container, launch, restarts)
            if isinstance(process, ContainerState):
                return process
            state = await self._finish(container, process, restarts)
            if state.exit_code == 0 or not self._may_restart(restarts):
                return self._emit(state)
            restarts += 1
            self._emit(back_off_state(container, state, restart_count=restarts))
            await self._back_off(restarts, self._kill_event)
            if self._kill_event.is_set():
                return self._emit(state)

    def _may_restart(self, restarts: int) -> bool:
        return (
            self._plan.restart_policy != "Never"
            and restarts < self._max_restarts
            and not self._kill_event.is_set()
        )

    async def _start_sidecar(self, container: ContainerSpec) -> asyncio.Task[ContainerState] | ContainerState:
        """Start a native sidecar and a task restarting it until the pod stops; a state if it cannot start."""
        launch = self._launch(container)
        if isinstance(launch, _Refusal):
            return self._emit(cannot_run_state(container, launch.message, exit_code=launch.exit_code))
        process = await self._start(container, launch, 0)
        if isinstance(process, ContainerState):
            return process
        return asyncio.create_task(
            self._supervise_sidecar(container, launch, process), name=f"sidecar {container.name}"
        )

    async def _supervise_sidecar(
        self, container: ContainerSpec, launch: _Launch, process: ContainerProcess
    ) -> ContainerState:
        restarts = 0
        while True:
            state = await self._finish(container, process, restarts)
            if self._sidecar_stop.is_set():
                return self._emit(state)
            restarts += 1
            self._emit(back_off_state(container, state, restart_count=restarts))
            await self._back_off(restarts, self._sidecar_stop)
            started = await self._start(container, launch, restarts)
            if isinstance(started, ContainerState):
                # Stopped during the back-off (the waiting state stands) or unable to start again.
                return started if started.state == "terminated" else self._emit(state)
            process = started

    async def _stop_sidecars(
        self, sidecars: list[tuple[ContainerSpec, asyncio.Task[ContainerState]]]
    ) -> None:
        """Stop the sidecars once the regular containers are done, last started first."""
        self._sidecar_stop.set()
        try:
            for container, task in reversed(sidecars):
                process = self._processes.get(container.name)
                if process is not None:
                    process.terminate(self._grace)
                await task
        finally:
            await cancel_all([task for _, task in sidecars])

    async def _back_off(self, restarts: int, stop: asyncio.Event) -> None:
        """Wait before restart number *restarts*; return early when *stop* is set."""
        delay = min(_BACK_OFF_FIRST * 2 ** (restarts - 1), _BACK_OFF_MAX)
        with suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()

    async def _launch_when_startable(self, container: ContainerSpec) -> _Launch | ContainerState:
        """What to start for *container*; else its state: ContainerCannotRun (emitted), or, with
        ``wait_when_unstartable``, waiting until the cause goes away or the pod is killed."""
        attempt = 0
        while True:
            launch = self._launch(container, attempt)
            if isinstance(launch, _Launch):
                return launch
            if not self._wait_when_unstartable or launch.waiting_reason is None:
                return self._emit(cannot_run_state(container, launch.message, exit_code=launch.exit_code))
            waiting = waiting_state(container, launch.waiting_reason, launch.message)
            if self._states[container.name] != waiting:
                self._emit(waiting)
            with suppress(TimeoutError):
                async with asyncio.timeout(self._retry_seconds):
                    await self._kill_event.wait()
            if self._kill_event.is_set():
                return self._states[container.name]
            attempt += 1

    def _refusal_before_config(self, container: ContainerSpec, attempt: int) -> _Refusal | None:
        """Why *container* cannot start before its configuration is even read: no command, or an image
        that ``pull_image`` refuses (ErrImagePull on the first try, ImagePullBackOff after)."""
        if container.command is None:
            return _Refusal(
                f"container {container.name!r} has no command; the local runner ignores images, "
                "so the pod spec must give the command to run"
            )
        refused = self._pull_image(container.image) if self._pull_image is not None else None
        if refused is None:
            return None
        if attempt:
            return _Refusal(f'Back-off pulling image "{container.image}"', REASON_IMAGE_PULL_BACK_OFF)
        return _Refusal(refused, REASON_ERR_IMAGE_PULL)

    def _launch(self, container: ContainerSpec, attempt: int = 0) -> _Launch | _Refusal:
        """What to start for *container*, or why it cannot start (*attempt*: tries so far)."""
        refusal = self._refusal_before_config(container, attempt)
        if refusal is not None:
            return refusal
        command = container.command or ()  # no command at all was refused above
        where = f"container {container.name!r}"
        try:
            declared = declared_environment(container, self._pod_sources())
            rewrite = PathRewriter(self._mount_sources(container, declared))
        except ContainerConfigError as error:  # a missing ConfigMap, Secret or key of the env
            return _Refusal(f"{where}: {error}", REASON_CREATE_CONFIG_ERROR)
        except VolumeError as error:  # a volume whose source is missing (the kubelet: FailedMount)
            return _Refusal(f"{where}: {error}", REASON_CONTAINER_CREATING)
        try:
            argv = tuple(rewrite(expand_with(part, declared)) for part in command + container.args)
            cwd = self._working_dir(container, rewrite)
        except (ContainerConfigError, VolumeError, OSError) as error:
            return _Refusal(f"{where}: {error}")
        if not argv:
            return _Refusal(f"{where} has an empty command")
        env = {
            **base_environment(
                hostname=self._plan.hostname, home=self._workdir / "home", base_env=self._base_env
            ),
            **{name: rewrite(value) for name, value in declared.items()},
        }
        return _Launch(argv=argv, env=env, cwd=cwd)

    def _mount_sources(self, container: ContainerSpec, env: Mapping[str, str]) -> dict[str, Path]:
        """Each of the container's mountPaths and the host path standing for it; VolumeError if missing."""
        mounts = {}
        for mount in container.mounts:
            if mount.volume in self._volume_errors:
                self._materialize_again(mount.volume)
            mounts[mount.mount_path] = mount_source(mount, self._volume_dirs[mount.volume], env)
        return mounts

    def _materialize_again(self, name: str) -> None:
        """Try again a volume whose source was missing (a kubelet retries the mount); VolumeError if
        it still is."""
        try:
            self._volume_dirs[name] = materialize(
                self._plan.volumes[name], self._workdir / "volumes", self._pod_sources()
            )
        except VolumeError as error:
            self._volume_errors[name] = str(error)
            raise
        del self._volume_errors[name]

    def _working_dir(self, container: ContainerSpec, rewrite: PathRewriter) -> Path:
        """The container's working directory: its scratch directory unless workingDir says otherwise."""
        scratch = self._workdir / "containers" / container.name
        scratch.mkdir(parents=True, exist_ok=True)
        if container.working_dir is None:
            return scratch
        rewritten = rewrite(container.working_dir)
        absolute = rewritten.startswith("/")
        path = Path(rewritten) if absolute else scratch / rewritten
        if path.is_dir():
            return path
        if absolute and rewritten == container.working_dir:
            # Not under a mount: creating arbitrary directories on the host is not the runner's call.
            raise ContainerConfigError(
                f"workingDir {container.working_dir!r} is not under a volume mount and does not exist here"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def _start(
        self, container: ContainerSpec, launch: _Launch, restarts: int
    ) -> ContainerProcess | ContainerState:
        """Start the container's process (emitting running), or return the state it stays or ends in."""
        if self._kill_event.is_set() or (container.sidecar and self._sidecar_stop.is_set()):
            return self._states[container.name]
        try:
            process = await ContainerProcess.start(
                launch.argv, env=launch.env, cwd=launch.cwd, log=self.log_path(container.name)
            )
        except OSError as error:
            message = (
                f"cannot start {launch.argv[0]!r} in container {container.name!r}: {error.strerror or error}"
            )
            code = start_error_exit_code(error, launch.cwd)
            return self._emit(cannot_run_state(container, message, exit_code=code, restart_count=restarts))
        self._processes[container.name] = process
        self._emit(running_state(container, restart_count=restarts))
        if self._kill_event.is_set() or (container.sidecar and self._sidecar_stop.is_set()):
            # Stopped while the process was being spawned.
            process.terminate(self._grace)
        return process

    async def _finish(
        self, container: ContainerSpec, process: ContainerProcess, restarts: int
    ) -> ContainerState:
        """Wait for the container's process to exit; its terminated state (not yet emitted)."""
        returncode = await process.wait()
        del self._processes[container.name]
        exit_code, signal = exit_status(returncode)
        started_at = self._states[container.name].started_at
        return exited_state(
            container, exit_code=exit_code, signal=signal, started_at=started_at, restart_count=restarts
        )

    async def _kill_remaining(self) -> None:
        """SIGKILL whatever still runs (after a cancellation or an error) and reap it."""
        remaining = list(self._processes.values())
        for process in remaining:
            process.kill()
        if remaining:
            with suppress(TimeoutError):
                async with asyncio.timeout(_REAP_TIMEOUT):
                    await asyncio.gather(*(process.wait() for process in remaining), return_exceptions=True)
            self._processes.clear()
