"""What bucketrun knows about its Jobs wherever they run: the outcome of creating one, and which are active.

Shared by both executors (``dispatcher.executors``) and the cluster adapter (``dispatcher.adapters.kube``);
pure, no I/O. ``JobIndex`` keeps one small entry per Job (its service and whether it finished), not
the objects, so counting 50,000 Jobs costs a few megabytes.
"""

from __future__ import annotations

import asyncio
import enum
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from dispatcher.domain import kube
from dispatcher.domain.constants import ANNOTATION_RECORDED, LABEL_SERVICE

FINISHED_CONDITIONS: Final = frozenset({"Complete", "Failed"})
"""Job condition types after which the Job controller never starts another pod."""


class CreateOutcome(enum.Enum):
    """What creating a Job did. "Already exists" is an outcome, not an error: names are idempotent."""

    CREATED = "created"
    EXISTS = "exists"


def is_recorded(job: Mapping[str, Any]) -> bool:
    """True when the Job carries the recorded annotation with its own UID (a re-created Job of the
    same name does not inherit its predecessor's mark)."""
    uid = kube.uid(job)
    return bool(uid) and kube.annotations(job).get(ANNOTATION_RECORDED) == uid


def job_service(job: Mapping[str, Any]) -> str | None:
    """The bucketrun service a Job runs (its ``bucketrun.io/service`` label), or None for other Jobs."""
    service = kube.labels(job).get(LABEL_SERVICE)
    return service if isinstance(service, str) and service else None


def api_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp of a Kubernetes document (``2026-01-02T03:04:05Z``) as an aware datetime
    (naive = UTC); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def finished_condition(job: Mapping[str, Any]) -> str | None:
    """``"Complete"`` or ``"Failed"`` when the Job has that condition with status True, else None.

    A suspended Job (Kueue has not admitted it yet) and one whose pods are still being stopped
    (``FailureTarget`` without ``Failed``) are not finished: they still hold their place.
    """
    for condition in kube.conditions(job):
        if condition.get("type") in FINISHED_CONDITIONS and condition.get("status") == "True":
            return str(condition["type"])
    return None


@dataclass(frozen=True, slots=True)
class JobFacts:
    """The little the index needs of one Job document, extracted as soon as the document arrives."""

    name: str
    service: str | None
    """None for Jobs that are not bucketrun's (no service label): the index ignores them."""
    finished: bool

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> JobFacts:
        """The facts of a Job document (as listed, watched or written by the local executor)."""
        return cls(kube.name(job), job_service(job), finished_condition(job) is not None)


@dataclass(frozen=True, slots=True)
class JobEntry:
    """What the index keeps of one Job: one shared object per (service, finished) value (``_shared``)."""

    service: str
    finished: bool


EntryPool = dict[tuple[str, bool], JobEntry]


def _shared(pool: EntryPool, service: str, finished: bool) -> JobEntry:
    """The pool's entry for (*service*, *finished*), made once: a Job costs its name and a dict slot."""
    entry = pool.get((service, finished))
    if entry is None:
        entry = pool[(service, finished)] = JobEntry(sys.intern(service), finished)
    return entry


class JobListing:
    """A complete list of Jobs taken in page by page (``add``), for ``JobIndex.install``.

    Only each Job's name and a shared entry are kept as the pages arrive, so the pages' documents and
    their facts can go at once: a relist holds no second list of the Jobs (bench/README.md, "Memory on
    the real stack", has what that saves at 50,000 Jobs).
    """

    def __init__(self, listed_at: float) -> None:
        self.listed_at = listed_at
        self.jobs: dict[str, JobEntry] = {}
        self.pool: EntryPool = {}

    def add(self, facts: JobFacts) -> None:
        """Take in one listed Job (one without a service is not bucketrun's: ignored)."""
        if facts.service is not None:
            self.jobs[facts.name] = _shared(self.pool, facts.service, facts.finished)


