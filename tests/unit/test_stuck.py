"""Pods that can never start: ``stuck_reason(pod, now, grace)`` and what ``classify`` records for them.

The pods are written out by hand as the API server returns them (shapes and messages from the
Kubernetes documentation, "Debug Pods" and "Images", and from kubelet/containerd error strings):
a bucketrun pod whose stage-in finished at 10:00:30 and whose ``run`` container then waits, with
``stage-out`` running beside it, or a pod that no node can take.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatcher.domain.outcome import Outcome, OutcomeKind, classify, stuck_reason, unschedulable_for_good

GRACE = timedelta(minutes=5)
STARTED = "2026-03-01T10:00:00Z"
INITIALIZED = "2026-03-01T10:00:30Z"
AFTER_INIT = datetime(2026, 3, 1, 10, 0, 30, tzinfo=UTC)


def waiting_run_pod(reason: str, message: str) -> dict[str, Any]:
    """The pod of a Job whose ``run`` container cannot be created or pulled (stage-in done at 10:00:30)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "upper-abc-x7k2p",
            "namespace": "bucketrun",
            "uid": "7d0c6c8e-pod",
            "creationTimestamp": STARTED,
            "labels": {
                "app.kubernetes.io/managed-by": "bucketrun",
                "batch.kubernetes.io/controller-uid": "5b1f-job",
                "batch.kubernetes.io/job-name": "upper-abc",
            },
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": "upper-abc",
                    "uid": "5b1f-job",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"nodeName": "worker-1", "restartPolicy": "Never"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": STARTED},
                {"type": "Initialized", "status": "True", "lastTransitionTime": INITIALIZED},
                {
                    "type": "Ready",
                    "status": "False",
                    "lastTransitionTime": STARTED,
                    "reason": "ContainersNotReady",
                    "message": "containers with unready status: [run]",
                },
                {
                    "type": "ContainersReady",
                    "status": "False",
                    "lastTransitionTime": STARTED,
                    "reason": "ContainersNotReady",
                    "message": "containers with unready status: [run]",
                },
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": STARTED},
            ],
            "startTime": STARTED,
            "initContainerStatuses": [
                {
                    "name": "stage-in",
                    "image": "ghcr.io/bucketrun/bucketrun:latest",
                    "ready": True,
                    "restartCount": 0,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": "2026-03-01T10:00:05Z",
                            "finishedAt": INITIALIZED,
                        }
                    },
                }
            ],
            "containerStatuses": [
                {
                    "name": "run",
                    "image": "registry.example/tools/upper:1.0",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": {"reason": reason, "message": message}},
                },
                {
                    "name": "stage-out",
                    "image": "ghcr.io/bucketrun/bucketrun:latest",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": "2026-03-01T10:00:31Z"}},
                },
            ],
        },
    }


def unschedulable_pod() -> dict[str, Any]:
    """A GPU pod no node can take: Pending, never bound, PodScheduled False since 10:00:00."""
    pod = waiting_run_pod("PodInitializing", "")
    del pod["spec"]["nodeName"]
    pod["status"] = {
        "phase": "Pending",
        "qosClass": "Guaranteed",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": STARTED,
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes "
                "are available: 3 Preemption is not helpful for scheduling.",
            }
        ],
    }
    return pod


STUCK = {
    "missing secret": (
        "CreateContainerConfigError",
        'secret "bucketrun-upper-secrets" not found',
        OutcomeKind.CONFIG_ERROR,
    ),
    "missing key": (
        "CreateContainerConfigError",
        "couldn't find key API_KEY in Secret bucketrun/bucketrun-upper-secrets",
        OutcomeKind.CONFIG_ERROR,
    ),
    "missing configmap": (
        "CreateContainerConfigError",
        'configmap "settings" not found',
        OutcomeKind.CONFIG_ERROR,
    ),
    "runtime refused": (
        "CreateContainerError",
        "Error: failed to create containerd container: error unpacking image: no such file or directory",
        OutcomeKind.CONFIG_ERROR,
    ),
    "pull failed": (
        "ErrImagePull",
        "rpc error: code = NotFound desc = failed to pull and unpack image "
        '"registry.example/tools/upper:1.0": not found',
        OutcomeKind.IMAGE_PULL_FAILED,
    ),
    "pull backing off": (
        "ImagePullBackOff",
        'Back-off pulling image "registry.example/tools/upper:1.0"',
        OutcomeKind.IMAGE_PULL_FAILED,
    ),
    "invalid name": (
        "InvalidImageName",
        'Failed to apply default image tag "Upper:Bad": couldn\'t parse image name "Upper:Bad": invalid '
        "reference format",
        OutcomeKind.IMAGE_PULL_FAILED,
    ),
    "never pull": (
        "ErrImageNeverPull",
        'Container image "registry.example/tools/upper:1.0" is not present with pull policy of Never',
        OutcomeKind.IMAGE_PULL_FAILED,
    ),
}


