"""Both executors run the same Job dict with the same results; the local one's own guarantees.

`ExecutorContract` holds the scenarios every executor must pass; `TestKubernetesExecutor` (the emulator
with its kubelet running real processes) and `TestLocalExecutor` (a temporary state directory) run them.
The Jobs are small hand-written ones: the bucketrun stager is not needed to test where Jobs run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - reads Job and pod status straight from the API

from dispatcher.adapters.kube import KubeApi
from dispatcher.domain.constants import LABEL_JOB_CONTROLLER_UID, LABEL_MANAGED_BY, LABEL_SERVICE, MANAGED_BY
from dispatcher.domain.errors import PermanentError
from dispatcher.domain.jobs import finished_condition
from dispatcher.executors import CreateOutcome, Executor
from dispatcher.executors.kubernetes import KubernetesExecutor
from dispatcher.executors.local.executor import LocalExecutor
from dispatcher.runtime.ratelimit import TokenBucket
from tests.emulator.helpers import job_pods, wait_for, watch_job_until_finished

pytestmark = pytest.mark.integration

WITHIN = 30.0
BACKOFF_WITHIN = 90.0
"""For a Job that fails 3 times: a real Job controller waits 10 s, then 20 s, before the next pod."""


def job(
    name: str,
    script: str,
    *,
    service: str = "svc",
    backoff_limit: int = 0,
    config: bool = False,
    extra_volumes: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Job running `sh -c script` with an emptyDir at $OUT (and, with *config*, CONFIG_MAP at /config)."""
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SERVICE: service}
    mounts = [{"name": "out", "mountPath": "/out"}]
    volumes: list[dict[str, Any]] = [{"name": "out", "emptyDir": {}}]
    if config:
        mounts.append({"name": "config", "mountPath": "/config"})
        volumes.append({"name": "config", "configMap": {"name": "svc-config"}})
    for volume in extra_volumes or []:
        volumes.append(volume)
        mounts.append({"name": volume["name"], "mountPath": f"/{volume['name']}"})
    container = {
        "name": "main",
        "image": "busybox:1.36",
        "command": ["sh", "-c", script],
        "env": [
            {"name": "OUT", "value": "/out"},
            {
                "name": "JOB_UUID",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{LABEL_JOB_CONTROLLER_UID}']"}},
            },
        ],
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes},
            },
            **spec,
        },
    }


CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "svc-config", "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
    "immutable": True,
    "data": {"greeting": "hello from the config map"},
}


@dataclass(frozen=True)
class Ended:
    """How a Job ended, as read back from wherever it ran."""

    condition: str
    reason: str
    exit_codes: list[int]
    """The main container's exit code in each pod, in creation order."""
    job: dict[str, Any]


class ExecutorContract:
    """Scenarios every executor passes; subclasses provide the `harness` fixture."""

    async def test_a_failing_pod_fails_the_job_with_its_exit_code(self, harness):
        executor = harness.executor
        await executor.ensure_config_map(CONFIG_MAP)
        failing = job("fails", 'echo hi > "$OUT/x"; cat /config/greeting; exit 3', config=True)
        assert await executor.create_job(failing) is CreateOutcome.CREATED
        assert executor.active_jobs("svc") == 1
        ended = await harness.ended("fails")
        assert (ended.condition, ended.reason) == ("Failed", "BackoffLimitExceeded")
        assert ended.exit_codes == [3]
        assert ended.job["status"]["failed"] == 1
        await _until_count(executor, "svc", 0)

    async def test_a_succeeding_pod_completes_the_job(self, harness):
        executor = harness.executor
        await executor.ensure_config_map(CONFIG_MAP)
        script = 'test -n "$JOB_UUID" && grep -q hello /config/greeting && echo ok > "$OUT/x"'
        assert await executor.create_job(job("succeeds", script, config=True)) is CreateOutcome.CREATED
        ended = await harness.ended("succeeds")
        assert (ended.condition, ended.reason) == ("Complete", "CompletionsReached")
        assert ended.exit_codes == [0]
        assert ended.job["status"]["succeeded"] == 1
        assert ended.job["status"].get("completionTime")
        assert await executor.create_job(job("succeeds", "exit 1")) is CreateOutcome.EXISTS
        assert await executor.ready() is True

    async def test_backoff_limit_starts_new_pods_and_the_deadline_kills(self, harness):
        executor = harness.executor
        await executor.ensure_config_map(CONFIG_MAP)
        await executor.create_job(job("retried", "exit 7", backoff_limit=2))
        await executor.create_job(job("too-slow", "sleep 30", activeDeadlineSeconds=1))
        retried = await harness.ended("retried", within=BACKOFF_WITHIN)
        assert (retried.condition, retried.reason) == ("Failed", "BackoffLimitExceeded")
        assert retried.exit_codes == [7, 7, 7]
        assert retried.job["status"]["failed"] == 3
        slow = await harness.ended("too-slow")
        assert (slow.condition, slow.reason) == ("Failed", "DeadlineExceeded")


