"""The typed views of Kubernetes documents: fields read where they are, and never an exception."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.domain import kube

JOB: dict[str, Any] = {
    "metadata": {
        "name": "upper-abc",
        "uid": "5b1f",
        "resourceVersion": "42",
        "labels": {"bucketrun.io/service": "upper"},
        "annotations": {"bucketrun.io/key": "in/a.txt"},
        "ownerReferences": [{"kind": "Job", "name": "x", "uid": "u", "controller": True}, "junk"],
    },
    "status": {
        "startTime": "2026-01-02T03:04:05Z",
        "conditions": [{"type": "Complete", "status": "True"}, None, "junk"],
    },
}


def test_the_fields_are_read_where_the_api_puts_them() -> None:
    assert kube.name(JOB) == "upper-abc"
    assert kube.uid(JOB) == "5b1f"
    assert kube.meta(JOB).get("resourceVersion") == "42"
    assert kube.labels(JOB) == {"bucketrun.io/service": "upper"}
    assert kube.annotations(JOB) == {"bucketrun.io/key": "in/a.txt"}
    assert kube.job_status(JOB).get("startTime") == "2026-01-02T03:04:05Z"
    assert kube.conditions(JOB) == [{"type": "Complete", "status": "True"}]  # non-objects skipped
    assert [owner.get("name") for owner in kube.owner_references(JOB)] == ["x"]
    assert kube.list_meta({"metadata": {"continue": "next", "resourceVersion": "7"}}) == {
        "continue": "next",
        "resourceVersion": "7",
    }


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"metadata": None, "status": None},
        {"metadata": "junk", "status": ["junk"]},
        {"metadata": {"name": 7, "uid": None, "labels": None, "annotations": "junk", "ownerReferences": {}}},
        {"status": {"conditions": None}},
        {"status": {"conditions": "junk"}},
    ],
)
def test_missing_null_or_mistyped_fields_read_as_empty(doc: dict[str, Any]) -> None:
    assert kube.name(doc) == ""
    assert kube.uid(doc) == ""
    assert kube.labels(doc) == {}
    assert kube.annotations(doc) == {}
    assert kube.owner_references(doc) == []
    assert kube.conditions(doc) == []
    if not isinstance(doc.get("status"), dict):
        assert kube.job_status(doc) == kube.pod_status(doc) == {}
    if not isinstance(doc.get("metadata"), dict):
        assert kube.meta(doc) == kube.list_meta(doc) == {}
