"""The stuck-Job sweep with a fake API: which Jobs it ends, in which order, and what it leaves alone."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.outcome import Outcome, OutcomeKind
from tests.unit.test_refused import CREATED, POD_SECURITY, QUOTA_FULL, refusals
from tests.unit.test_refused import job as refused_job
from tests.unit.test_stuck import AFTER_INIT, GRACE, unschedulable_pod, waiting_run_pod
from watcher.completion import Recorder
from watcher.stuck_jobs import StuckJobSweep, owning_job

LATER = AFTER_INIT + GRACE + timedelta(seconds=1)


def job(name: str = "upper-abc", uid: str = "5b1f-job", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid}, "status": status}


class FakeApi:
    """Pending pods, Jobs by name, Events, and a log of the calls the sweep makes."""

    def __init__(
        self,
        pods: list[dict[str, Any]],
        jobs: list[dict[str, Any]],
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        self.pods = pods
        self.jobs = {j["metadata"]["name"]: j for j in jobs}
        self.events = events or []
        self.calls: list[tuple[str, str]] = []
        self.fail_delete: list[Exception] = []
        self.outcomes: list[Outcome | None] = []

    async def refused_job_events(self) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(e)
            for e in self.events
            if e["reason"] == "FailedCreate" and e["involvedObject"]["kind"] == "Job"
        ]

    async def job_events(self, uid: str) -> list[dict[str, Any]]:
        self.calls.append(("events", uid))
        return [copy.deepcopy(e) for e in self.events if e["involvedObject"]["uid"] == uid]

    async def pending_pods(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.pods)

    async def read_job(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.jobs.get(name))

    async def delete_job(self, name: str, uid: str) -> bool:
        self.calls.append(("delete", name))
        if self.fail_delete:
            raise self.fail_delete.pop(0)
        found = self.jobs.get(name)
        if found is None or found["metadata"]["uid"] != uid:
            return False
        del self.jobs[name]
        self.events = [e for e in self.events if e["involvedObject"]["uid"] != uid]
        self.pods = [p for p in self.pods if owning_job(p) != (name, uid)]
        return True


def sweep_over(api: FakeApi, now: datetime = LATER) -> StuckJobSweep:
    async def record(doc: Any, outcome: Outcome | None = None) -> bool:
        api.calls.append(("record", doc["metadata"]["name"]))
        api.outcomes.append(outcome)
        return True

    return StuckJobSweep(api, record, grace=GRACE.total_seconds(), interval=0.01, clock=lambda: now)


def secret_pod() -> dict[str, Any]:
    return waiting_run_pod("CreateContainerConfigError", 'secret "bucketrun-upper-secrets" not found')


async def test_a_stuck_pods_job_is_recorded_then_deleted() -> None:
    api = FakeApi([secret_pod()], [job()])
    sweep = sweep_over(api)
    assert await sweep.sweep() == 1
    assert api.calls == [("record", "upper-abc"), ("delete", "upper-abc")]
    assert api.jobs == {}
    assert await sweep.sweep() == 0  # nothing left to do
    assert (sweep.stats.sweeps, sweep.stats.ended) == (2, 1)


async def test_pods_within_the_grace_or_on_their_way_are_left_alone() -> None:
    creating = waiting_run_pod("ContainerCreating", "")
    api = FakeApi([secret_pod(), creating], [job()])
    assert await sweep_over(api, now=AFTER_INIT + GRACE - timedelta(seconds=1)).sweep() == 0
    assert api.calls == []


async def test_a_job_finished_meanwhile_replaced_or_gone_is_not_touched() -> None:
    finished = job(conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}])
    for jobs in ([finished], [job(uid="a-new-job-of-that-name")], []):
        api = FakeApi([secret_pod()], jobs)
        assert await sweep_over(api).sweep() == 0
        assert api.calls == []


async def test_a_failed_delete_is_tried_again_at_the_next_sweep_and_the_record_is_not_lost() -> None:
    # The record is written first: a delete that fails leaves a recorded Job, which the next sweep
    # deletes (the Recorder skips a Job already marked recorded, keyed on its UID).
    api = FakeApi([secret_pod()], [job()])
    api.fail_delete.append(TransientError("delete Job: HTTP 503", kind="api-5xx"))
    sweep = sweep_over(api)
    assert await sweep.sweep() == 0
    assert sweep.stats.failures == 1
    assert await sweep.sweep() == 1
    assert api.calls == [("record", "upper-abc"), ("delete", "upper-abc")] * 2
    assert api.jobs == {}


async def test_one_jobs_failure_does_not_stop_the_others() -> None:
    other = unschedulable_pod()
    other["metadata"]["ownerReferences"][0].update(name="other", uid="other-uid")
    api = FakeApi([secret_pod(), other], [job(), job("other", "other-uid")])
    api.fail_delete.append(TransientError("HTTP 500", kind="api-5xx"))
    assert await sweep_over(api, now=datetime(2026, 3, 2, tzinfo=UTC)).sweep() == 1
    assert list(api.jobs) == ["upper-abc"]


async def test_run_keeps_sweeping_through_failed_lists() -> None:
    api = FakeApi([secret_pod()], [job()])
    failures = [TransientError("list pods: HTTP 503", kind="api-5xx")]
    listing = api.pending_pods

    async def flaky() -> list[dict[str, Any]]:
        if failures:
            raise failures.pop()
        return await listing()

    api.pending_pods = flaky  # type: ignore[method-assign]
    sweep = sweep_over(api)
    await sweep.run(max_sweeps=2)
    assert (sweep.stats.sweeps, sweep.stats.failures, sweep.stats.ended) == (2, 1, 1)


def test_the_owning_job_comes_from_the_controller_reference_else_the_labels() -> None:
    pod = secret_pod()
    assert owning_job(pod) == ("upper-abc", "5b1f-job")
    del pod["metadata"]["ownerReferences"]
    assert owning_job(pod) == ("upper-abc", "5b1f-job")
    del pod["metadata"]["labels"]
    assert owning_job(pod) is None


def test_grace_and_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StuckJobSweep(FakeApi([], []), sweep_over(FakeApi([], []))._record, grace=0, interval=1)


# -- Jobs refused a pod: the FailedCreate Events ------------------------------------------------------


async def test_a_job_refused_a_pod_is_recorded_with_the_refusal_then_deleted() -> None:
    api = FakeApi([], [refused_job()], refusals(POD_SECURITY))
    sweep = sweep_over(api, now=CREATED + GRACE + timedelta(seconds=2))
    assert await sweep.sweep() == 1
    assert api.calls == [("events", "5b1f-job"), ("record", "image-user-abc"), ("delete", "image-user-abc")]
    (outcome,) = api.outcomes
    assert outcome is not None
    assert (outcome.kind.value, outcome.reason) == ("pod-create-refused", "FailedCreate")
    assert 'violates PodSecurity "restricted:latest"' in outcome.message
    assert await sweep.sweep() == 0
    assert sweep.stats.ended == 1


async def test_refused_jobs_left_alone_within_the_grace_waiting_on_quota_or_not_bucketrun() -> None:
    later = CREATED + timedelta(hours=1)
    foreign = refused_job()
    del foreign["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    for jobs, events, now in (
        ([refused_job()], refusals(POD_SECURITY), CREATED + GRACE),
        ([refused_job()], refusals(QUOTA_FULL), later),
        ([foreign], refusals(POD_SECURITY), later),
        ([refused_job(uid="a-new-job-of-that-name")], refusals(POD_SECURITY), later),
        ([], refusals(POD_SECURITY), later),
    ):
        api = FakeApi([], jobs, events)
        assert await sweep_over(api, now=now).sweep() == 0
        assert [call for call in api.calls if call[0] != "events"] == []


async def test_events_the_role_may_not_list_leave_the_stuck_pods_sweep_working() -> None:
    # An older Role without `list events`: the refused Jobs wait for their deadline, the rest goes on.
    api = FakeApi([secret_pod()], [job()], refusals(POD_SECURITY))

    async def forbidden() -> list[dict[str, Any]]:
        raise PermanentError(
            "list the FailedCreate Events of Jobs: HTTP 403 forbidden", reason="api-forbidden"
        )

    api.refused_job_events = forbidden  # type: ignore[method-assign]
    sweep = sweep_over(api, now=datetime(2026, 3, 2, tzinfo=UTC))
    assert await sweep.sweep() == 1
    assert api.calls == [("record", "upper-abc"), ("delete", "upper-abc")]
    assert sweep.stats.failures == 1


# -- the Recorder records an unfinished Job only while its pod shows it can never start ------------------


class FakeExecutor:
    """The executor's recording half: the Job's pods, no logs, the marks."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods_of_job = pods
        self.marked: list[str] = []

    async def job_pods(self, job: Any) -> list[dict[str, Any]]:
        return copy.deepcopy(self.pods_of_job)

    async def container_log(self, job: Any, pod: str, container: str, tail_lines: int) -> str | None:
        return None

    async def mark_recorded(self, job: Any) -> None:
        self.marked.append(job["metadata"]["uid"])


