"""The Job controller: creates a Job's pods, counts how they end, retries, and finishes the Job.

Reacts to store events through a work queue of Job keys (as kube-controller-manager does); each
reconcile reads the Job and its pods (found by ownerReference), decides with `job_policy`, and
writes pods and Job status through the same `Objects` the HTTP API uses, so watchers see it all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.k8s_emulator import job_policy as policy
from tests.k8s_emulator.clock import parse_rfc3339, rfc3339
from tests.k8s_emulator.errors import ApiError
from tests.k8s_emulator.objects import BACKGROUND, FOREGROUND, DeleteOptions, Objects, clone
from tests.k8s_emulator.resources import JOBS, PODS
from tests.k8s_emulator.store import DELETED, WatchEvent

logger = logging.getLogger(__name__)

_BATCH = 50  # reconciles between yields to the event loop, so HTTP requests keep flowing


class PodKiller(Protocol):
    """What the controller needs from the kubelet: stop a pod, leaving it Failed with a reason."""

    def kill_pod(self, namespace: str, name: str, reason: str, message: str) -> None:
        """Stop the pod's containers (or fail it if it never started) with *reason*."""


@dataclass
class _Tracking:
    """What the controller remembers about one Job (by uid) between reconciles."""

    succeeded: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)
    policy_failure: policy.Failure | None = None
    failure: policy.Failure | None = None
    started: float | None = None
    finished: float | None = None
    killed: set[str] = field(default_factory=set)


@dataclass
class _Step:
    """One reconcile's working state: the Job as read, its live pods, and the status being built."""

    job: dict[str, Any]
    spec: dict[str, Any]
    tracking: _Tracking
    active: list[dict[str, Any]]
    status: dict[str, Any]
    now: str
    conditions: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conditions = list(self.status.get("conditions") or [])

    def condition(self, new: dict[str, Any]) -> None:
        """Set a condition (replacing the one of its type unless its status is unchanged)."""
        self.conditions = policy.with_condition(self.conditions, new)


def _controller_owner(obj: dict[str, Any]) -> dict[str, Any] | None:
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == "Job":
            return dict(ref)
    return None