@pytest.mark.parametrize("case", sorted(STUCK))
def test_a_container_waiting_for_good_is_stuck_once_the_grace_has_passed(case: str) -> None:
    reason, message, kind = STUCK[case]
    pod = waiting_run_pod(reason, message)
    assert stuck_reason(pod, AFTER_INIT + GRACE - timedelta(seconds=1), GRACE) is None
    found = stuck_reason(pod, AFTER_INIT + GRACE, GRACE)
    assert found == Outcome(kind, reason, f"container run of pod upper-abc-x7k2p: {message}", None)


def test_the_grace_counts_from_the_end_of_the_init_containers_not_from_the_pods_start() -> None:
    # A long stage-in (a big input) must not eat into the run container's grace.
    pod = waiting_run_pod("ImagePullBackOff", 'Back-off pulling image "x"')
    pod["status"]["conditions"][1]["lastTransitionTime"] = "2026-03-01T11:00:00Z"
    eleven = datetime(2026, 3, 1, 11, tzinfo=UTC)
    assert stuck_reason(pod, eleven + GRACE - timedelta(seconds=1), GRACE) is None
    assert stuck_reason(pod, eleven + GRACE, GRACE) is not None


def test_a_waiting_init_container_counts_from_the_pods_start() -> None:
    pod = waiting_run_pod("PodInitializing", "")
    pod["status"]["conditions"][1] = {
        "type": "Initialized",
        "status": "False",
        "lastTransitionTime": STARTED,
        "reason": "ContainersNotInitialized",
        "message": "containers with incomplete status: [stage-in]",
    }
    pod["status"]["initContainerStatuses"][0]["state"] = {
        "waiting": {
            "reason": "ImagePullBackOff",
            "message": 'Back-off pulling image "ghcr.io/bucketrun/bucketrun:latest"',
        }
    }
    start = datetime(2026, 3, 1, 10, tzinfo=UTC)
    found = stuck_reason(pod, start + GRACE, GRACE)
    assert found is not None
    assert (found.kind, found.reason) == (OutcomeKind.IMAGE_PULL_FAILED, "ImagePullBackOff")
    assert found.message.startswith("container stage-in of pod upper-abc-x7k2p: Back-off pulling image")


def test_an_unschedulable_pod_is_stuck_once_the_grace_has_passed() -> None:
    pod = unschedulable_pod()
    start = datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert stuck_reason(pod, start + GRACE - timedelta(seconds=1), GRACE) is None
    found = stuck_reason(pod, start + GRACE, GRACE)
    assert found is not None
    assert (found.kind, found.reason) == (OutcomeKind.UNSCHEDULABLE, "Unschedulable")
    assert found.message.startswith(
        "pod upper-abc-x7k2p: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu"
    )


BUSY = (
    "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption "
    "victims found for incoming pod."
)
"""kube-scheduler v1.37.2's message for a 1.5-CPU pod beside another on a 2-CPU node (it fits once the
other ends)."""
NEVER = (
    "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Preemption is "
    "not helpful for scheduling."
)
"""kube-scheduler v1.37.2's message for a 512-CPU pod on the same node (it never fits)."""


def test_a_pod_waiting_for_a_busy_nodes_capacity_is_never_stuck() -> None:
    pod = unschedulable_pod()
    pod["status"]["conditions"][0]["message"] = BUSY
    start = datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert stuck_reason(pod, start + 100 * GRACE, GRACE) is None
    pod["status"]["conditions"][0]["message"] = NEVER
    assert stuck_reason(pod, start + GRACE, GRACE) is not None


@pytest.mark.parametrize(
    ("message", "for_good"),
    [
        (NEVER, True),
        (BUSY, False),
        (
            "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint {gpu: yes}. "
            "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 "
            "Preemption is not helpful for scheduling.",
            False,  # the first node may free its memory
        ),
        (
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 "
            "nodes are available: 2 Preemption is not helpful for scheduling.",
            True,
        ),
        ("0/2 nodes are available: 1 Too many pods, 1 Insufficient cpu.", False),  # preemption off
        ("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.", True),
        ("no nodes available to schedule pods", True),  # a message not understood: as before, stuck
    ],
)
def test_unschedulable_for_good_reads_the_schedulers_message(message: str, for_good: bool) -> None:
    assert unschedulable_for_good(message) is for_good


def later(hours: int = 10) -> datetime:
    return AFTER_INIT + timedelta(hours=hours)


