"""Which files stage-in writes and stage-out reads, and under which keys: safely, never outside the work dirs.

The user's script is not trusted with the stager's reach: it may leave symlinks to ``/etc``, FIFOs that
would block a reader forever, or names that are not UTF-8. Stage-out uploads only regular files found
under ``TMP_OUTPUT_DIR`` without following a symlink, and checks each resolved path again before opening
it (with ``O_NOFOLLOW``). Stage-in writes the input only inside ``TMP_INPUT_DIR``, whatever the key was.
The work directories themselves are checked too: the script shares the volume, so it could replace
``output/`` (or ``state/``) by a symlink to a directory the stager can read or write.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from job_templates.stager.config import OutputTarget
from job_templates.stager.contract import filters_accept

SHARED_DIR_MODE = 0o777
"""Mode of the shared directories: the user's image may run as any UID, the stager runs as 65532."""
MAX_KEY_BYTES = 1024
"""S3's limit on the length of an object key, in UTF-8 bytes."""


class UnsafePathError(ValueError):
    """A path that would reach outside the directory it must stay in (named in the message)."""


@dataclass(frozen=True)
class OutputFile:
    """A regular file the script left, by its path relative to ``TMP_OUTPUT_DIR`` (``/``-separated)."""

    relative: str
    path: Path


@dataclass(frozen=True)
class Skipped:
    """Something under ``TMP_OUTPUT_DIR`` that is not uploaded, and why."""

    relative: str
    reason: str
    unreadable: bool = False
    """True when the script meant it as an output but the stager cannot read it (counts as a failure)."""


def make_shared_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) and make it writable by every UID in the pod; a symlink in
    its place is refused (``UnsafePathError``), since chmod would change the link's target."""
    if path.is_symlink():
        raise UnsafePathError(f"work directory {str(path)!r} is a symbolic link")
    path.mkdir(parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask; the shared directories must really be 0777.
    path.chmod(SHARED_DIR_MODE)


def real_dir(directory: Path, variable: str) -> Path:
    """``directory`` with its parents resolved, or ``UnsafePathError`` if the directory itself is a symlink.

    Resolving the whole path would follow a link the script planted in place of a work directory and
    silently move the stager's reads or writes outside the job's volume.
    """
    if directory.is_symlink():
        raise UnsafePathError(f"{variable} {str(directory)!r} is a symbolic link")
    return directory.parent.resolve() / directory.name


def checked_input_file(input_file: Path, input_dir: Path) -> Path:
    """``input_file`` with its directory resolved, or ``UnsafePathError`` if it is not inside ``input_dir``.

    The file name itself is not resolved: stage-in replaces whatever is there (even a symlink) by rename,
    so it never writes through a link.
    """
    name = input_file.name
    if name in {"", ".", ".."}:
        raise UnsafePathError(f"INPUT_FILE_PATH {str(input_file)!r} does not name a file")
    root = real_dir(input_dir, "TMP_INPUT_DIR")
    parent = input_file.parent.resolve()
    if not parent.is_relative_to(root):
        raise UnsafePathError(f"INPUT_FILE_PATH {str(input_file)!r} is outside TMP_INPUT_DIR {str(root)!r}")
    return parent / name


def scan_outputs(output_dir: Path) -> tuple[list[OutputFile], list[Skipped]]:
    """Every regular file under ``output_dir`` (recursively, in name order) and what was skipped.

    Symlinks are neither followed nor uploaded; FIFOs, sockets and devices are skipped; names that are
    not valid UTF-8 cannot become keys and are skipped. A missing ``output_dir`` holds nothing; one that
    is a symlink is not followed and reported as unreadable (the script tampered with the work volume).
    """
    files: list[OutputFile] = []
    skipped: list[Skipped] = []
    if output_dir.is_symlink():
        skipped.append(Skipped(".", "TMP_OUTPUT_DIR is a symbolic link: not followed", unreadable=True))
        return files, skipped
    if not output_dir.is_dir():
        return files, skipped
    _walk(output_dir, (), files, skipped)
    return files, skipped


def _walk(directory: Path, parents: tuple[str, ...], files: list[OutputFile], skipped: list[Skipped]) -> None:
    try:
        with os.scandir(directory) as entries:
            ordered = sorted(entries, key=lambda e: e.name)
    except OSError as error:
        # E.g. a directory the script (running as root) made 0700: the stager's UID cannot list it.
        where = "/".join(parents) or "."
        skipped.append(Skipped(where, f"cannot list directory: {error.strerror or error}", unreadable=True))
        return
    for entry in ordered:
        parts = (*parents, entry.name)
        relative = "/".join(parts)
        if not _is_utf8(entry.name):
            skipped.append(
                Skipped(
                    relative.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                    "name is not valid UTF-8",
                )
            )
            continue
        # Never follow a link: lstat-based checks only.
        if entry.is_symlink():
            skipped.append(Skipped(relative, "symbolic link"))
        elif entry.is_dir(follow_symlinks=False):
            _walk(Path(entry.path), parts, files, skipped)
        elif entry.is_file(follow_symlinks=False):
            files.append(OutputFile(relative, Path(entry.path)))
        else:
            skipped.append(Skipped(relative, f"not a regular file ({_kind(entry)})"))


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir keeps undecodable bytes as lone surrogates
        return False
    return True


def _kind(entry: os.DirEntry[str]) -> str:
    mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def check_relative(relative: str) -> str:
    """``relative`` if it is a clean ``/``-separated path inside its root, else ``UnsafePathError``."""
    parts = relative.split("/")
    if relative.startswith("/") or any(part in {"", ".", ".."} for part in parts):
        raise UnsafePathError(f"output path {relative!r} is not a clean relative path")
    return relative


def output_key(folder: str, relative: str) -> str:
    """The object key of the file at ``relative`` for an output with ``folder`` (``folder/relative``)."""
    check_relative(relative)
    key = f"{folder.strip('/')}/{relative}" if folder.strip("/") else relative
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise UnsafePathError(f"key for {relative!r} is longer than S3's {MAX_KEY_BYTES} bytes")
    return key


def targets_for(relative: str, outputs: Iterable[OutputTarget]) -> list[OutputTarget]:
    """The outputs whose ``prefix``/``suffix`` filters accept the file at ``relative`` (OSCAR's rule)."""
    return [o for o in outputs if filters_accept(relative, o.prefix, o.suffix)]


def open_output(file: OutputFile, output_dir: Path) -> int:
    """A read-only descriptor of ``file``, refused (``UnsafePathError``) unless it is a regular file
    that really lies inside ``output_dir``: checked again at open time, since the scan may be stale."""
    check_relative(file.relative)
    root = real_dir(output_dir, "TMP_OUTPUT_DIR")
    resolved = (root / PurePosixPath(file.relative)).resolve()
    if not resolved.is_relative_to(root) or resolved != root / PurePosixPath(file.relative):
        raise UnsafePathError(f"output {file.relative!r} resolves outside TMP_OUTPUT_DIR or through a link")
    # O_NONBLOCK: a FIFO swapped in after the scan must not block the open.
    fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"output {file.relative!r} is no longer a regular file")
    return fd