async def _until_count(executor: Executor, service: str, count: int) -> None:
    async with asyncio.timeout(WITHIN):
        await executor.wait_until(lambda: executor.active_jobs(service) == count)


# -- Kubernetes (emulator with its kubelet running processes, or a real cluster) ----------------------


@dataclass
class KubernetesHarness:
    executor: KubernetesExecutor
    api: client.ApiClient
    namespace: str

    async def ended(self, name: str, within: float = WITHIN) -> Ended:
        raw, _events = await watch_job_until_finished(self.api, self.namespace, name, within=within)
        pods = await job_pods(self.api, self.namespace, name)
        pods.sort(key=lambda pod: pod["metadata"]["creationTimestamp"])
        return Ended(finished_condition(raw) or "", _reason(raw), _exit_codes(pods), raw)


class TestKubernetesExecutor(ExecutorContract):
    @pytest.fixture
    async def harness(self, kube, kube_api) -> AsyncIterator[KubernetesHarness]:
        if kube.control is not None:
            kube.control.set_kubelet("run")
        api = await KubeApi.connect(kube.namespace, kubeconfig=kube.kubeconfig, request_timeout=5.0)
        executor = KubernetesExecutor(api, TokenBucket(50, 50), sync_timeout=WITHIN)
        await executor.start()
        try:
            yield KubernetesHarness(executor, kube_api, kube.namespace)
        finally:
            await executor.close()


# -- local ---------------------------------------------------------------------------------------------


@dataclass
class LocalHarness:
    executor: LocalExecutor

    async def ended(self, name: str, within: float = WITHIN) -> Ended:
        async with asyncio.timeout(within):
            await self.executor.wait_until(lambda: _finished(self.executor, name))
        record = self.executor.job_status(name)
        assert record is not None
        raw = record["job"]
        return Ended(finished_condition(raw) or "", _reason(raw), _exit_codes(record["pods"]), raw)


def _finished(executor: LocalExecutor, name: str) -> bool:
    record = executor.job_status(name)
    return record is not None and finished_condition(record["job"]) is not None


@pytest.fixture
async def local(tmp_path) -> AsyncIterator[LocalExecutor]:
    executor = LocalExecutor(tmp_path / "state", max_running=4, grace_seconds=0.5)
    await executor.start()
    try:
        yield executor
    finally:
        await executor.close()