class JobIndex:
    """Per-Job (service, finished) facts and the count of unfinished Jobs per service.

    Fed by whoever observes the Jobs (the informer of the cluster adapter, the local executor); read
    with ``active(service)`` in O(1). Jobs this process has just created but not yet observed are held
    as *pending* (``note_created``) so they count at once; an observation of the same name replaces
    them. ``install`` puts a fresh list (``listing``) in place and keeps only the pending Jobs the list
    could not have seen (noted after the list was requested).

    ``wait_until(predicate)`` lets a caller sleep until the counts change in a way it cares about.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._observed: dict[str, JobEntry] = {}
        self._pool: EntryPool = {}
        self._pending: dict[str, tuple[str, float]] = {}
        self._active: Counter[str] = Counter()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        """Jobs known, observed or pending."""
        return len(self._observed) + len(self._pending)

    def listing(self) -> JobListing:
        """An empty list stamped with the index's clock: make it just before requesting the first page."""
        return JobListing(self._clock())

    def active(self, service: str) -> int:
        """Jobs of ``service`` not finished yet (observed or just created)."""
        return self._active[service]

    def entry(self, name: str) -> JobEntry | None:
        """What the index knows of Job ``name`` (a pending Job counts as unfinished)."""
        if name in self._observed:
            return self._observed[name]
        if name in self._pending:
            return JobEntry(self._pending[name][0], finished=False)
        return None

    def note_created(self, service: str, name: str) -> None:
        """Count Job ``name`` of ``service`` as active now, before any observation reports it."""
        if name in self._observed or name in self._pending:
            return
        self._pending[name] = (sys.intern(service), self._clock())
        self._active[service] += 1
        self._notify()

    def observe(self, facts: JobFacts) -> None:
        """Record the current state of a Job (one without a service is not bucketrun's: ignored)."""
        name, service, finished = facts.name, facts.service, facts.finished
        self._drop_pending(name)
        previous = self._observed.get(name)
        if service is None:
            if previous is not None:
                self._forget(name)
            return
        entry = _shared(self._pool, service, finished)
        if previous == entry:
            return
        if previous is not None and not previous.finished:
            self._active[previous.service] -= 1
        self._observed[name] = entry
        if not finished:
            self._active[entry.service] += 1
        self._notify()

    def forget(self, name: str) -> None:
        """Job ``name`` was deleted: it no longer counts."""
        self._drop_pending(name)
        self._forget(name)

    def install(self, listing: JobListing) -> None:
        """Put a complete list in place of what was observed (the listing is the index's from then on).

        Pending Jobs noted before the list was requested and missing from it were deleted meanwhile and
        are dropped; those noted later may simply be newer than the list and stay pending.
        """
        self._observed, self._pool = listing.jobs, listing.pool
        self._active = Counter(entry.service for entry in self._observed.values() if not entry.finished)
        for name, (service, noted_at) in list(self._pending.items()):
            if name in self._observed or noted_at < listing.listed_at:
                del self._pending[name]
            else:
                self._active[service] += 1
        self._notify()

    def counts(self) -> dict[str, int]:
        """The unfinished Jobs of every service that has any (observed or just created)."""
        return {service: count for service, count in self._active.items() if count > 0}

    def clear(self) -> None:
        """Forget every Job, pending ones too (nobody keeps the index current any more); waiters re-check."""
        self._observed.clear()
        self._pending.clear()
        self._active.clear()
        self._notify()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checking it after every change of the index.

        Bound it with ``asyncio.timeout`` where a change may never come.
        """
        while not predicate():
            await self._changed.wait()

    def _drop_pending(self, name: str) -> None:
        pending = self._pending.pop(name, None)
        if pending is not None:
            self._active[pending[0]] -= 1

    def _forget(self, name: str) -> None:
        previous = self._observed.pop(name, None)
        if previous is not None and not previous.finished:
            self._active[previous.service] -= 1
        self._notify()

    def _notify(self) -> None:
        # Wake every waiter once, then re-arm: each re-checks its own predicate.
        self._changed.set()
        self._changed = asyncio.Event()
