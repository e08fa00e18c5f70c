"""Label, annotation and finalizer names the emulated controllers use, spelled once."""

from __future__ import annotations

JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME = "job-name"
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID = "controller-uid"

EXIT_CODE_ANNOTATION = "emulator.bucketrun.io/exit-code"
"""On a pod run by the `instant` kubelet: the exit code its containers "end" with (default 0)."""

NODE_NAME = "emulator-node"
POD_IP = "127.0.0.1"
HOST_IP = "127.0.0.1"


def job_pod_labels(job_name: str, job_uid: str) -> dict[str, str]:
    """The four labels Kubernetes puts on a Job's pod template (new and legacy spellings)."""
    return {
        CONTROLLER_UID: job_uid,
        JOB_NAME: job_name,
        LEGACY_CONTROLLER_UID: job_uid,
        LEGACY_JOB_NAME: job_name,
    }
