"""OSCAR's ``mount`` as bucketrun gives it: the folder staged in, read-only, bounded, with presigned GETs.

OSCAR mounts the bucket path at ``/mnt/<path>`` with an rclone FUSE sidecar holding the user's storage
keys. bucketrun keeps keys out of pods, so the dispatcher lists the folder when it creates the Job and
gives stage-in one presigned GET per object, in one environment variable (``BUCKETRUN_MOUNT``, JSON);
stage-in downloads them into an emptyDir that the script's container mounts read-only at ``/mnt``.

The decisions here are pure: which listed objects are staged, and when the Job must instead fail at
stage-in with a reason (more objects or bytes than the deployment allows, a listing too large for a Job,
a folder that cannot be listed). A refused mount still renders a Job of the same shape: its stage-in
prints the reason and exits ``EXIT_MOUNT_REFUSED``, so the Job's record says why and no retry runs.
Keys are data: they travel inside a JSON string that ``tojson`` escapes, and stage-in checks each path
stays inside the mount directory before writing it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from dispatcher.fdl.storage import MountPath

MANIFEST_MAX_BYTES: Final = 512 * 1024
"""Longest ``BUCKETRUN_MOUNT`` value: with the rest of a Job (and its pod, which copies it) far below
etcd's 1.5 MB object limit and the API server's 3 MiB request limit, however long the keys."""


@dataclass(frozen=True)
class MountLimits:
    """The deployment's bounds on a ``mount`` (``BUCKETRUN_STORAGE__MOUNT_MAX_*``)."""

    max_objects: int = 100
    max_bytes: int = 2 * 1024**3


@dataclass(frozen=True)
class Listed:
    """One object the dispatcher's listing of the mount folder returned."""

    key: str
    size: int


@dataclass(frozen=True)
class MountedObject:
    """One object to stage: where under the mount directory, how large, and its presigned GET."""

    path: str
    size: int
    url: str = field(repr=False)  # a credential until it expires: never in logs or reprs


@dataclass(frozen=True)
class MountGrant:
    """What stage-in needs to stage the mount, or the reason it must refuse to."""

    directory: str
    """``/mnt/<bucket>/<folder>``."""
    max_bytes: int
    """The deployment's bound on the total, which stage-in enforces again while downloading."""
    objects: tuple[MountedObject, ...] = ()
    refused: str | None = None
    """Why the Job must fail at stage-in instead (then ``objects`` is empty)."""


@dataclass(frozen=True)
class MountPlan:
    """The objects to presign for a mount folder, or the reason the Job's stage-in must refuse it."""

    objects: tuple[Listed, ...] = ()
    refused: str | None = None


def plan_mount(mount: MountPath, listing: Sequence[Listed], *, max_objects: int, max_bytes: int) -> MountPlan:
    """The objects of ``listing`` (at most ``max_objects + 1`` of the folder's keys, in key order) to stage.

    Folder markers (keys ending in ``/``) are not files and are left out. More than ``max_objects``
    objects, or more than ``max_bytes`` in total, refuses the mount with a reason naming the limit and
    the setting that raises it.
    """
    files = tuple(item for item in listing if not item.key.endswith("/"))
    if len(listing) > max_objects:
        return MountPlan(
            refused=(
                f"mount {mount.path!r} holds more than {max_objects} objects "
                "(BUCKETRUN_STORAGE__MOUNT_MAX_OBJECTS); nothing was staged"
            )
        )
    total = sum(item.size for item in files)
    if total > max_bytes:
        return MountPlan(
            refused=(
                f"mount {mount.path!r} holds {total} bytes, more than {max_bytes} "
                "(BUCKETRUN_STORAGE__MOUNT_MAX_BYTES); nothing was staged"
            )
        )
    return MountPlan(objects=files)


def relative_path(mount: MountPath, key: str) -> str:
    """Where ``key`` of the mount folder goes under the mount directory (the key without the folder)."""
    return key[len(mount.key_prefix) :]


def refused(mount: MountPath, reason: str, *, max_bytes: int) -> MountGrant:
    """A grant that makes stage-in fail with ``reason``."""
    return MountGrant(directory=mount.directory, max_bytes=max_bytes, refused=reason)


def manifest(grant: MountGrant) -> str:
    """``BUCKETRUN_MOUNT``: the grant as JSON, or a refusal when it would exceed ``MANIFEST_MAX_BYTES``."""
    text = _json(grant)
    if len(text.encode("utf-8")) <= MANIFEST_MAX_BYTES:
        return text
    reason = (
        f"the listing of {len(grant.objects)} objects takes {len(text.encode('utf-8'))} bytes in the Job, "
        f"more than {MANIFEST_MAX_BYTES} (keys too long or too many); nothing was staged"
    )
    return _json(MountGrant(directory=grant.directory, max_bytes=grant.max_bytes, refused=reason))


def _json(grant: MountGrant) -> str:
    document: dict[str, Any] = {
        "directory": grant.directory,
        "max_bytes": grant.max_bytes,
        "objects": [{"path": o.path, "size": o.size, "url": o.url} for o in grant.objects],
        "refused": grant.refused,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
