"""The demo's decisions, without servers: which S3 server and executor it picks, how a Job's phase reads,
and how listed pods are matched to their Jobs."""

from __future__ import annotations

from typing import Any

import pytest

from bucketrun.devtools.demo import (
    DemoError,
    KubeChoice,
    S3Choice,
    StoreKind,
    choose_cluster,
    choose_store,
    local_executor_line,
)
from bucketrun.devtools.demo_progress import job_phase, job_records
from dispatcher.domain.constants import LABEL_JOB_CONTROLLER_UID

MISSING = "kube-apiserver is not built: run `make servers`"


@pytest.mark.parametrize(
    ("s3", "configured", "minio_built", "expected"),
    [
        (S3Choice.AUTO, True, True, StoreKind.CONFIGURED),
        (S3Choice.AUTO, False, True, StoreKind.MINIO),
        (S3Choice.AUTO, False, False, StoreKind.MOTO),
        (S3Choice.MOTO, False, True, StoreKind.MOTO),
        (S3Choice.MINIO, True, True, StoreKind.MINIO),  # asked for by name: the configured one is not used
    ],
)
def test_choose_store(s3: S3Choice, configured: bool, minio_built: bool, expected: StoreKind) -> None:
    assert choose_store(s3, configured=configured, minio_built=minio_built) is expected


def test_s3_minio_without_the_build_names_make_servers() -> None:
    with pytest.raises(DemoError, match="make servers"):
        choose_store(S3Choice.MINIO, configured=False, minio_built=False)


@pytest.mark.parametrize(
    ("kube", "store", "not_built", "expected"),
    [
        (KubeChoice.AUTO, StoreKind.MINIO, None, True),
        (KubeChoice.AUTO, StoreKind.MINIO, MISSING, False),
        (KubeChoice.AUTO, StoreKind.MOTO, None, False),
        (KubeChoice.AUTO, StoreKind.CONFIGURED, None, False),
        (KubeChoice.LOCAL, StoreKind.MINIO, None, False),
        (KubeChoice.CLUSTER, StoreKind.MOTO, None, True),
        (KubeChoice.CLUSTER, StoreKind.CONFIGURED, None, True),
    ],
)
def test_choose_cluster(kube: KubeChoice, store: StoreKind, not_built: str | None, expected: bool) -> None:
    assert choose_cluster(kube, store, not_built) is expected


def test_kube_cluster_without_the_build_is_an_error_naming_the_missing_binary() -> None:
    with pytest.raises(DemoError, match=r"--kube cluster: kube-apiserver is not built: run `make servers`"):
        choose_cluster(KubeChoice.CLUSTER, StoreKind.MINIO, MISSING)


def test_the_local_executor_line_says_how_to_get_the_cluster_only_when_it_is_not_built() -> None:
    assert "`make servers` builds one" in local_executor_line(KubeChoice.AUTO, MISSING)
    assert "--kube cluster forces it" in local_executor_line(KubeChoice.AUTO, None)
    assert local_executor_line(KubeChoice.LOCAL, None).endswith("as --kube local asks")


def _job(uid: str, *conditions: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"job-{uid}", "uid": uid},
        "status": {"conditions": [{"type": kind, "status": "True"} for kind in conditions]},
    }


def _pod(uid: str, created: str, phase: str) -> dict[str, Any]:
    labels = {LABEL_JOB_CONTROLLER_UID: uid}
    return {"metadata": {"labels": labels, "creationTimestamp": created}, "status": {"phase": phase}}


@pytest.mark.parametrize(
    ("job", "pods", "phase"),
    [
        (_job("a"), [], "queued"),
        (_job("a"), [_pod("a", "1", "Pending")], "queued"),
        (_job("a"), [_pod("a", "1", "Running")], "running"),
        # the pod ended, the Job controller has not marked the Job yet: still running, not back to queued
        (_job("a"), [_pod("a", "1", "Succeeded")], "running"),
        (_job("a", "SuccessCriteriaMet", "Complete"), [_pod("a", "1", "Succeeded")], "done"),
        (_job("a", "FailureTarget", "Failed"), [_pod("a", "1", "Failed")], "failed"),
        (_job("a", "FailureTarget"), [_pod("a", "1", "Failed")], "running"),  # pods still being stopped
    ],
)
def test_job_phase(job: dict[str, Any], pods: list[dict[str, Any]], phase: str) -> None:
    assert job_phase({"job": job, "pods": pods}) == phase


def test_job_records_match_pods_to_their_job_by_controller_uid_oldest_first() -> None:
    jobs = [_job("a"), _job("b"), _job("c")]
    pods = [_pod("b", "2026-12-04T09:00:02Z", "Pending"), _pod("a", "x", "Running")]
    pods.append(_pod("b", "2026-12-04T09:00:01Z", "Failed"))
    pods.append(_pod("other", "x", "Running"))  # a pod of a Job not listed
    records = dict(job_records(jobs, pods))
    assert [pod["status"]["phase"] for pod in records["job-a"]["pods"]] == ["Running"]
    assert [pod["status"]["phase"] for pod in records["job-b"]["pods"]] == ["Failed", "Pending"]
    assert records["job-c"] == {"job": jobs[2], "pods": []}
    assert job_phase(records["job-b"]) == "queued"  # its retry's pod waits
