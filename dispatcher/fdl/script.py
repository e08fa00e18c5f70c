"""The ``script`` field: inline shell text, or the name of a file next to the FDL file.

OSCAR FDLs mostly say ``script: split-video.sh`` (oscar-cli reads that file), while FDLs sent straight
to OSCAR's API (the AI4OS PAPI template) carry the text inline in a block scalar. The rule that tells
them apart is deliberately syntactic, so the same FDL never changes meaning with the files around it:

* a value **containing a line break** is inline text (write one-line scripts as ``script: |``);
* a value made only of **file-name characters** (letters, digits, ``. _ - + / @``; no spaces, no shell
  syntax) is a **path**, resolved against the FDL file's directory -- and it must exist;
* anything else (``echo hello``, ``exec /opt/run.sh "$INPUT_FILE_PATH"``) is inline text.

So a one-word command such as ``script: date`` is read as a file name and refused with a hint, never
silently run as a command -- and a mistyped file name is an error, never a one-word script.

A path is read where oscar-cli reads it: the FDL file's folder, then ``/``, then the value. So ``../``
climbs out of that folder, symlinks are followed, and a value starting with ``/`` is still read under
the FDL's folder (``/opt/run.sh`` next to ``fdl/svc.yaml`` is ``fdl/opt/run.sh``: oscar-cli joins the
two strings). An error names the absolute path that was tried. Like oscar-cli, loading reads any file
the loading process can read: whoever writes the FDL files is trusted with that (in Kubernetes the
dispatcher reads them from the ``bucketrun-services`` Secret, which only operators write). The script
must be UTF-8 text without NUL bytes, at most ``MAX_SCRIPT_BYTES``: it travels in the per-service
ConfigMap, whose whole object is limited to 1 MiB.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Final

from dispatcher.fdl.errors import shown

MAX_SCRIPT_BYTES: Final = 960 * 1024  # leaves room under the 1 MiB ConfigMap limit for metadata and wrapper
_MAX_PATH_CHARS: Final = 4096  # Linux's PATH_MAX
_PATH_LIKE: Final = re.compile(r"[A-Za-z0-9._/+@-]+")


def looks_like_path(value: str) -> bool:
    """Whether ``value`` names a script file rather than being the script (rule in the module docstring)."""
    return _PATH_LIKE.fullmatch(value) is not None


def check_script_text(text: str) -> str:
    """``text`` if it can be a script: non-blank, no NUL, at most ``MAX_SCRIPT_BYTES`` of UTF-8."""
    if not text.strip():
        raise ValueError("script is empty")
    if "\0" in text:
        raise ValueError("script contains a NUL byte")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SCRIPT_BYTES:
        raise ValueError(f"script is {size} bytes; at most {MAX_SCRIPT_BYTES} fit in its ConfigMap")
    return text


def script_location(value: str, base_dir: Path) -> Path:
    """Where oscar-cli reads script file ``value`` of an FDL in ``base_dir``, as an absolute path.

    oscar-cli joins the FDL's folder, ``/`` and the value as strings; ``..`` segments are left for the
    file system to follow, as it does. Only the absolute form of ``base_dir`` is added here.
    """
    return Path(base_dir.absolute(), value.lstrip("/"))


def resolve_script(value: str, base_dir: Path | None) -> str:
    """The script text ``value`` stands for: itself when inline, else the file it names under ``base_dir``.

    Raises ``ValueError`` naming the absolute path tried when the file is missing, is not a regular
    file, is too big or is not UTF-8 text.
    """
    if not looks_like_path(value):
        return check_script_text(value)
    if base_dir is None:
        raise ValueError(f"script file {shown(value)} cannot be read: no base directory was given")
    candidate = script_location(value, base_dir)
    if len(str(candidate)) > _MAX_PATH_CHARS:
        raise ValueError(f"script file {shown(value)} names a path longer than {_MAX_PATH_CHARS} characters")
    tried = repr(str(candidate))  # whole, never cut: the path tried is the point of the message
    try:
        # Checked first: opening a FIFO or a device would block or never end.
        if not stat.S_ISREG(candidate.stat().st_mode):
            raise ValueError(f"script file {tried} is not a regular file")
        with candidate.open("rb") as stream:
            data = stream.read(MAX_SCRIPT_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"script file {tried} not found ({_how_read(value)})") from None
    except OSError as error:
        raise ValueError(f"script file {tried} cannot be read: {error.strerror or error}") from None
    if len(data) > MAX_SCRIPT_BYTES:
        raise ValueError(f"script file {tried} is larger than {MAX_SCRIPT_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"script file {tried} is not UTF-8 text ({error.reason})") from None
    try:
        return check_script_text(text)
    except ValueError as error:
        raise ValueError(f"script file {tried}: {error}") from None


def _how_read(value: str) -> str:
    """Why that path was tried, and what the author may have meant instead."""
    if value.startswith("/"):
        return (
            f"{shown(value)} is read under the FDL's folder even though it starts with '/', as oscar-cli "
            "reads it; to run a program inside the image, write the script inline: 'script: |' then "
            "'exec /path'"
        )
    return (
        f"{shown(value)} is read relative to the FDL's folder, as oscar-cli reads it; a one-line value "
        "without spaces names a file: write an inline one-liner as a block, 'script: |'"
    )