def test_a_pod_on_its_way_is_never_stuck() -> None:
    # Pulling a big image (ContainerCreating), waiting for stage-in (PodInitializing): however long.
    for reason in ("ContainerCreating", "PodInitializing"):
        assert stuck_reason(waiting_run_pod(reason, ""), later(), GRACE) is None
    running = waiting_run_pod("ContainerCreating", "")
    running["status"]["phase"] = "Running"
    running["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": INITIALIZED}}
    assert stuck_reason(running, later(), GRACE) is None
    scheduled = unschedulable_pod()
    scheduled["status"]["conditions"][0].update(status="True", reason=None, message=None)
    assert stuck_reason(scheduled, later(), GRACE) is None


def test_a_pod_that_ended_or_is_being_deleted_is_not_stuck() -> None:
    # A Job's deadline ends a stuck pod: Failed, its container still shown waiting. The Job's Failed
    # condition records it (classify); the stuck sweep must leave it alone.
    ended = waiting_run_pod("CreateContainerConfigError", 'secret "s" not found')
    ended["status"].update(phase="Failed", reason="DeadlineExceeded")
    assert stuck_reason(ended, later(), GRACE) is None
    deleting = waiting_run_pod("CreateContainerConfigError", 'secret "s" not found')
    deleting["metadata"]["deletionTimestamp"] = "2026-03-01T10:10:00Z"
    assert stuck_reason(deleting, later(), GRACE) is None


def test_a_pod_without_timestamps_is_not_judged() -> None:
    pod = waiting_run_pod("ErrImagePull", "not found")
    pod["status"]["conditions"] = []
    del pod["status"]["startTime"]
    assert stuck_reason(pod, later(), GRACE) is None


# -- classify: what the record of such a Job says ------------------------------------------------------------


def job(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "upper-abc", "uid": "5b1f-job"},
        "status": {"startTime": STARTED, "active": 0 if conditions else 1, "conditions": list(conditions)},
    }


DEADLINE = {
    "type": "Failed",
    "status": "True",
    "reason": "DeadlineExceeded",
    "message": "Job was active longer than specified deadline",
}


@pytest.mark.parametrize("case", sorted(STUCK))
def test_an_unfinished_job_whose_pod_is_stuck_is_recorded_with_the_pods_reason(case: str) -> None:
    reason, message, kind = STUCK[case]
    outcome = classify(job(), [waiting_run_pod(reason, message)])
    assert (outcome.kind, outcome.reason, outcome.exit_code) == (kind, reason, None)
    assert message in outcome.message


def test_an_unfinished_job_without_a_stuck_pod_is_still_not_finished() -> None:
    outcome = classify(job(), [waiting_run_pod("ContainerCreating", "")])
    assert (outcome.kind, outcome.reason) == (OutcomeKind.UNKNOWN, "NotFinished")
    assert classify(job(), []).reason == "NotFinished"


def test_an_unschedulable_job_is_recorded_as_such_even_once_its_deadline_ended_it() -> None:
    pending = classify(job(), [unschedulable_pod()])
    assert (pending.kind, pending.reason) == (OutcomeKind.UNSCHEDULABLE, "Unschedulable")
    ended = unschedulable_pod()
    ended["status"]["phase"] = "Failed"
    outcome = classify(job(DEADLINE), [ended])
    assert (outcome.kind, outcome.reason) == (OutcomeKind.UNSCHEDULABLE, "Unschedulable")


def test_a_missing_secret_outranks_the_deadline_that_ended_the_job() -> None:
    pod = waiting_run_pod("CreateContainerConfigError", 'secret "bucketrun-upper-secrets" not found')
    pod["status"].update(phase="Failed", reason="DeadlineExceeded")
    outcome = classify(job(DEADLINE), [pod])
    assert (outcome.kind, outcome.reason) == (OutcomeKind.CONFIG_ERROR, "CreateContainerConfigError")


def test_a_run_container_that_could_not_run_is_a_config_error_not_a_script_failure() -> None:
    # The local executor ends a container it cannot start (a missing Secret) as ContainerCannotRun, exit
    # 128; stage-out then gives up (exit 4). The script never ran: its "exit code" is not the cause.
    pod = copy.deepcopy(waiting_run_pod("ContainerCreating", ""))
    pod["status"]["phase"] = "Failed"
    pod["status"]["containerStatuses"] = [
        {
            "name": "run",
            "state": {
                "terminated": {
                    "exitCode": 128,
                    "reason": "ContainerCannotRun",
                    "message": "container 'run': secret 'bucketrun-upper-secrets' not found",
                }
            },
        },
        {"name": "stage-out", "state": {"terminated": {"exitCode": 4, "reason": "Error"}}},
    ]
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}
    outcome = classify(job(failed), [pod])
    assert (outcome.kind, outcome.reason, outcome.exit_code) == (
        OutcomeKind.CONFIG_ERROR,
        "ContainerCannotRun",
        128,
    )
    assert "secret 'bucketrun-upper-secrets' not found" in outcome.message
