"""Crash-safe files for the local executor: atomic JSON writes and atomic claims of a directory name.

A reader never sees half a file: every write goes to a temporary file in the same directory and is
renamed over the target. *durable* writes are also flushed to disk (file and directory), so they
survive a power cut, not only a crash of the process.

A claim renames a fully written staging directory to its final name. ``rename(2)`` refuses to replace
a directory that has entries, so exactly one of several claims of the same name succeeds, and the
winner's directory already holds its files: no crash can leave a claim without its manifest.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def dump_json(data: Any) -> bytes:
    """Compact UTF-8 JSON, as every state file is written."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def read_json(path: Path) -> Any:
    """The JSON document in *path*; None when the file does not exist."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def write_atomic(path: Path, content: bytes, *, durable: bool) -> None:
    """Replace *path* with *content* in one step (temporary file + rename)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        sync_directory(path.parent)


def write_json_atomic(path: Path, data: Any, *, durable: bool) -> None:
    """``write_atomic`` of *data* as JSON."""
    write_atomic(path, dump_json(data), durable=durable)


def claim_directory(target: Path, staging_root: Path, files: Mapping[str, bytes]) -> bool:
    """Create directory *target* holding *files*, atomically and durably; False if *target* exists.

    *staging_root* must be on the same filesystem as *target* (the staging directory is renamed).
    """
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=staging_root))
    try:
        for name, content in files.items():
            with (staging / name).open("wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
        try:
            staging.rename(target)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    sync_directory(target.parent)
    return True


def sync_directory(directory: Path) -> None:
    """Flush *directory*'s entries (new and renamed names) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
