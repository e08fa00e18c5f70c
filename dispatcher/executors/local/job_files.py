"""The local executor's Jobs on disk: where each file is, reading them, removing a Job, and the lock.

The layout is ``executor.LocalExecutor``'s (its module docstring). Two kinds of reader use this module:
the executor that holds the state directory's lock, and ``bucketrun jobs`` from another process, which
reads without the lock (every state file is replaced atomically, so a reader never sees half of one).

**Removing a Job** renames its directory into ``staging/`` (emptied at every start) and deletes it
there: a reader sees the whole Job or none of it, and the name is free at once, as a deleted Job's name
is in a cluster. Only the Job of a given UID is removed (a Job created again under the name is not). A
finished Job may be removed while an executor runs (it no longer writes to it), an unfinished one only
under the lock: the executor running it is the only one that could stop it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

from dispatcher.domain.record import tail
from dispatcher.executors.local.statefiles import read_json, sync_directory

MANIFEST: Final = "manifest.json"
STATUS: Final = "status.json"
_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # safe as a directory name too
_TAIL_BYTES_PER_LINE: Final = 1024  # how far back a log file is read for its last lines


def is_object_name(name: str) -> bool:
    """Whether *name* is a DNS-1123 subdomain, as Job and ConfigMap names are (and a safe file name)."""
    return _NAME.fullmatch(name) is not None


class JobFiles:
    """The Jobs of the local executor's state directory *state_dir*."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.jobs_dir = self.state_dir / "jobs"
        self.staging_dir = self.state_dir / "staging"
        self.lock_path = self.state_dir / "lock"

    def names(self) -> list[str]:
        """The names of the Jobs on disk (none when the directory does not exist yet)."""
        try:
            return sorted(entry.name for entry in self.jobs_dir.iterdir() if is_object_name(entry.name))
        except FileNotFoundError:
            return []

    def record(self, name: str) -> dict[str, Any] | None:
        """Job *name*'s ``status.json`` (``{"job": …, "pods": […]}``), or None when there is none."""
        if not is_object_name(name):
            return None
        try:
            record = read_json(self.jobs_dir / name / STATUS)
        except NotADirectoryError:
            return None
        return record if isinstance(record, dict) else None

    def log_path(self, name: str, pod: str, container: str) -> Path:
        """The log file of *container* in *pod* of Job *name*."""
        return self.jobs_dir / name / "pods" / pod / "logs" / f"{container}.log"

    def remove(self, name: str, uid: str) -> bool:
        """Remove Job *name* if it is the Job with UID *uid*; False when it is gone or another Job's."""
        record = self.record(name)
        if record is None or ((record.get("job") or {}).get("metadata") or {}).get("uid") != uid:
            return False
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        doomed = Path(tempfile.mkdtemp(prefix=f".deleted.{name}.", dir=self.staging_dir))
        try:
            (self.jobs_dir / name).replace(doomed)  # over the empty directory just made
        except FileNotFoundError:
            doomed.rmdir()
            return False
        sync_directory(self.jobs_dir)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def try_lock(self) -> int | None:
        """Take the state directory's lock (an open file descriptor: ``os.close`` releases it), or None
        when an executor holds it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd


def read_log(path: Path, lines: int | None) -> str | None:
    """The file's text, or only its last *lines* lines (reading at most ``_TAIL_BYTES_PER_LINE`` bytes
    per line from its end: a log may be large); None when there is no such file."""
    try:
        with path.open("rb") as file:
            if lines is not None:
                size = file.seek(0, 2)
                file.seek(max(0, size - lines * _TAIL_BYTES_PER_LINE))
            data = file.read()
    except FileNotFoundError:
        return None
    text = data.decode("utf-8", "replace")
    return text if lines is None else tail(text, lines)
