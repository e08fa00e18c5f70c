"""Jobs whose pods the API server refuses: ``refused_reason(job, events, now, grace)`` and ``refused_jobs``.

The Events are written out by hand in the shape kube-controller-manager's Job controller gives them
(core/v1 Events from client-go's recorder: reason ``FailedCreate``, type Warning, message ``Error creating:
`` and the API server's refusal; ``SuccessfulCreate``, ``Created pod: NAME`` once a pod is created), with
the refusals of PodSecurity (``violates PodSecurity "restricted:latest": ...``), the ServiceAccount
admission (``error looking up service account NS/NAME: ...``) and quota admission (``exceeded quota: Q,
requested: R, used: U, limited: L``) as their sources spell them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.domain.outcome import OutcomeKind
from dispatcher.domain.refused import MAX_MESSAGE, refused_jobs, refused_reason

GRACE = timedelta(minutes=5)
CREATED = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)

POD_SECURITY = (
    'Error creating: pods "image-user-abc-x7k2p" is forbidden: violates PodSecurity "restricted:latest": '
    'allowPrivilegeEscalation != false (containers "stage-in", "run", "stage-out" must set '
    "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (containers "
    '"stage-in", "run", "stage-out" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != '
    'true (container "run" must set securityContext.runAsNonRoot=true), seccompProfile (pod or containers '
    '"stage-in", "run", "stage-out" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
    '"Localhost")'
)
NO_SERVICE_ACCOUNT = (
    'Error creating: pods "image-user-abc-q9w4z" is forbidden: error looking up service account '
    'bucketrun/runner: serviceaccount "runner" not found'
)
QUOTA_FULL = (
    'Error creating: pods "image-user-abc-m2n8v" is forbidden: exceeded quota: pods, requested: pods=1, '
    "used: pods=4, limited: pods=4"
)
QUOTA_NEVER_FITS = (
    'Error creating: pods "image-user-abc-m2n8v" is forbidden: exceeded quota: compute, requested: '
    "limits.memory=2Gi,requests.cpu=4, used: limits.memory=0,requests.cpu=0, limited: "
    "limits.memory=4Gi,requests.cpu=2"
)


def at(seconds: float) -> str:
    return (CREATED + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def job(uid: str = "5b1f-job", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "image-user-abc",
            "namespace": "bucketrun",
            "uid": uid,
            "creationTimestamp": at(0),
            "labels": {"app.kubernetes.io/managed-by": "bucketrun", "bucketrun.io/service": "image-user"},
        },
        "spec": {"suspend": False, "activeDeadlineSeconds": 86400},
        "status": {"startTime": at(0), "terminating": 0, "ready": 0, **status},
    }


def event(
    reason: str,
    message: str,
    first: float,
    last: float | None = None,
    *,
    uid: str = "5b1f-job",
    count: int = 1,
) -> dict[str, Any]:
    """One core/v1 Event of the Job controller about Job *uid*, as the API server lists it."""
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "name": f"image-user-abc.18a2b{int(first):04x}",
            "namespace": "bucketrun",
            "creationTimestamp": at(first),
        },
        "involvedObject": {
            "kind": "Job",
            "namespace": "bucketrun",
            "name": "image-user-abc",
            "uid": uid,
            "apiVersion": "batch/v1",
            "resourceVersion": "4711",
        },
        "reason": reason,
        "message": message,
        "source": {"component": "job-controller"},
        "firstTimestamp": at(first),
        "lastTimestamp": at(first if last is None else last),
        "count": count,
        "type": "Warning" if reason == "FailedCreate" else "Normal",
        "eventTime": None,
        "reportingComponent": "job-controller",
        "reportingInstance": "",
    }


def refusals(message: str, *, first: float = 1, last: float = 400) -> list[dict[str, Any]]:
    """The controller's retries: each pod name differs, so each refusal is an Event of its own until
    client-go combines the similar ones into one (its count and lastTimestamp going up)."""
    return [
        event("FailedCreate", message, first),
        event("FailedCreate", message, first + 2),
        event("FailedCreate", f"(combined from similar events): {message}", first + 30, last, count=9),
    ]


def test_a_pod_security_refusal_held_for_the_grace_ends_the_job_with_the_controllers_message() -> None:
    outcome = refused_reason(job(), refusals(POD_SECURITY), CREATED + GRACE + timedelta(seconds=2), GRACE)
    assert outcome is not None
    assert (outcome.kind, outcome.reason, outcome.exit_code) == (
        OutcomeKind.POD_CREATE_REFUSED,
        "FailedCreate",
        None,
    )
    assert outcome.kind.value == "pod-create-refused"
    assert outcome.message.startswith(
        "Job image-user-abc got no pod, the API server refused it: Error creating:"
    )
    assert 'violates PodSecurity "restricted:latest"' in outcome.message
    assert "combined from similar events" not in outcome.message


def test_within_the_grace_it_is_not_refused_yet() -> None:
    # Counted from the first refusal (10:00:01), not from the newest one nor the Job's creation.
    events = refusals(NO_SERVICE_ACCOUNT)
    assert refused_reason(job(), events, CREATED + GRACE, GRACE) is None
    outcome = refused_reason(job(), events, CREATED + GRACE + timedelta(seconds=1), GRACE)
    assert outcome is not None
    assert 'serviceaccount "runner" not found' in outcome.message


def test_a_quota_that_may_free_is_waited_for_but_one_the_pod_can_never_fit_is_not() -> None:
    much_later = CREATED + timedelta(hours=2)
    assert refused_reason(job(), refusals(QUOTA_FULL), much_later, GRACE) is None
    outcome = refused_reason(job(), refusals(QUOTA_NEVER_FITS), much_later, GRACE)
    assert outcome is not None
    assert "requested: limits.memory=2Gi,requests.cpu=4" in outcome.message


def test_the_newest_event_decides_a_pod_created_at_last_is_not_refused() -> None:
    # The quota freed: the controller's next try created the pod (active is 1 once it sees it, but the
    # Event may come first).
    events = [
        *refusals(QUOTA_FULL, last=350),
        event("SuccessfulCreate", "Created pod: image-user-abc-p4k", 360),
    ]
    assert refused_reason(job(), events, CREATED + timedelta(hours=1), GRACE) is None


def test_refusals_after_a_pod_ran_count_from_the_first_one_after_it() -> None:
    # A pod was created at 10:00:00, failed, and its retry is refused from 10:10:00 on.
    ran = event("SuccessfulCreate", "Created pod: image-user-abc-p4k", 0)
    events = [ran, *refusals(POD_SECURITY, first=600, last=900)]
    assert (
        refused_reason(
            job(failed=1), events, CREATED + timedelta(seconds=600) + GRACE - timedelta(seconds=1), GRACE
        )
        is None
    )
    assert refused_reason(job(failed=1), events, CREATED + timedelta(seconds=600) + GRACE, GRACE) is not None


def test_a_job_with_an_active_pod_finished_suspended_or_being_deleted_is_not_refused() -> None:
    later = CREATED + timedelta(hours=1)
    events = refusals(POD_SECURITY)
    suspended, deleting = job(), job()
    suspended["spec"]["suspend"] = True
    deleting["metadata"]["deletionTimestamp"] = at(500)
    failed = job(conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}])
    for not_refused in (job(active=1), failed, suspended, deleting):
        assert refused_reason(not_refused, events, later, GRACE) is None
    assert refused_reason(job(active=0), events, later, GRACE) is not None


def test_only_the_jobs_own_events_count() -> None:
    later = CREATED + timedelta(hours=1)
    assert refused_reason(job(), refusals(POD_SECURITY), later, GRACE) is not None
    others = [
        {**e, "involvedObject": {**e["involvedObject"], "uid": "an-older-job"}}
        for e in refusals(POD_SECURITY)
    ]
    assert refused_reason(job(), others, later, GRACE) is None
    assert refused_reason(job(), [], later, GRACE) is None


def test_the_message_is_bounded() -> None:
    long = POD_SECURITY + ", " + "x" * 5000
    outcome = refused_reason(job(), refusals(long), CREATED + timedelta(hours=1), GRACE)
    assert outcome is not None
    assert len(outcome.message) <= MAX_MESSAGE + len(
        "Job image-user-abc got no pod, the API server refused it: "
    )
    assert outcome.message.endswith("x…")


def test_events_v1_shapes_are_read_too() -> None:
    # An Event written through events.k8s.io/v1 lists with eventTime and series instead of timestamps.
    refusal = event("FailedCreate", POD_SECURITY, 1)
    refusal.update(firstTimestamp=None, lastTimestamp=None, eventTime="2026-03-01T10:00:01.123456Z")
    refusal["series"] = {"count": 20, "lastObservedTime": "2026-03-01T10:30:00.000001Z"}
    assert refused_reason(job(), [refusal], CREATED + GRACE, GRACE) is None
    assert refused_reason(job(), [refusal], CREATED + GRACE + timedelta(seconds=2), GRACE) is not None


def test_refused_jobs_names_each_job_refused_for_the_grace_once_and_only_jobs() -> None:
    later = CREATED + timedelta(hours=1)
    pod_event = event("FailedCreate", "Error creating: ...", 5)
    pod_event["involvedObject"] = {"kind": "ReplicaSet", "name": "web-5d8f", "uid": "rs-1"}
    other = event("FailedCreate", POD_SECURITY, 3, uid="other-uid")
    other["involvedObject"]["name"] = "other"
    waiting = event("FailedCreate", QUOTA_FULL, 3, uid="quota-uid")
    recent = event("FailedCreate", POD_SECURITY, 3590, uid="recent-uid")
    events = [
        *refusals(POD_SECURITY),
        pod_event,
        other,
        waiting,
        recent,
        event("SuccessfulCreate", "Created", 4),
    ]
    assert refused_jobs(events, later, GRACE) == [("image-user-abc", "5b1f-job"), ("other", "other-uid")]
    assert refused_jobs(events, CREATED + GRACE, GRACE) == []
