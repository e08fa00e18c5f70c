"""The pods bound to the node: each run by the local runner, its status written as a kubelet writes it.

One `PodWorker` per pod uid, for the pod's whole life on the node:
1. write the first status (Pending, startTime, every container waiting);
2. while the config-error fault names the pod, keep its containers waiting with
   CreateContainerConfigError; a manifest the runner cannot read waits the same way, for ever; while
   the `hold` knob stands, or `max_running` pods run already, keep it Pending; under the `instant`
   knob, end it at once without running it;
3. run the pod with `LocalPodRunner` (`wait_when_unstartable`: a missing Secret, ConfigMap or key waits
   with CreateContainerConfigError, a missing volume source with ContainerCreating, a failing image
   with ErrImagePull/ImagePullBackOff), an RSS watchdog enforcing memory limits, and
   `activeDeadlineSeconds` ending it Failed with reason DeadlineExceeded;
4. once the pod is being deleted (deletionTimestamp set), stop its containers with SIGTERM and SIGKILL
   after the deletion's grace period (metadata.deletionGracePeriodSeconds), write the final status, and
   delete the pod with gracePeriodSeconds=0 and a precondition on its uid, as the kubelet's status
   manager does. A pod that ended earlier is deleted at once.

Status writes are JSON merge patches of the whole status with `metadata.uid` as a precondition,
coalesced: only the newest state is written, one write at a time per pod. A restarted agent does not
run again a pod whose status is already terminal.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bucketrun.devtools.node_agent.api import ApiClient, ApiError
from bucketrun.devtools.node_agent.faults import INSTANT_EXIT_CODE, Faults
from bucketrun.devtools.node_agent.memory import OOM_EXIT_CODE, OOM_REASON, MemoryWatchdog, memory_limits
from bucketrun.devtools.node_agent.refs import FetchedRefs
from bucketrun.devtools.node_agent.status import TERMINAL_PHASES, ContainerRecord, pod_status
from dispatcher.domain.timestamps import rfc3339
from dispatcher.executors.local.runner import ContainerState, LocalPodRunner, PodSpecError

logger = logging.getLogger(__name__)

CONFIG_ERROR = "CreateContainerConfigError"
_CONFIG_WAITS = (CONFIG_ERROR, "ContainerCreating")
DELETED_REASON = "Deleted"
DEFAULT_GRACE_SECONDS = 30.0
"""A pod's terminationGracePeriodSeconds when its spec has none (the API server defaults it so)."""
UNLIMITED_RESTARTS = 1_000_000
"""A kubelet restarts an OnFailure container for ever; the Job controller counts the restarts."""
_WRITE_RETRY_SECONDS = 1.0


class Admission:
    """The pods running now and those waiting to start (the `hold` and `max_running` knobs)."""

    def __init__(self) -> None:
        self.running = 0
        """Pods whose containers the runner runs now."""
        self.pending = 0
        """Pods held, or waiting for a slot."""
        self._freed = asyncio.Event()

    def freed(self) -> asyncio.Event:
        """Set when the next running pod ends."""
        return self._freed

    def leave(self) -> None:
        """A running pod ended: its slot is free."""
        self.running -= 1
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()


@dataclass
class NodeContext:
    """What every pod worker shares: the API, the caches, the faults and the node's settings."""

    api: ApiClient
    node_name: str
    workroot: Path
    faults: Callable[[], Faults]
    reachable: asyncio.Event
    """Cleared while the unreachable fault stands: no status write leaves the node."""
    faults_changed: Callable[[], asyncio.Event]
    """The event set at the next change of the faults."""
    retry_seconds: float = 1.0
    memory_poll_seconds: float = 0.25
    max_grace_seconds: float | None = None
    admission: Admission = field(default_factory=Admission)


