"""The emulated node: schedules pending pods and runs them with the local executor's `LocalPodRunner`.

Modes: `run` (real processes, at most `max_running_pods` at once; the rest stay Pending), `instant`
(no processes: pods go straight to Succeeded, or Failed with the exit code in the
`emulator.bucketrun.io/exit-code` annotation) and `off` (pods stay Pending). Every container state the
runner reports becomes a pod status write, so watchers see Pending → Running → Succeeded/Failed.

As on a node, a container that cannot be created keeps the pod Pending and is tried again: a missing
Secret, ConfigMap or key of its env waits with `CreateContainerConfigError`; an image matching one of
the `failing_images` patterns (the image-pull fault) waits with `ErrImagePull`, then `ImagePullBackOff`
(in `instant` mode too). Creating the Secret or clearing the fault lets it start at the next try.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatcher.executors.local.runner import ContainerState, LocalPodRunner, PodOutcome, PodSpecError
from tests.k8s_emulator import labels, pod_status
from tests.k8s_emulator.clock import now as utc_now
from tests.k8s_emulator.clock import rfc3339
from tests.k8s_emulator.objects import Objects, clone
from tests.k8s_emulator.resources import CONFIG_MAPS, PODS, SECRETS
from tests.k8s_emulator.store import DELETED, Key, WatchEvent

logger = logging.getLogger(__name__)

MODES = ("run", "instant", "off")
DEADLINE_REASON = "DeadlineExceeded"
RETRY_SECONDS = 0.5
"""How often a container that cannot be created is tried again (a kubelet backs off from 10 s to 5 min)."""
MAX_GRACE_SECONDS = 2.0
"""Cap on terminationGracePeriodSeconds between SIGTERM and SIGKILL (tests should not wait 30 s)."""


@dataclass
class KubeletKnobs:
    """Kubelet behaviour the control API can change at runtime."""

    mode: str = "run"
    """run | instant | off (see the module docstring)."""
    max_running_pods: int = 16
    """Pods running at once in `run` mode; more stay Pending until a slot frees."""
    failing_images: tuple[str, ...] = ()
    """Image patterns (fnmatch: `registry.invalid/*`) whose pulls fail: the image-pull fault."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """ValueError naming the bad knob."""
        if self.mode not in MODES:
            raise ValueError(f"kubelet mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.max_running_pods < 1:
            raise ValueError(f"max_running_pods must be at least 1, got {self.max_running_pods}")
        if not all(isinstance(pattern, str) and pattern for pattern in self.failing_images):
            raise ValueError(f"failing_images must be non-empty image patterns, got {self.failing_images!r}")

    def pull_error(self, image: str) -> str | None:
        """Why pulling *image* fails (the image-pull fault), or None when it does not."""
        if not any(fnmatch.fnmatchcase(image, pattern) for pattern in self.failing_images):
            return None
        return (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found '
            "(the emulator's failing_images fault)"
        )


class StoreRefs:
    """`PodRefs` reading ConfigMaps and Secrets of one namespace from the store."""

    def __init__(self, objects: Objects, namespace: str) -> None:
        self._objects = objects
        self._namespace = namespace

    def config_map(self, name: str) -> Mapping[str, str] | None:
        """The ConfigMap's `data`, or None if it does not exist."""
        obj = self._objects.store.get(CONFIG_MAPS.plural, self._namespace, name)
        return None if obj is None else dict(obj.get("data") or {})

    def secret(self, name: str) -> Mapping[str, bytes] | None:
        """The Secret's decoded `data`, or None if it does not exist."""
        obj = self._objects.store.get(SECRETS.plural, self._namespace, name)
        if obj is None:
            return None
        decoded = {}
        for key, value in (obj.get("data") or {}).items():
            try:
                decoded[key] = base64.b64decode(value)
            except (binascii.Error, ValueError):
                logger.warning("secret %s/%s key %s is not base64; skipped", self._namespace, name, key)
        return decoded


@dataclass
class PodRun:
    """One pod on the node: its runner (None in instant mode), statuses so far, and how it was stopped."""

    uid: str
    namespace: str
    name: str
    workdir: Path
    start_time: str
    runner: LocalPodRunner | None = None
    task: asyncio.Task[None] | None = None
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    disruption: tuple[str, str] | None = None
    finished: bool = False


