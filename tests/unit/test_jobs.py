"""JobIndex: per-service counts of unfinished Jobs from observations, lists and local creations."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.domain.constants import LABEL_SERVICE
from dispatcher.domain.jobs import JobEntry, JobFacts, JobIndex, finished_condition, job_service


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def job(name: str, service: str | None = "a", *conditions: tuple[str, str]) -> dict:
    labels = {LABEL_SERVICE: service} if service else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": [{"type": kind, "status": status} for kind, status in conditions]},
    }


def facts(name: str, service: str | None = "a", *, finished: bool = False) -> JobFacts:
    return JobFacts(name, service, finished)


def test_only_a_true_complete_or_failed_condition_finishes_a_job():
    assert finished_condition(job("x")) is None
    assert finished_condition(job("x", "a", ("Suspended", "True"))) is None
    assert finished_condition(job("x", "a", ("FailureTarget", "True"))) is None
    assert finished_condition(job("x", "a", ("Complete", "False"))) is None
    assert (
        finished_condition(job("x", "a", ("SuccessCriteriaMet", "True"), ("Complete", "True"))) == "Complete"
    )
    assert finished_condition(job("x", "a", ("FailureTarget", "True"), ("Failed", "True"))) == "Failed"
    assert job_service(job("x", None)) is None
    assert JobFacts.of(job("x", "b", ("Failed", "True"))) == JobFacts("x", "b", True)


def test_observations_move_counts_between_services_and_states():
    index = JobIndex()
    index.observe(facts("j1"))
    index.observe(facts("j2"))
    index.observe(facts("j3", "b"))
    assert (index.active("a"), index.active("b")) == (2, 1)
    index.observe(facts("j1"))  # the same state again changes nothing
    index.observe(facts("j1", finished=True))
    assert index.active("a") == 1
    index.observe(facts("j1", finished=True))
    assert index.active("a") == 1
    index.forget("j2")
    index.forget("never-seen")
    assert (index.active("a"), index.active("b")) == (0, 1)
    index.observe(facts("j3", None))  # lost its service label: no longer ours
    assert (index.active("a"), index.active("b")) == (0, 0)
    assert len(index) == 1


def test_a_job_noted_as_created_counts_once_until_and_after_it_is_observed():
    index = JobIndex()
    index.note_created("a", "new")
    index.note_created("a", "new")
    assert index.active("a") == 1
    assert index.entry("new") is not None
    index.observe(facts("new"))
    assert index.active("a") == 1
    index.note_created("a", "new")  # already observed: nothing to add
    assert index.active("a") == 1
    index.observe(facts("new", finished=True))
    assert index.active("a") == 0


def test_a_new_list_keeps_only_the_noted_jobs_it_could_not_have_seen():
    clock = Clock()
    index = JobIndex(clock)
    index.observe(facts("gone"))
    index.note_created("a", "noted-early")  # at t=0, deleted before the list
    clock.now = 5.0
    listing = index.listing()
    clock.now = 6.0
    index.note_created("a", "noted-late")  # after the list was requested: it may be newer
    index.note_created("a", "listed")
    for listed in (facts("listed"), facts("done", finished=True), facts("other", None)):
        listing.add(listed)
    index.install(listing)
    assert index.active("a") == 2  # listed + noted-late
    assert index.entry("gone") is None
    assert index.entry("noted-early") is None
    assert index.entry("noted-late") is not None
    assert index.entry("done").finished is True
    assert index.entry("other") is None


async def test_wait_until_wakes_on_the_change_that_makes_the_predicate_true():
    index = JobIndex()
    index.observe(facts("j1"))
    index.observe(facts("j2"))
    waiter = asyncio.create_task(index.wait_until(lambda: index.active("a") == 0))
    await asyncio.sleep(0)
    index.observe(facts("j1", finished=True))
    await asyncio.sleep(0)
    assert not waiter.done()
    index.forget("j2")
    async with asyncio.timeout(1):
        await waiter


@pytest.mark.parametrize("service", ["a", "b"])
async def test_wait_until_returns_at_once_when_already_true(service):
    async with asyncio.timeout(1):
        await JobIndex().wait_until(lambda: JobIndex().active(service) == 0)


def test_counts_name_the_services_with_unfinished_jobs_and_clear_forgets_pending_ones_too():
    index = JobIndex()
    index.observe(facts("j1"))
    index.observe(facts("j2", "b"))
    index.observe(facts("j2", "b", finished=True))
    index.note_created("c", "j3")
    assert index.counts() == {"a": 1, "c": 1}
    index.clear()
    assert (index.counts(), len(index), index.entry("j3")) == ({}, 0, None)
    index.observe(facts("j3", "c"))  # the name noted before the clear is an ordinary Job afterwards
    assert index.counts() == {"c": 1}


async def test_clear_wakes_a_waiter_held_by_a_count():
    index = JobIndex()
    index.observe(facts("j1"))
    waiter = asyncio.create_task(index.wait_until(lambda: index.active("a") < 1))
    await asyncio.sleep(0)
    assert not waiter.done()
    index.clear()
    async with asyncio.timeout(1):
        await waiter


def test_jobs_of_one_service_and_state_share_one_entry_and_a_new_list_brings_its_own() -> None:
    index = JobIndex()
    listing = index.listing()
    for name in ("a-1", "a-2"):
        listing.add(facts(name))
    listing.add(facts("b-1", "b"))
    index.install(listing)
    index.observe(facts("a-3"))
    assert index.entry("a-1") is index.entry("a-2") is index.entry("a-3")
    assert index.entry("b-1") is not index.entry("a-1")
    assert index.counts() == {"a": 3, "b": 1}
    index.observe(facts("a-1", finished=True))
    assert index.entry("a-1") == JobEntry("a", finished=True)
    assert index.active("a") == 2
    # The next list replaces the entries with its own: services gone from the cluster are not kept.
    relist = index.listing()
    relist.add(facts("a-2"))
    index.install(relist)
    assert index.counts() == {"a": 1}
    assert list(relist.pool) == [("a", False)]
