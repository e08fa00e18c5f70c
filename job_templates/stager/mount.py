"""Stage-in of the service's ``mount``: its folder's objects into ``/mnt/<bucket>/<folder>``, read-only.

The dispatcher listed the folder and sent one presigned GET per object (``BUCKETRUN_MOUNT``), or the
reason the mount is refused. Here each object is written only inside the mount directory, whatever its
key: a path that is empty, absolute, or has an empty, ``.`` or ``..`` segment is skipped and reported.
The total is bounded again while downloading (an object may have grown since the listing). Once staged,
files are made read-only (0444) and directories 0555, which the script's read-only volume mount enforces
on a cluster anyway. Any failure that no retry can fix exits ``EXIT_MOUNT_REFUSED`` with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from job_templates.stager.config import MountConfig, MountObject
from job_templates.stager.contract import EXIT_FAILED, EXIT_MOUNT_REFUSED, EXIT_OK
from job_templates.stager.paths import UnsafePathError
from job_templates.stager.redact import url_secrets
from job_templates.stager.report import Reporter
from job_templates.stager.transfer import (
    PermanentTransferError,
    RetryPolicy,
    TooLargeError,
    TransferError,
    download_with_retries,
)

READ_ONLY_FILE = 0o444
READ_ONLY_DIR = 0o555


def mount_destination(root: Path, relative: str) -> Path:
    """Where the object at ``relative`` (its key without the folder) goes under ``root``; refuses escapes."""
    parts = relative.split("/")
    if not relative or "\x00" in relative or any(part in {"", ".", ".."} for part in parts):
        raise UnsafePathError(f"object path {relative!r} is not a relative file path")
    destination = root.joinpath(*parts)
    # The directories are the stager's own (nothing else writes /mnt before the script runs); checked
    # anyway, so that no key can lead a write outside the mount directory.
    if not PurePosixPath(os.path.normpath(destination)).is_relative_to(root):
        raise UnsafePathError(f"object path {relative!r} leads outside {str(root)!r}")
    return destination


def stage_mount(config: MountConfig, report: Reporter, policy: RetryPolicy) -> int:
    """Stage every object of the mount (or refuse with the dispatcher's reason); the exit code."""
    if config.refused is not None:
        report(f"cannot stage the mount {str(config.directory)!r}: {config.refused}")
        return EXIT_MOUNT_REFUSED
    for item in config.objects:
        report.redactor.add(url_secrets(item.url))
    root = config.directory
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        report(f"cannot create the mount directory {str(root)!r}: {error.strerror or error}")
        return EXIT_FAILED
    total = 0
    staged = 0
    try:
        for item in config.objects:
            size = _stage_object(root, item, config.max_bytes - total, report, policy)
            if size is not None:
                total += size
                staged += 1
    except _StopStagingError as stop:
        return stop.code
    _make_read_only(root)
    report(f"staged the mount: {staged} objects, {total} bytes, read-only at {root}")
    return EXIT_OK


class _StopStagingError(Exception):
    """Staging ends with ``code`` (already reported)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _stage_object(
    root: Path, item: MountObject, remaining: int, report: Reporter, policy: RetryPolicy
) -> int | None:
    """Bytes staged for ``item``; None when skipped (reported); ``_StopStagingError`` ends the staging."""
    try:
        destination = mount_destination(root, item.path)
        destination.parent.mkdir(parents=True, exist_ok=True)
    except UnsafePathError as error:
        report(f"mount: skipping {error}")
        return None
    except OSError as error:
        report(f"mount: skipping object path {item.path!r}: {error.strerror or error}")
        return None

    try:
        return download_with_retries(
            item.url,
            destination,
            policy,
            announce=report,
            what=f"mount: download of {item.path!r}",
            max_bytes=remaining,
        )
    except TooLargeError:
        report(
            f"cannot stage the mount: {item.path!r} takes it past its bound of "
            "BUCKETRUN_STORAGE__MOUNT_MAX_BYTES (the folder grew since the Job was created)"
        )
        raise _StopStagingError(EXIT_MOUNT_REFUSED) from None
    except PermanentTransferError as error:
        report(f"cannot stage the mount: {item.path!r} could not be read: {error}")
        raise _StopStagingError(EXIT_MOUNT_REFUSED) from None
    except TransferError as error:
        # Transient trouble that outlasted the retries: the Job's backoffLimit may try another pod.
        report(f"cannot stage the mount: {item.path!r}: {error}")
        raise _StopStagingError(EXIT_FAILED) from None
    except OSError as error:  # a name the filesystem refuses (too long), or one that is a directory too
        report(f"mount: skipping object path {item.path!r}: {error.strerror or error}")
        return None


def _make_read_only(root: Path) -> None:
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            os.chmod(os.path.join(directory, name), READ_ONLY_FILE)  # noqa: PTH101, PTH118 - walk's strings
        os.chmod(directory, READ_ONLY_DIR)  # noqa: PTH101