def pod_key(pod: dict[str, Any]) -> str:
    """`namespace/name`."""
    meta = pod["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _path(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"


class PodWorker:
    """One pod's life on the node (see the module docstring)."""

    def __init__(self, pod: dict[str, Any], context: NodeContext) -> None:
        self.pod = pod
        self.uid = str(pod["metadata"]["uid"])
        self._context = context
        meta = pod["metadata"]
        self.workdir = context.workroot / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        self.runner: LocalPodRunner | None = None
        self.records: dict[str, ContainerRecord] = {}
        self._start_time = (pod.get("status") or {}).get("startTime") or rfc3339(datetime.now(UTC))
        self._final: tuple[str, str | None, str | None] | None = None
        self._watchdog: MemoryWatchdog | None = None
        self._oom_runs: set[tuple[str, int]] = set()
        self._deleting = asyncio.Event()
        self._grace: float | None = None
        self._wanted = 0
        self._written = 0
        self._dirty = asyncio.Event()
        self._progress = asyncio.Event()
        self._gone = False
        self._background: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None

    # -- intake -----------------------------------------------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        """The newest copy of the pod from the watch; a deletionTimestamp starts the deletion."""
        self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and not self._deleting.is_set():
            grace = meta.get("deletionGracePeriodSeconds")
            self.delete(float(grace) if grace is not None else None)

    def delete(self, grace_seconds: float | None) -> None:
        """Stop the pod's containers within *grace_seconds* (None: the pod's own grace) and end it."""
        self._grace = self._grace_for(grace_seconds)
        self._deleting.set()
        if self.runner is not None:
            task = asyncio.get_running_loop().create_task(
                self.runner.kill(DELETED_REASON, "the pod was deleted", grace_seconds=self._grace)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def vanished(self) -> None:
        """The pod is gone from the API: kill what still runs at once, write nothing more."""
        self._gone = True
        self.delete(0.0)

    def _grace_for(self, requested: float | None) -> float:
        spec = self.pod.get("spec") or {}
        grace = (
            requested
            if requested is not None
            else float(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
        )
        if self._context.max_grace_seconds is not None:
            grace = min(grace, self._context.max_grace_seconds)
        return max(grace, 0.0)

    # -- the pod's life ---------------------------------------------------------------------------------

    async def live(self) -> None:
        """Run the pod, then wait for its deletion and finish it (cancel to abandon it)."""
        writer = asyncio.create_task(self._write_statuses(), name=f"status {pod_key(self.pod)}")
        try:
            if (self.pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
                self._changed_state()
                await self._run()
            await self._deleting.wait()
            if self._final is None:
                # Deleted before it could end (never started, or held by a config error): the kubelet
                # ends such a pod Failed before it deletes it.
                self._final = ("Failed", None, None)
                self._changed_state()
            if not self._gone:
                await self._flush()
                await self._delete_from_api()
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _run(self) -> None:
        self._initial_records()
        if not await self._wait_out_config_fault() or self._deleting.is_set():
            return  # deleted before it could start; live() ends it
        if not await self._admitted():
            return
        admission = self._context.admission
        admission.running += 1
        try:
            await self._run_processes()
        finally:
            admission.leave()

    async def _admitted(self) -> bool:
        """Wait, counted as pending, while the `hold` knob stands or `max_running` pods run; True when
        the pod may start, False when it was deleted or ended under the `instant` knob."""
        admission = self._context.admission
        admission.pending += 1
        try:
            while True:
                faults = self._context.faults()
                if faults.instant and not faults.hold:
                    await self._finish_instantly()
                    return False
                if faults.admits(admission.running):
                    return True
                if not await self._wait_for_change(admission.freed()):
                    return False
        finally:
            admission.pending -= 1

    async def _wait_for_change(self, *events: asyncio.Event) -> bool:
        """Wait until the faults change or one of *events* is set; False once the pod is being deleted.
        No timeout: every knob a waiting pod depends on changes through these events, and a node holding
        thousands of pods must not wake them all every second."""
        waits = {
            asyncio.create_task(event.wait())
            for event in (self._deleting, self._context.faults_changed(), *events)
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return not self._deleting.is_set()

    def _containers(self) -> list[tuple[dict[str, Any], bool]]:
        spec = self.pod.get("spec") or {}
        return [(c, True) for c in spec.get("initContainers") or []] + [
            (c, False) for c in spec.get("containers") or []
        ]

    def _initial_records(self) -> None:
        """Every container waiting, as right after scheduling (regular ones behind init containers)."""
        containers = self._containers()
        initializing = any(init for _, init in containers)
        for container, init in containers:
            reason = "PodInitializing" if initializing else "ContainerCreating"
            name = str(container.get("name"))
            self.records.setdefault(
                name, ContainerRecord(ContainerState(name, init, "waiting", reason=reason))
            )
        self._changed_state()

    async def _finish_instantly(self) -> None:
        """The `instant` knob: end the pod now without running it (see `faults`)."""
        while (failing := self._failing_image()) is not None:
            name, init, image = failing
            back_off = f'Back-off pulling image "{image}"'
            self.records[name] = ContainerRecord(
                ContainerState(name, init, "waiting", reason="ImagePullBackOff", message=back_off)
            )
            self._changed_state()
            if not await self._wait_for_change():
                return
        code = self._instant_exit_code()
        moment = datetime.now(UTC)
        for container, init in self._containers():
            name = str(container.get("name"))
            exit_code = 0 if init else code
            reason = "Completed" if exit_code == 0 else "Error"
            ended = ContainerState(
                name,
                init,
                "terminated",
                exit_code=exit_code,
                reason=reason,
                started_at=moment,
                finished_at=moment,
            )
            self.records[name] = ContainerRecord(ended)
        self._final = ("Succeeded" if code == 0 else "Failed", None, None)
        self._changed_state()

    def _failing_image(self) -> tuple[str, bool, str] | None:
        faults = self._context.faults()
        for container, init in self._containers():
            image = str(container.get("image") or "")
            if faults.pull_error(image) is not None:
                return str(container.get("name")), init, image
        return None

    def _instant_exit_code(self) -> int:
        raw = (self.pod["metadata"].get("annotations") or {}).get(INSTANT_EXIT_CODE, "0")
        try:
            return int(raw)
        except ValueError:
            logger.warning(
                "pod %s: annotation %s=%r is not an integer; using 1",
                pod_key(self.pod),
                INSTANT_EXIT_CODE,
                raw,
            )
            return 1

    async def _run_processes(self) -> None:
        context = self._context
        refs = FetchedRefs(context.api, self.pod)
        await refs.refresh()
        await refs.request_tokens(self.pod)
        try:
            self.runner = LocalPodRunner(
                self.pod,
                workdir=self.workdir,
                refs=refs,
                on_change=self._on_change,
                grace_seconds=self._grace_for(None),
                max_restarts=UNLIMITED_RESTARTS,
                wait_when_unstartable=True,
                pull_image=lambda image: context.faults().pull_error(image),
                retry_seconds=context.retry_seconds,
            )
        except PodSpecError as error:
            # The kubelet keeps such a pod's containers waiting with CreateContainerConfigError.
            self._all_waiting(str(error))
            return
        if self._deleting.is_set():
            # Deleted while its Secrets and tokens were fetched: the runner ends at once, nothing started.
            await self.runner.kill(DELETED_REASON, "the pod was deleted", grace_seconds=self._grace)
        limits = memory_limits(self.pod)
        self._watchdog = MemoryWatchdog(
            self.runner.process_ids,
            lambda: self._memory_limits(limits),
            context.memory_poll_seconds,
        )
        helpers = [asyncio.create_task(self._watchdog.run(), name=f"memory {pod_key(self.pod)}")]
        if not refs.empty:
            helpers.append(
                asyncio.create_task(self._refresh_while_waiting(refs), name=f"refs {pod_key(self.pod)}")
            )
        try:
            outcome = await self.runner.run()
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        for state in (*outcome.init_containers, *outcome.containers):
            self._on_change(state)
        # A pod gets its own reason and message only when the node stopped it (DeadlineExceeded);
        # a container that failed is described by its terminated state, and a deletion by nothing.
        stopped = outcome.reason not in (None, DELETED_REASON)
        self._final = (
            outcome.phase,
            outcome.reason if stopped else None,
            outcome.message if stopped else None,
        )
        self._changed_state()

    async def _refresh_while_waiting(self, refs: FetchedRefs) -> None:
        """Fetch the pod's Secrets, ConfigMaps and missing tokens again while a container waits for its
        configuration or a volume."""
        while True:
            await asyncio.sleep(self._context.retry_seconds / 2)
            if any(record.current.reason in _CONFIG_WAITS for record in self.records.values()):
                await refs.refresh()
                await refs.request_tokens(self.pod)

    def _memory_limits(self, limits: dict[str, int]) -> dict[str, int]:
        if self._context.faults().oom_kill(self.pod["metadata"]["namespace"], self.pod["metadata"]["name"]):
            return dict.fromkeys(self.records, 0)
        return limits

    async def _wait_out_config_fault(self) -> bool:
        """Keep the containers waiting while the config-error fault names the pod; False if it was deleted."""
        meta = self.pod["metadata"]
        while self._context.faults().config_error(meta["namespace"], meta["name"]):
            self._all_waiting("the node agent's config_errors fault: configuration cannot be prepared")
            if not await self._wait_for_change():
                return False
        return True

    def _all_waiting(self, message: str) -> None:
        spec = self.pod.get("spec") or {}
        for key, init in (("initContainers", True), ("containers", False)):
            for container in spec.get(key) or []:
                name = str(container.get("name"))
                self.records[name] = ContainerRecord(
                    ContainerState(name, init, "waiting", reason=CONFIG_ERROR, message=message)
                )
        self._changed_state()

    def _on_change(self, state: ContainerState) -> None:
        before = self.records.get(state.name)
        last = before.last if before is not None else None
        if state.last_terminated is not None:
            last = self._oom_checked(state.last_terminated)
        if state.state == "terminated":
            state = self._oom_checked(state)
        self.records[state.name] = ContainerRecord(state, last)
        self._changed_state()

    def _oom_checked(self, state: ContainerState) -> ContainerState:
        """*state*, reported as OOMKilled when the watchdog killed that run (the same run may be
        reported more than once: as it ends, in the next back-off state, in the pod's outcome)."""
        run = (state.name, state.restart_count)
        if state.signal == 9 and self._watchdog is not None and self._watchdog.take_oom(state.name):
            self._oom_runs.add(run)
        if run in self._oom_runs and state.state == "terminated":
            return replace(state, reason=OOM_REASON, exit_code=OOM_EXIT_CODE, message=None)
        return state

    # -- status writes ----------------------------------------------------------------------------------

    def _changed_state(self) -> None:
        self._wanted += 1
        self._dirty.set()

    async def _flush(self) -> None:
        """Wait until the newest state has been written (or the pod is gone)."""
        while self._written < self._wanted and not self._gone:
            self._progress.clear()
            await self._progress.wait()

    def current_status(self) -> dict[str, Any]:
        """The status to write now."""
        phase, reason, message = self._final or (None, None, None)
        return pod_status(
            self.pod, self.records, phase=phase, start_time=self._start_time, reason=reason, message=message
        )

    async def _write_statuses(self) -> None:
        while not self._gone:
            await self._dirty.wait()
            self._dirty.clear()
            await self._context.reachable.wait()
            wanted = self._wanted
            if not await self._write_status():
                self._dirty.set()
                await asyncio.sleep(_WRITE_RETRY_SECONDS)
                continue
            self._written = max(self._written, wanted)
            self._progress.set()

    async def _write_status(self) -> bool:
        """One write of the current status; False to try again (the pod being gone counts as done)."""
        body = {"metadata": {"uid": self.uid}, "status": self.current_status()}
        try:
            await self._context.api.merge_patch(_path(self.pod) + "/status", body)
        except ApiError as error:
            if error.status != 404:
                # 409 too: the API server gives up on a patch that keeps conflicting (the Job controller
                # patches the same pod's finalizers), and a pod recreated under the same name fails the
                # uid precondition until its old self's DELETED event ends this worker.
                logger.warning("status of pod %s not written: %s; retrying", pod_key(self.pod), error)
                return False
            logger.info("pod %s is gone (%s); its status is no longer written", pod_key(self.pod), error)
            self._gone = True
            self._progress.set()
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.warning("status of pod %s not written: %s; retrying", pod_key(self.pod), error)
            return False
        return True

    async def _delete_from_api(self) -> None:
        """Delete the finished pod with grace 0, only if it is still this uid."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        while True:
            await self._context.reachable.wait()
            try:
                await self._context.api.delete(_path(self.pod), body)
            except ApiError as error:
                if error.status in (404, 409):
                    return
                logger.warning("pod %s not deleted: %s; retrying", pod_key(self.pod), error)
            except (aiohttp.ClientError, TimeoutError) as error:
                logger.warning("pod %s not deleted: %s; retrying", pod_key(self.pod), error)
            else:
                return
            await asyncio.sleep(_WRITE_RETRY_SECONDS)


class PodManager:
    """Starts a worker for each pod bound to the node and feeds it the watch (a Reflector handler)."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context
        self.workers: dict[str, PodWorker] = {}
        self._by_name: dict[str, str] = {}
        self._background: set[asyncio.Task[None]] = set()

    def worker_for(self, namespace: str, name: str) -> PodWorker | None:
        """The worker of the pod called *name* in *namespace*, if it is on this node."""
        uid = self._by_name.get(f"{namespace}/{name}")
        return None if uid is None else self.workers.get(uid)

    def replace(self, objects: list[dict[str, Any]]) -> None:
        """A (re)list: start workers for new pods, forget the pods that are gone."""
        seen = set()
        for pod in objects:
            seen.add(str(pod["metadata"]["uid"]))
            self.event("MODIFIED", pod)
        for uid in set(self.workers) - seen:
            self._forget(uid)

    def event(self, kind: str, pod: dict[str, Any]) -> None:
        """One watch event for a pod bound to the node."""
        uid = str(pod["metadata"]["uid"])
        if kind == "DELETED":
            self._forget(uid)
            return
        worker = self.workers.get(uid)
        if worker is None:
            worker = PodWorker(pod, self._context)
            self.workers[uid] = worker
            self._by_name[pod_key(pod)] = uid
            worker.task = asyncio.get_running_loop().create_task(
                self._live(worker), name=f"pod {pod_key(pod)}"
            )
        worker.update(pod)

    async def _live(self, worker: PodWorker) -> None:
        try:
            await worker.live()
        except Exception:
            logger.exception("pod %s: the node agent failed to run it", pod_key(worker.pod))

    def _forget(self, uid: str) -> None:
        worker = self.workers.pop(uid, None)
        if worker is None:
            return
        if self._by_name.get(pod_key(worker.pod)) == uid:
            del self._by_name[pod_key(worker.pod)]
        worker.vanished()
        task = asyncio.get_running_loop().create_task(self._clean_up(worker))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _clean_up(self, worker: PodWorker) -> None:
        if worker.task is not None:
            await asyncio.gather(worker.task, return_exceptions=True)
        await asyncio.to_thread(shutil.rmtree, worker.workdir, True)

    async def stop(self) -> None:
        """Kill every pod's containers (SIGKILL, as the runner does when cancelled) and wait for the
        workers; statuses stay as last written."""
        workers = list(self.workers.values())
        for worker in workers:
            if worker.task is not None:
                worker.task.cancel()
        await asyncio.gather(*(w.task for w in workers if w.task is not None), return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
