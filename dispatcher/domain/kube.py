"""Typed views of the Kubernetes documents bucketrun reads: Jobs, their pods, and list answers (pure).

Documents stay the plain JSON the API sent (or the local executor wrote): parsing them into models
costs more than the requests. The TypedDicts name the fields bucketrun reads, and nothing else; the
accessors read them the one way that is safe for a document from outside. The invariant to keep: an
accessor never raises on a document. A missing, null or non-object ``metadata``, ``status``, label or
annotation map, or condition list reads as empty, and a name or UID that is not a string as ``""``.

Read through them instead of spelling ``(doc.get("metadata") or {}).get(...)`` again::

    kube.name(job), kube.uid(job), kube.labels(pod).get(LABEL_JOB_NAME)
    kube.meta(job).get("creationTimestamp"), kube.job_status(job).get("startTime")
    for condition in kube.conditions(job): ...
"""

# No `from __future__ import annotations`: this module defines `annotations()`, and every annotation
# here is evaluable as written.
from collections.abc import Mapping
from typing import Any, TypedDict, cast


class OwnerReference(TypedDict, total=False):
    """``metadata.ownerReferences[]``: who controls the object (a pod's Job)."""

    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool


class ObjectMeta(TypedDict, total=False):
    """``metadata`` of any object."""

    name: str
    namespace: str
    uid: str
    resourceVersion: str
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]


ListMeta = TypedDict("ListMeta", {"resourceVersion": str, "continue": str}, total=False)
"""``metadata`` of a list answer: its resourceVersion, and the token of the next page (``continue``)."""


class Condition(TypedDict, total=False):
    """One entry of ``status.conditions`` (Jobs and pods alike)."""

    type: str
    status: str
    """``"True"``, ``"False"`` or ``"Unknown"``: a string, as the API writes it."""
    reason: str
    message: str
    lastTransitionTime: str


class JobStatus(TypedDict, total=False):
    """``status`` of a Job."""

    conditions: list[Condition]
    startTime: str
    completionTime: str
    active: int
    succeeded: int
    failed: int


class ContainerStateWaiting(TypedDict, total=False):
    """Why a container is not running yet (``ImagePullBackOff``, ``CreateContainerConfigError``...)."""

    reason: str
    message: str


class ContainerStateTerminated(TypedDict, total=False):
    """How a container ended."""

    exitCode: int
    reason: str
    message: str


class ContainerState(TypedDict, total=False):
    """One of waiting, running or terminated."""

    waiting: ContainerStateWaiting
    running: dict[str, Any]
    terminated: ContainerStateTerminated


class ContainerStatus(TypedDict, total=False):
    """One entry of ``status.containerStatuses`` or ``status.initContainerStatuses``."""

    name: str
    state: ContainerState
    ready: bool


class PodStatus(TypedDict, total=False):
    """``status`` of a pod."""

    phase: str
    reason: str
    message: str
    startTime: str
    conditions: list[Condition]
    containerStatuses: list[ContainerStatus]
    initContainerStatuses: list[ContainerStatus]


class Job(TypedDict, total=False):
    """A ``batch/v1`` Job. bucketrun renders the spec and reads only its pod template's container names."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: JobStatus


class Pod(TypedDict, total=False):
    """A ``v1`` Pod, as a Job's pods are listed."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: PodStatus


def meta(obj: Mapping[str, Any]) -> ObjectMeta:
    """``metadata`` of *obj*; empty when it has none (or it is not an object)."""
    return cast(ObjectMeta, _mapping(obj.get("metadata")))


def list_meta(listing: Mapping[str, Any]) -> ListMeta:
    """``metadata`` of a list answer; empty when it has none."""
    return cast(ListMeta, _mapping(listing.get("metadata")))


def name(obj: Mapping[str, Any]) -> str:
    """``metadata.name``; ``""`` when it has none."""
    value = meta(obj).get("name")
    return value if isinstance(value, str) else ""


def uid(obj: Mapping[str, Any]) -> str:
    """``metadata.uid``; ``""`` when it has none (a document not yet stored by the API)."""
    value = meta(obj).get("uid")
    return value if isinstance(value, str) else ""


def labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """``metadata.labels``; empty when it has none."""
    return cast(Mapping[str, str], _mapping(meta(obj).get("labels")))


def annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """``metadata.annotations``; empty when it has none."""
    return cast(Mapping[str, str], _mapping(meta(obj).get("annotations")))


def owner_references(obj: Mapping[str, Any]) -> list[OwnerReference]:
    """``metadata.ownerReferences`` (the entries that are objects); empty when it has none."""
    return cast(list[OwnerReference], _objects(meta(obj).get("ownerReferences")))


def job_status(job: Mapping[str, Any]) -> JobStatus:
    """``status`` of a Job; empty when it has none yet."""
    return cast(JobStatus, _mapping(job.get("status")))


def pod_status(pod: Mapping[str, Any]) -> PodStatus:
    """``status`` of a pod; empty when it has none yet."""
    return cast(PodStatus, _mapping(pod.get("status")))


def conditions(obj: Mapping[str, Any]) -> list[Condition]:
    """``status.conditions`` of a Job or a pod (the entries that are objects); empty when it has none."""
    return cast(list[Condition], _objects(_mapping(obj.get("status")).get("conditions")))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _objects(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