class TestLocalExecutor(ExecutorContract):
    @pytest.fixture
    async def harness(self, local) -> LocalHarness:
        return LocalHarness(local)

    async def test_the_pod_gets_the_job_controller_s_name_labels_and_volumes(self, local, tmp_path):
        await local.ensure_config_map(CONFIG_MAP)
        script = 'echo "$JOB_UUID" > "$OUT/uid"; cp "$OUT/uid" /keep/uid; echo hi > "$OUT/x"; exit 3'
        keep = {"name": "keep", "hostPath": {"path": str(tmp_path)}}
        await local.create_job(job("shaped", script, extra_volumes=[keep]))
        ended = await LocalHarness(local).ended("shaped")
        record = local.job_status("shaped")
        pod = record["pods"][0]
        assert pod["metadata"]["name"].startswith("shaped-")
        assert len(pod["metadata"]["name"]) == len("shaped-") + 5
        uid = ended.job["metadata"]["uid"]
        assert (tmp_path / "uid").read_text().strip() == uid
        main = pod["status"]["containerStatuses"][0]
        assert main["state"]["terminated"]["exitCode"] == 3
        assert main["state"]["terminated"]["reason"] == "Error"
        out = local.state_dir / "jobs" / "shaped" / "pods" / pod["metadata"]["name"] / "volumes" / "out"
        assert (out / "x").read_text() == "hi\n"
        conditions = [c["type"] for c in ended.job["status"]["conditions"]]
        assert conditions == ["FailureTarget", "Failed"]
        assert ended.job["status"]["startTime"]
        assert "active" not in ended.job["status"]
        on_disk = (local.state_dir / "jobs" / "shaped" / "status.json").read_text()
        assert '"BackoffLimitExceeded"' in on_disk

    async def test_the_same_name_is_created_once_even_after_a_restart(self, tmp_path):
        state = tmp_path / "state"
        first = LocalExecutor(state, max_running=2, grace_seconds=0.5)
        await first.start()
        second = LocalExecutor(state, max_running=2)
        with pytest.raises(RuntimeError, match="in use"):
            await second.start()
        results = await asyncio.gather(*(first.create_job(job("once", "exit 0")) for _ in range(5)))
        assert sorted(r.value for r in results) == ["created"] + ["exists"] * 4
        await LocalHarness(first).ended("once")
        await first.close()

        restarted = LocalExecutor(state, max_running=2)
        await restarted.start()
        try:
            assert restarted.recovered == ()
            assert await restarted.create_job(job("once", "exit 0")) is CreateOutcome.EXISTS
            assert restarted.active_jobs("svc") == 0
            assert finished_condition(restarted.job_status("once")["job"]) == "Complete"
        finally:
            await restarted.close()

    async def test_unfinished_jobs_run_again_after_a_restart(self, tmp_path):
        state, marker = tmp_path / "state", tmp_path / "marker"
        # First run: leaves a marker and hangs; second run (after the restart): sees it and succeeds.
        script = "if [ -e /mark/started ]; then exit 0; fi; touch /mark/started; exec sleep 60"
        mark = {"name": "mark", "hostPath": {"path": str(marker)}}
        marker.mkdir()
        first = LocalExecutor(state, max_running=1, grace_seconds=0.2)
        await first.start()
        await first.ensure_config_map(CONFIG_MAP)  # the restarted executor still has it, from disk
        await first.create_job(job("interrupted", script, config=True, extra_volumes=[mark]))
        await first.create_job(job("queued", "exit 0"))  # waits behind it for the single slot
        await wait_for(_exists(marker / "started"), within=WITHIN, what="the pod to start")
        assert first.active_jobs("svc") == 2
        assert first.job_status("queued")["pods"][0]["status"]["phase"] == "Pending"
        await first.close()

        second = LocalExecutor(state, max_running=1)
        await second.start()
        try:
            assert second.recovered == ("interrupted", "queued")
            assert second.active_jobs("svc") == 2
            for name in second.recovered:
                ended = await LocalHarness(second).ended(name)
                assert ended.condition == "Complete", name
            record = second.job_status("interrupted")
            first_pod, second_pod = record["pods"]
            assert first_pod["status"]["phase"] == "Failed"
            assert first_pod["status"]["reason"] == "ExecutorRestarted"
            assert first_pod["status"]["conditions"][0]["type"] == "DisruptionTarget"
            assert second_pod["status"]["phase"] == "Succeeded"
            assert "failed" not in record["job"]["status"]  # the interruption is not the script's failure
            assert len(second.job_status("queued")["pods"]) == 1
        finally:
            await second.close()

    async def test_finished_yields_each_job_once_and_ends_on_close(self, tmp_path):
        executor = LocalExecutor(tmp_path / "state", max_running=2)
        await executor.start()
        names = [f"note-{i}" for i in range(4)]
        for index, name in enumerate(names):
            await executor.create_job(job(name, f"exit {index % 2}"))
        await executor.create_job(job(names[0], "exit 0"))  # EXISTS: no second run, no second note
        seen: list[tuple[str, str | None]] = []
        notes = executor.finished()
        async with asyncio.timeout(WITHIN):
            async for name, record in notes:
                seen.append((name, finished_condition(record["job"])))
                if len(seen) == len(names):
                    break
        await executor.close()
        assert [item async for item in notes] == []
        assert sorted(seen) == [
            ("note-0", "Complete"),
            ("note-1", "Failed"),
            ("note-2", "Complete"),
            ("note-3", "Failed"),
        ]

    async def test_finished_jobs_not_marked_recorded_are_handed_out_again_after_a_restart(self, tmp_path):
        state = tmp_path / "state"
        first = LocalExecutor(state, max_running=2)
        await first.start()
        for name in ("kept", "marked"):
            await first.create_job(job(name, "exit 0"))
        jobs: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(WITHIN):
            async for name, record in first.finished():
                jobs[name] = record["job"]
                if len(jobs) == 2:
                    break
        seen = {name: job_doc["metadata"]["uid"] for name, job_doc in jobs.items()}
        await first.mark_recorded(jobs["marked"])
        another = {**jobs["kept"], "metadata": {**jobs["kept"]["metadata"], "uid": "the-uid-of-another-job"}}
        await first.mark_recorded(another)  # not this Job: no mark
        await first.close()  # what is on disk is all a SIGKILLed process leaves: the marks are flushed

        second = LocalExecutor(state, max_running=2)
        await second.start()
        try:
            assert second.unrecorded == ("kept",)
            notes = second.finished()
            async with asyncio.timeout(WITHIN):
                name, record = await anext(notes)
            assert (name, record["job"]["metadata"]["uid"]) == ("kept", seen["kept"])
            await second.mark_recorded(record["job"])
        finally:
            await second.close()
        assert [item async for item in notes] == []

        third = LocalExecutor(state, max_running=2)
        await third.start()
        try:
            assert third.unrecorded == ()
            assert third.job_status("kept")["job"]["metadata"]["annotations"] == {
                "bucketrun.io/recorded": seen["kept"]
            }
        finally:
            await third.close()

    async def test_at_most_max_running_pods_run_and_the_others_wait_in_order(self, tmp_path):
        gate = tmp_path / "gate"
        gate.mkdir()
        executor = LocalExecutor(tmp_path / "state", max_running=1)
        await executor.start()
        try:
            wait_gate = 'while [ ! -e /gate/open ]; do sleep 0.02; done; date +%s%N > "/gate/$JOB_NAME"'
            volume = {"name": "gate", "hostPath": {"path": str(gate)}}
            for index in range(3):
                spec = job(f"queued-{index}", wait_gate, extra_volumes=[volume])
                spec["spec"]["template"]["spec"]["containers"][0]["env"].append(
                    {"name": "JOB_NAME", "value": f"queued-{index}"}
                )
                await executor.create_job(spec)
            assert executor.active_jobs("svc") == 3
            phases = [executor.job_status(f"queued-{i}")["pods"][0]["status"]["phase"] for i in range(3)]
            assert phases[1:] == ["Pending", "Pending"]
            (gate / "open").touch()
            await _until_count(executor, "svc", 0)
            finished_at = [int((gate / f"queued-{i}").read_text()) for i in range(3)]
            assert finished_at == sorted(finished_at)
        finally:
            await executor.close()

    async def test_invalid_jobs_are_refused_permanently(self, local):
        broken = job("broken", "exit 0")
        broken["spec"]["template"]["spec"]["restartPolicy"] = "Always"
        with pytest.raises(PermanentError, match="restartPolicy") as refused:
            await local.create_job(broken)
        assert refused.value.reason == "invalid-manifest"
        with pytest.raises(PermanentError, match="suspend"):
            await local.create_job(job("suspended", "exit 0", suspend=True))
        nameless = job("x", "exit 0")
        del nameless["metadata"]["name"]
        with pytest.raises(PermanentError, match=r"metadata\.name"):
            await local.create_job(nameless)
        assert not list((local.state_dir / "jobs").iterdir())


def _exists(path):
    async def check() -> bool | None:
        return path.exists() or None

    return check


def _reason(job_doc: dict[str, Any]) -> str:
    condition = finished_condition(job_doc)
    for entry in job_doc["status"].get("conditions") or []:
        if entry["type"] == condition:
            return str(entry.get("reason"))
    return ""


def _exit_codes(pods: list[dict[str, Any]]) -> list[int]:
    codes = []
    for pod in pods:
        for status in pod["status"].get("containerStatuses") or []:
            terminated = status["state"].get("terminated")
            if status["name"] == "main" and terminated:
                codes.append(terminated["exitCode"])
    return codes