class JobController:
    """Reconciles Jobs: pods, status counts, conditions, retries, deadline, suspension and TTL."""

    def __init__(self, objects: Objects, killer: PodKiller) -> None:
        self.objects = objects
        self.killer = killer
        self._dirty: dict[tuple[str, str], None] = {}
        self._wakeup = asyncio.Event()
        self._tracking: dict[str, _Tracking] = {}
        self._timers: dict[tuple[str, str, str], asyncio.TimerHandle] = {}
        self.reconciles = 0

    # -- event intake ----------------------------------------------------------------------------------

    def on_event(self, event: WatchEvent) -> None:
        """Store listener: queue the Job an event is about (a pod's controlling Job)."""
        if event.resource == JOBS.plural:
            meta = event.obj["metadata"]
            if event.type == DELETED:
                self._forget(meta["uid"], meta["namespace"], meta["name"])
                return
            self.enqueue(meta["namespace"], meta["name"])
        elif event.resource == PODS.plural:
            owner = _controller_owner(event.obj)
            if owner is not None:
                self.enqueue(event.obj["metadata"]["namespace"], owner["name"])

    def enqueue(self, namespace: str, name: str) -> None:
        """Ask for a reconcile of the Job namespace/name."""
        self._dirty[(namespace, name)] = None
        self._wakeup.set()

    def _later(self, namespace: str, name: str, why: str, delay: float) -> None:
        key = (namespace, name, why)
        if key in self._timers:
            return

        def fire() -> None:
            self._timers.pop(key, None)
            self.enqueue(namespace, name)

        self._timers[key] = asyncio.get_running_loop().call_later(max(delay, 0.0), fire)

    def _forget(self, uid: str, namespace: str, name: str) -> None:
        self._tracking.pop(uid, None)
        for key in [k for k in self._timers if k[:2] == (namespace, name)]:
            self._timers.pop(key).cancel()

    async def run(self) -> None:
        """Process the work queue forever (cancel to stop)."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            keys, self._dirty = list(self._dirty), {}
            for index, (namespace, name) in enumerate(keys):
                try:
                    self.reconcile(namespace, name)
                except Exception:
                    logger.exception("reconciling Job %s/%s failed", namespace, name)
                if index % _BATCH == _BATCH - 1:
                    await asyncio.sleep(0)

    def stop(self) -> None:
        """Cancel every pending timer."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # -- reconcile -------------------------------------------------------------------------------------

    def _pods_of(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        store = self.objects.store
        pods = []
        for plural, namespace, name in store.dependents(job["metadata"]["uid"]):
            if plural != PODS.plural:
                continue
            pod = store.get(plural, namespace, name)
            if pod is not None and (_controller_owner(pod) or {}).get("uid") == job["metadata"]["uid"]:
                pods.append(pod)
        return pods

    def reconcile(self, namespace: str, name: str) -> None:
        """Bring one Job's pods and status in line with its spec (idempotent)."""
        self.reconciles += 1
        job = self.objects.store.get(JOBS.plural, namespace, name)
        if job is None:
            return
        tracking = self._tracking.setdefault(job["metadata"]["uid"], _Tracking())
        pods = self._pods_of(job)
        if policy.is_finished(job):
            self._stop_active(pods, tracking, "JobFinished", "the Job has finished")
            self._expire_after_ttl(job, tracking)
            return
        spec = job.get("spec") or {}
        self._account(spec, pods, tracking)
        step = _Step(
            job=job,
            spec=spec,
            tracking=tracking,
            active=[
                p for p in pods if not policy.is_terminal(p) and not p["metadata"].get("deletionTimestamp")
            ],
            status=clone(job.get("status") or {}),
            now=rfc3339(),
        )
        if spec.get("suspend"):
            self._suspend(step)
            return
        active_seconds = self._start_clock(step)
        if tracking.failure is None:
            # The first reason sticks: pods killed for a deadline must not turn it into a backoff failure.
            tracking.failure = policy.failure_of(
                spec,
                failed=len(tracking.failed),
                policy_failure=tracking.policy_failure,
                active_seconds=active_seconds,
            )
        if tracking.failure is not None:
            self._fail(step, tracking.failure)
        elif policy.completed(spec, len(tracking.succeeded), len(step.active)):
            self._complete(step)
        else:
            self._progress(step, active_seconds)
        self._write_status(job, self._counted(step))

    def _suspend(self, step: _Step) -> None:
        """A suspended Job has no pods (running ones are deleted) and a Suspended condition."""
        for pod in step.active:
            self._delete_pod(pod)
        step.active = []
        if not policy.has_condition(step.job, "Suspended"):
            step.condition(policy.condition("Suspended", "JobSuspended", "Job suspended", step.now))
        self._write_status(step.job, self._counted(step))

    def _start_clock(self, step: _Step) -> float:
        """Set startTime (again after a resume, as Kubernetes does); seconds the Job has been active."""
        if policy.has_condition(step.job, "Suspended"):
            step.condition(
                {**policy.condition("Suspended", "JobResumed", "Job resumed", step.now), "status": "False"}
            )
            step.status.pop("startTime", None)
            step.tracking.started = None
        if not step.status.get("startTime"):
            step.status["startTime"] = step.now
            step.tracking.started = time.monotonic()
        elif step.tracking.started is None:
            elapsed = time.time() - parse_rfc3339(step.status["startTime"]).timestamp()
            step.tracking.started = time.monotonic() - max(elapsed, 0.0)
        return time.monotonic() - step.tracking.started

    def _fail(self, step: _Step, failure: policy.Failure) -> None:
        """FailureTarget at once; active pods are killed; Failed once none is left running."""
        step.condition(policy.condition("FailureTarget", failure.reason, failure.message, step.now))
        self._stop_active(step.active, step.tracking, failure.reason, failure.message)
        step.active = self._still_active(step.active)
        if not step.active:
            step.condition(policy.condition("Failed", failure.reason, failure.message, step.now))
            step.tracking.finished = time.monotonic()

    def _complete(self, step: _Step) -> None:
        """SuccessCriteriaMet and Complete, completionTime; leftover pods (parallelism) are stopped."""
        reason, message = policy.COMPLETIONS_REACHED, policy.MESSAGES[policy.COMPLETIONS_REACHED]
        self._stop_active(step.active, step.tracking, reason, message)
        step.active = []
        step.condition(policy.condition("SuccessCriteriaMet", reason, message, step.now))
        step.condition(policy.condition("Complete", reason, message, step.now))
        step.status["completionTime"] = step.now
        step.tracking.finished = time.monotonic()

    def _progress(self, step: _Step, active_seconds: float) -> None:
        """Create the pods still wanted and arm the deadline timer."""
        meta = step.job["metadata"]
        wanted = policy.pods_wanted(step.spec, len(step.tracking.succeeded), len(step.active))
        if wanted:  # at once: no back-off between a failed pod and its replacement (real one: 10 s and up)
            created = (self._create_pod(step.job) for _ in range(wanted))
            step.active += [pod for pod in created if pod is not None]
        deadline = step.spec.get("activeDeadlineSeconds")
        if deadline is not None:
            self._later(meta["namespace"], meta["name"], "deadline", float(deadline) - active_seconds)

    # -- pieces of a reconcile -------------------------------------------------------------------------

    def _account(self, spec: dict[str, Any], pods: list[dict[str, Any]], tracking: _Tracking) -> None:
        """Count newly terminated pods once each, applying the pod failure policy to failures."""
        for pod in pods:
            uid = pod["metadata"]["uid"]
            phase = policy.pod_phase(pod)
            if uid in tracking.succeeded or uid in tracking.failed or uid in tracking.ignored:
                continue
            if phase == "Succeeded":
                tracking.succeeded.add(uid)
            elif phase == "Failed":
                match = policy.match_pod_failure_policy(spec.get("podFailurePolicy"), pod)
                if match is not None and match.action == policy.IGNORE:
                    tracking.ignored.add(uid)
                    continue
                tracking.failed.add(uid)
                if match is not None and match.action == policy.FAIL_JOB and tracking.policy_failure is None:
                    tracking.policy_failure = policy.Failure(policy.POD_FAILURE_POLICY, match.message)

    def _still_active(self, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        store = self.objects.store
        current = (store.get(PODS.plural, p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods)
        return [p for p in current if p is not None and not policy.is_terminal(p)]

    @staticmethod
    def _counted(step: _Step) -> dict[str, Any]:
        """The status to write: counts from the tracking, active/ready from the live pods, conditions."""
        dropped = ("active", "succeeded", "failed", "ready", "conditions")
        new = {k: v for k, v in step.status.items() if k not in dropped}
        if step.active:
            new["active"] = len(step.active)
        new["ready"] = sum(1 for pod in step.active if policy.is_ready(pod))
        if step.tracking.succeeded:
            new["succeeded"] = len(step.tracking.succeeded)
        if step.tracking.failed:
            new["failed"] = len(step.tracking.failed)
        if step.conditions:
            new["conditions"] = step.conditions
        new.setdefault("uncountedTerminatedPods", {})
        return new

    def _write_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        if status == job.get("status"):
            return
        uid = job["metadata"]["uid"]

        def set_status(obj: dict[str, Any]) -> None:
            if obj["metadata"]["uid"] == uid:
                obj["status"] = status

        self.objects.mutate(JOBS, job["metadata"]["namespace"], job["metadata"]["name"], set_status)

    def _create_pod(self, job: dict[str, Any]) -> dict[str, Any] | None:
        meta = job["metadata"]
        template = clone((job.get("spec") or {}).get("template") or {})
        template_meta = template.get("metadata") or {}
        pod_meta: dict[str, Any] = {
            "generateName": f"{meta['name']}-",
            "namespace": meta["namespace"],
            "labels": template_meta.get("labels") or {},
            "ownerReferences": [
                {
                    "apiVersion": JOBS.api_version,
                    "kind": JOBS.kind,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        if template_meta.get("annotations"):
            pod_meta["annotations"] = template_meta["annotations"]
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec") or {}}
        try:
            return self.objects.create(PODS, meta["namespace"], body)
        except ApiError as error:
            logger.warning(
                "Job %s/%s: cannot create its pod: %s", meta["namespace"], meta["name"], error.message
            )
            return None

    def _stop_active(
        self, pods: list[dict[str, Any]], tracking: _Tracking, reason: str, message: str
    ) -> None:
        for pod in pods:
            pod_meta = pod["metadata"]
            if policy.is_terminal(pod) or pod_meta["uid"] in tracking.killed:
                continue
            tracking.killed.add(pod_meta["uid"])
            self.killer.kill_pod(pod_meta["namespace"], pod_meta["name"], reason, message)

    def _delete_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self.objects.delete(
                PODS, meta["namespace"], meta["name"], DeleteOptions(BACKGROUND, uid=meta["uid"])
            )
        except ApiError as error:
            logger.debug("pod %s/%s already gone: %s", meta["namespace"], meta["name"], error.message)

    def _expire_after_ttl(self, job: dict[str, Any], tracking: _Tracking) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        meta = job["metadata"]
        if tracking.finished is None:
            stamp = policy.finished_at(job)
            elapsed = time.time() - parse_rfc3339(stamp).timestamp() if stamp else 0.0
            tracking.finished = time.monotonic() - max(elapsed, 0.0)
        remaining = tracking.finished + float(ttl) - time.monotonic()
        if remaining > 0:
            self._later(meta["namespace"], meta["name"], "ttl", remaining)
            return
        try:
            # The TTL controller deletes in the foreground: pods first, then the Job.
            self.objects.delete(
                JOBS, meta["namespace"], meta["name"], DeleteOptions(FOREGROUND, uid=meta["uid"])
            )
        except ApiError as error:
            logger.debug("TTL delete of Job %s/%s: %s", meta["namespace"], meta["name"], error.message)