class Kubelet:
    """Runs the pods bound to the emulator's single node."""

    def __init__(self, objects: Objects, knobs: KubeletKnobs, workroot: Path) -> None:
        self.objects = objects
        self.knobs = knobs
        self.workroot = workroot
        self._pending: dict[Key, None] = {}
        self._runs: dict[str, PodRun] = {}
        self._running = 0
        self._wakeup = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    # -- state ------------------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Pods whose processes are running now."""
        return self._running

    @property
    def pending(self) -> int:
        """Pods waiting to be scheduled."""
        return len(self._pending)

    def set_knobs(
        self,
        mode: str | None = None,
        max_running_pods: int | None = None,
        failing_images: tuple[str, ...] | None = None,
    ) -> None:
        """Change mode, concurrency and/or the failing images; pending pods are reconsidered at once (a
        waiting container sees new failing images at its next try)."""
        knobs = KubeletKnobs(
            mode if mode is not None else self.knobs.mode,
            max_running_pods if max_running_pods is not None else self.knobs.max_running_pods,
            tuple(failing_images) if failing_images is not None else self.knobs.failing_images,
        )
        self.knobs = knobs
        self._wakeup.set()

    def log_file(self, pod_uid: str, container: str) -> Path | None:
        """The runner's log file for *container* of the pod, if the pod ran here with a runner."""
        run = self._runs.get(pod_uid)
        if run is None or run.runner is None:
            return None
        try:
            return run.runner.log_path(container)
        except ValueError:
            return None

    # -- event intake -----------------------------------------------------------------------------------

    def on_event(self, event: WatchEvent) -> None:
        """Store listener: queue unscheduled pods, stop the processes of deleted ones."""
        if event.resource != PODS.plural:
            return
        meta = event.obj["metadata"]
        key = (PODS.plural, meta.get("namespace", ""), meta["name"])
        if event.type == DELETED:
            self._pending.pop(key, None)
            run = self._runs.pop(meta["uid"], None)
            if run is not None:
                self._spawn(self._discard(run))
            return
        spec, status = event.obj.get("spec") or {}, event.obj.get("status") or {}
        if (
            not spec.get("nodeName")
            and status.get("phase", "Pending") == "Pending"
            and not meta.get("deletionTimestamp")
        ):
            self._pending[key] = None
            self._wakeup.set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run(self) -> None:
        """Schedule pending pods whenever something changes (cancel to stop)."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._schedule()

    def _schedule(self) -> None:
        if self.knobs.mode == "off":
            return
        for key in list(self._pending):
            if self.knobs.mode == "run" and self._running >= self.knobs.max_running_pods:
                return
            self._pending.pop(key, None)
            pod = self.objects.store.get(*key)
            if pod is None or (pod.get("spec") or {}).get("nodeName"):
                continue
            if self.knobs.mode == "instant":
                self._finish_instantly(pod)
            else:
                self._start(pod)

    # -- instant mode -----------------------------------------------------------------------------------

    def _finish_instantly(self, pod: dict[str, Any]) -> None:
        annotations = pod["metadata"].get("annotations") or {}
        raw = annotations.get(labels.EXIT_CODE_ANNOTATION, "0")
        try:
            exit_code = int(raw)
        except ValueError:
            logger.warning(
                "pod %s: annotation %s=%r is not an integer; using 1",
                pod["metadata"]["name"],
                labels.EXIT_CODE_ANNOTATION,
                raw,
            )
            exit_code = 1
        moment = utc_now()
        spec = pod.get("spec") or {}
        if self._hold_on_pull(pod):
            return
        statuses = {}
        for key, init, code in (("initContainers", True, 0), ("containers", False, exit_code)):
            for container in spec.get(key) or []:
                state = ContainerState(
                    name=container["name"],
                    init=init,
                    state="terminated",
                    exit_code=code,
                    signal=None,
                    reason=None,
                    message=None,
                    started_at=moment,
                    finished_at=moment,
                    restart_count=0,
                )
                statuses[container["name"]] = pod_status.container_status(
                    container, state, pod["metadata"]["uid"]
                )
        phase = "Succeeded" if exit_code == 0 else "Failed"

        def bind_and_finish(obj: dict[str, Any]) -> None:
            obj["spec"]["nodeName"] = labels.NODE_NAME
            obj["status"] = pod_status.build_status(obj, statuses, phase, start_time=rfc3339(moment))

        self.objects.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], bind_and_finish)

    def _hold_on_pull(self, pod: dict[str, Any]) -> bool:
        """Instant mode under the image-pull fault: bind *pod* and leave it Pending, its first container
        whose image fails waiting with ImagePullBackOff (the containers before it done or running, those
        after it not started); False when no image of the pod fails."""
        spec = pod.get("spec") or {}
        uid = pod["metadata"]["uid"]
        statuses = pod_status.initial_statuses(pod)
        moment = utc_now()
        for init, container in [(True, c) for c in spec.get("initContainers") or []] + [
            (False, c) for c in spec.get("containers") or []
        ]:
            image = str(container.get("image") or "")
            if self.knobs.pull_error(image) is not None:
                statuses[container["name"]] = pod_status.waiting_status(
                    container, "ImagePullBackOff", f'Back-off pulling image "{image}"'
                )
                break
            state = ContainerState(
                container["name"],
                init,
                "terminated" if init else "running",
                exit_code=0 if init else None,
                started_at=moment,
                finished_at=moment if init else None,
            )
            statuses[container["name"]] = pod_status.container_status(container, state, uid)
        else:
            return False

        def bind_and_hold(obj: dict[str, Any]) -> None:
            obj["spec"]["nodeName"] = labels.NODE_NAME
            obj["status"] = pod_status.build_status(obj, statuses, "Pending", start_time=rfc3339(moment))

        self.objects.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], bind_and_hold)
        return True

    # -- run mode ---------------------------------------------------------------------------------------

    def _pull_error(self, image: str) -> str | None:
        # The knobs in force at each try: set_knobs replaces them.
        return self.knobs.pull_error(image)

    def _grace_seconds(self, pod: dict[str, Any]) -> float:
        requested = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return min(float(requested), MAX_GRACE_SECONDS)

    def _start(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        run = PodRun(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            workdir=self.workroot / meta["namespace"] / f"{meta['name']}-{meta['uid'][:8]}",
            start_time=rfc3339(),
            statuses=pod_status.initial_statuses(pod),
        )

        def bind(obj: dict[str, Any]) -> None:
            obj["spec"]["nodeName"] = labels.NODE_NAME
            obj["status"] = pod_status.build_status(obj, run.statuses, "Pending", start_time=run.start_time)

        bound = self.objects.mutate(PODS, run.namespace, run.name, bind)
        if bound is None:
            return
        self._runs[run.uid] = run
        try:
            run.runner = LocalPodRunner(
                bound,
                workdir=run.workdir,
                refs=StoreRefs(self.objects, run.namespace),
                on_change=lambda state: self._on_change(run, state),
                grace_seconds=self._grace_seconds(bound),
                wait_when_unstartable=True,
                pull_image=self._pull_error,
                retry_seconds=RETRY_SECONDS,
            )
        except PodSpecError as error:
            # Kubernetes keeps such a pod waiting with CreateContainerConfigError; so does the emulator.
            for name, status in run.statuses.items():
                container = {"name": name, "image": status.get("image")}
                run.statuses[name] = pod_status.waiting_status(
                    container, "CreateContainerConfigError", str(error)
                )
            self._write_status(run, "Pending")
            return
        self._running += 1
        run.task = asyncio.get_running_loop().create_task(
            self._run_pod(run), name=f"pod {run.namespace}/{run.name}"
        )

    def _container(self, run: PodRun, name: str) -> dict[str, Any]:
        pod = self.objects.store.get(PODS.plural, run.namespace, run.name) or {}
        spec = pod.get("spec") or {}
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if container.get("name") == name:
                return dict(container)
        return {"name": name}

    def _on_change(self, run: PodRun, state: ContainerState) -> None:
        if run.finished:
            return
        run.statuses[state.name] = pod_status.container_status(
            self._container(run, state.name), state, run.uid
        )
        pod = self.objects.store.get(PODS.plural, run.namespace, run.name)
        if pod is not None:
            self._write_status(run, pod_status.running_phase(pod, run.statuses))

    async def _run_pod(self, run: PodRun) -> None:
        assert run.runner is not None
        outcome: PodOutcome | None = None
        try:
            outcome = await run.runner.run()
        except Exception:
            logger.exception("pod %s/%s: the local runner failed", run.namespace, run.name)
        finally:
            self._running -= 1
            run.finished = True
            self._wakeup.set()
        if self._runs.get(run.uid) is not run:
            return  # deleted meanwhile
        if outcome is None:
            self._write_status(
                run,
                "Failed",
                reason="EmulatorError",
                message="the local runner failed; see the emulator's log",
            )
            return
        for state in (*outcome.init_containers, *outcome.containers):
            run.statuses[state.name] = pod_status.container_status(
                self._container(run, state.name), state, run.uid
            )
        disruption = run.disruption
        if disruption is None and outcome.reason == DEADLINE_REASON:
            disruption = (
                DEADLINE_REASON,
                outcome.message or "Pod was active on the node longer than the deadline",
            )
        # Kubernetes gives a pod a reason and message only when it was stopped (deadline, eviction, …);
        # a container that simply failed is described by its own terminated state.
        message = outcome.message if outcome.reason else None
        self._write_status(run, outcome.phase, reason=outcome.reason, message=message, disruption=disruption)

    def _write_status(
        self,
        run: PodRun,
        phase: str,
        *,
        reason: str | None = None,
        message: str | None = None,
        disruption: tuple[str, str] | None = None,
    ) -> None:
        statuses = clone(run.statuses)

        def set_status(obj: dict[str, Any]) -> None:
            if obj["metadata"]["uid"] == run.uid:
                obj["status"] = pod_status.build_status(
                    obj,
                    statuses,
                    phase,
                    start_time=run.start_time,
                    reason=reason,
                    message=message,
                    disruption=disruption,
                )

        self.objects.mutate(PODS, run.namespace, run.name, set_status)

    # -- stopping ---------------------------------------------------------------------------------------

    def kill_pod(self, namespace: str, name: str, reason: str, message: str) -> None:
        """Stop the pod's containers with *reason* (a running pod via its runner; a waiting one at once)."""
        pod = self.objects.store.get(PODS.plural, namespace, name)
        if pod is None or (pod.get("status") or {}).get("phase") in pod_status.TERMINAL_PHASES:
            return
        run = self._runs.get(pod["metadata"]["uid"])
        if run is not None and run.runner is not None and not run.finished:
            run.disruption = (reason, message)
            self._spawn(run.runner.kill(reason, message))
            return
        self._pending.pop((PODS.plural, namespace, name), None)
        start_time = run.start_time if run is not None else rfc3339()
        statuses = run.statuses if run is not None else pod_status.initial_statuses(pod)

        def fail(obj: dict[str, Any]) -> None:
            obj["status"] = pod_status.build_status(
                obj,
                statuses,
                "Failed",
                start_time=start_time,
                reason=reason,
                message=message,
                disruption=(reason, message),
            )

        self.objects.mutate(PODS, namespace, name, fail)

    async def _discard(self, run: PodRun) -> None:
        """A deleted pod: kill its processes, then remove its workdir."""
        if run.runner is not None and not run.finished:
            await run.runner.kill("Deleted", "the pod was deleted")
        if run.task is not None:
            await asyncio.gather(run.task, return_exceptions=True)
        shutil.rmtree(run.workdir, ignore_errors=True)

    async def shutdown(self) -> None:
        """Kill every running pod and wait for the runners to finish (emulator exit)."""
        self._pending.clear()
        runs = [run for run in self._runs.values() if run.runner is not None and not run.finished]
        await asyncio.gather(
            *(run.runner.kill("Shutdown", "the emulator is stopping") for run in runs if run.runner),
            return_exceptions=True,
        )
        await asyncio.gather(*(run.task for run in runs if run.task is not None), return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
