"""Jobs whose pods the API server refuses to create, decided from the Job and its Events (pure).

When admission refuses a Job's pod (PodSecurity ``enforce: restricted`` and a container that may run as
root, a ServiceAccount that does not exist, a LimitRange, a webhook, a ResourceQuota), the Job controller
sets no condition and the Job has no pod: it emits a Warning Event on the Job, reason ``FailedCreate``,
message ``Error creating: <the API server's refusal>``, and tries again with back-off (1 s doubling up to
60 s), for ever or until ``activeDeadlineSeconds``. ``stuck_reason`` never sees such a Job (it reads
pods), so this module decides it instead: ``refused_reason(job, events, now, grace)``, for the Jobs that
``refused_jobs(events, now, grace)`` picks from the namespace's ``FailedCreate`` Events alone.

A Job is refused when it has not finished, is not suspended or being deleted, has no active pod, its
newest Event is a ``FailedCreate``, and the refusals have gone on for at least *grace*: counted from the
first ``FailedCreate`` after the newest other Event of the Job (a ``SuccessfulCreate``: a pod ran, failed
and the retry is refused), so a pod that ran is never counted as refused time.

Transient refusals do not end a Job. A quota refusal (``exceeded quota: Q, requested: R, used: U, limited:
L``) frees once other pods finish, and the controller's next try then succeeds (within a minute): the Job
waits, bounded by its ``activeDeadlineSeconds``, as the dispatcher's events wait for a quota on Jobs. Only
a quota refusal whose request alone exceeds the limit (``requested`` above ``limited`` for some resource:
the pod can never fit) counts. Every other refusal persists: nothing changes the pod template of a Job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Final

from dispatcher.domain import kube
from dispatcher.domain.jobs import api_time, finished_condition
from dispatcher.domain.outcome import Outcome, OutcomeKind
from dispatcher.domain.quantity import parse_quantity

FAILED_CREATE: Final = "FailedCreate"
"""Reason of the Job controller's Event when the API server refuses a pod it creates (controller_utils.go)."""
MAX_MESSAGE: Final = 1024
"""Characters of the controller's message kept in the outcome (PodSecurity lists every violation)."""
_COMBINED: Final = "(combined from similar events): "
"""Prefix client-go's event aggregator puts on a message once similar Events repeat (10 in 10 minutes)."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""Sorts an Event without any time first."""
_QUOTA: Final = re.compile(
    r"exceeded quota: [^,]+, requested: (?P<requested>\S*), used: \S*, limited: (?P<limited>\S*)"
)


def refused_reason(
    job: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime, grace: timedelta
) -> Outcome | None:
    """``pod-create-refused`` for *job* when its *events* (any order; another object's are ignored) show
    its pods refused, persistently, for at least *grace* before *now*; else None (see the module)."""
    if not _may_be_refused(job):
        return None
    message = _persisting_refusal([event for event in events if _about(event, kube.uid(job))], now, grace)
    if message is None:
        return None
    bounded = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
    detail = f"Job {kube.name(job)} got no pod, the API server refused it: {bounded}"
    return Outcome(OutcomeKind.POD_CREATE_REFUSED, FAILED_CREATE, detail, None)


def refused_jobs(
    events: Sequence[Mapping[str, Any]], now: datetime, grace: timedelta
) -> list[tuple[str, str]]:
    """(name, UID) of each Job, once, in the order listed, whose ``FailedCreate`` *events* alone already
    show a persisting refusal for *grace*: the Jobs worth reading with all their Events (the Events of
    another reason can only make it later, or not a refusal at all, never sooner)."""
    jobs: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for event in events:
        involved = _involved(event)
        name, uid = involved.get("name"), involved.get("uid")
        if event.get("reason") == FAILED_CREATE and involved.get("kind") == "Job" and name and uid:
            jobs.setdefault((str(name), str(uid)), []).append(event)
    return [job for job, refusals in jobs.items() if _persisting_refusal(refusals, now, grace) is not None]


def _persisting_refusal(events: Sequence[Mapping[str, Any]], now: datetime, grace: timedelta) -> str | None:
    """The newest refusal's message when one Job's *events* end in refusals going on for *grace*, and not
    a quota that may free; else None."""
    own = sorted(events, key=lambda event: _last_seen(event) or _EPOCH)
    if not own or own[-1].get("reason") != FAILED_CREATE:
        return None
    since = _refused_since(own)
    message = _message(own[-1])
    return None if since is None or now - since < grace or _transient(message) else message


def _may_be_refused(job: Mapping[str, Any]) -> bool:
    """Not finished, not suspended (Kueue's), not being deleted, and without an active pod."""
    spec = job.get("spec")
    suspended = isinstance(spec, Mapping) and spec.get("suspend") is True
    active = kube.job_status(job).get("active") or 0
    return not (suspended or finished_condition(job) or kube.meta(job).get("deletionTimestamp") or active > 0)


def _refused_since(events: Sequence[Mapping[str, Any]]) -> datetime | None:
    """When the current run of refusals began: the first ``FailedCreate`` since the newest other Event
    (*events* oldest first by last occurrence, the newest a ``FailedCreate``)."""
    others = [_last_seen(event) for event in events if event.get("reason") != FAILED_CREATE]
    after = max((moment for moment in others if moment is not None), default=None)
    firsts = [
        _first_seen(event)
        for event in events
        if event.get("reason") == FAILED_CREATE and (after is None or (_last_seen(event) or _EPOCH) >= after)
    ]
    begun = min((moment for moment in firsts if moment is not None), default=None)
    return None if begun is None else max(begun, after) if after is not None else begun


def _transient(message: str) -> bool:
    """A quota refusal the pod could fit once other pods finish (none of its requests above the limit)."""
    quota = _QUOTA.search(message)
    if quota is None:
        return False
    requested, limited = _resources(quota["requested"]), _resources(quota["limited"])
    return not any(amount > limited[name] for name, amount in requested.items() if name in limited)


def _resources(text: str) -> dict[str, Fraction]:
    """``cpu=2,pods=1`` (the quota admission's format) as quantities; an unreadable entry is left out."""
    found = {}
    for entry in text.split(","):
        name, _, amount = entry.partition("=")
        try:
            found[name] = parse_quantity(amount)
        except ValueError:
            continue
    return found


def _message(event: Mapping[str, Any]) -> str:
    text = str(event.get("message") or "the pod was refused")
    return text.removeprefix(_COMBINED)


def _about(event: Mapping[str, Any], uid: str) -> bool:
    involved = _involved(event)
    return involved.get("kind") == "Job" and involved.get("uid") == uid


def _involved(event: Mapping[str, Any]) -> Mapping[str, Any]:
    involved = event.get("involvedObject") or event.get("regarding")
    return involved if isinstance(involved, Mapping) else {}


def _first_seen(event: Mapping[str, Any]) -> datetime | None:
    """When the Event first happened: ``firstTimestamp`` (core/v1), ``eventTime`` (events/v1), else when
    it was created."""
    return (
        api_time(event.get("firstTimestamp"))
        or api_time(event.get("eventTime"))
        or api_time(kube.meta(event).get("creationTimestamp"))
    )


def _last_seen(event: Mapping[str, Any]) -> datetime | None:
    """When the Event last happened: ``lastTimestamp`` (a repeat bumps it and ``count``), ``series``, else
    when it first did."""
    series = event.get("series")
    observed = series.get("lastObservedTime") if isinstance(series, Mapping) else None
    return api_time(event.get("lastTimestamp")) or api_time(observed) or _first_seen(event)