class FakeStore:
    prefix = "records/"

    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    async def read(self, service: str, name: str) -> None:
        return None

    async def read_outputs(self, service: str, name: str) -> None:
        return None

    async def write(self, record: dict[str, Any], logs: Any) -> None:
        self.written.append(record)


class FakeEvents:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, record: Any) -> None:
        self.published.append(record["uid"])


def recorder_for(pods: list[dict[str, Any]]) -> tuple[Recorder, FakeExecutor, FakeStore, FakeEvents]:
    executor, store, events = FakeExecutor(pods), FakeStore(), FakeEvents()
    return Recorder(executor, store, events, tail_lines=10), executor, store, events  # type: ignore[arg-type]


async def test_a_stuck_jobs_record_says_why_its_pod_never_started() -> None:
    recorder, executor, store, events = recorder_for([secret_pod()])
    assert await recorder.record(job())
    (record,) = store.written
    assert (record["outcome"], record["reason"]) == ("config-error", "CreateContainerConfigError")
    assert events.published == executor.marked == ["5b1f-job"]


async def test_a_refused_jobs_record_has_the_outcome_the_sweep_gives_it() -> None:
    recorder, executor, store, events = recorder_for([])
    outcome = Outcome(OutcomeKind.POD_CREATE_REFUSED, "FailedCreate", "Job upper-abc got no pod: ...", None)
    assert await recorder.record(job(), outcome)
    (record,) = store.written
    assert (record["outcome"], record["reason"], record["message"]) == (
        "pod-create-refused",
        "FailedCreate",
        "Job upper-abc got no pod: ...",
    )
    assert events.published == executor.marked == ["5b1f-job"]


async def test_an_unfinished_job_whose_pod_got_going_again_is_not_recorded() -> None:
    # The sweep decided on one listing; the Recorder reads the pods again: a pod that started meanwhile
    # (the Secret was created) must not get a record, nor then be deleted.
    recorder, executor, store, events = recorder_for([waiting_run_pod("ContainerCreating", "")])
    with pytest.raises(PermanentError) as raised:
        await recorder.record(job())
    assert raised.value.reason == "not-finished"
    assert (store.written, events.published, executor.marked) == ([], [], [])
