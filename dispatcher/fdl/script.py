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

Safety: a path must stay inside the FDL's directory after resolving symlinks (an absolute path or a
``../`` escape could otherwise copy any file the dispatcher can read -- its service-account token, say
-- into a ConfigMap the job mounts). The script must be UTF-8 text without NUL bytes, at most
``MAX_SCRIPT_BYTES``: it travels in the per-service ConfigMap, whose whole object is limited to 1 MiB.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from dispatcher.fdl.errors import shown

MAX_SCRIPT_BYTES: Final = 960 * 1024  # leaves room under the 1 MiB ConfigMap limit for metadata and wrapper
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


def resolve_script(value: str, base_dir: Path | None) -> str:
    """The script text ``value`` stands for: itself when inline, else the file it names under ``base_dir``.

    Raises ``ValueError`` naming the path when the file is missing, escapes ``base_dir``, is not a
    regular file, is too big or is not UTF-8 text.
    """
    if not looks_like_path(value):
        return check_script_text(value)
    if base_dir is None:
        raise ValueError(f"script file {shown(value)} cannot be read: no base directory was given")
    if value.startswith("/"):
        raise ValueError(
            f"script file {shown(value)} is an absolute path; script files must lie in the FDL's directory "
            "(to run a program inside the image, write the script inline: 'script: |' then 'exec /path')"
        )
    candidate = base_dir / value
    root = base_dir.resolve()
    try:
        resolved = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise ValueError(
            f"script file {shown(str(candidate))} not found (a one-line value without spaces names a file; "
            "write an inline one-liner as a block: 'script: |')"
        ) from None
    except (OSError, RuntimeError) as error:  # symlink loops raise RuntimeError before Python 3.13
        raise ValueError(f"script file {shown(str(candidate))} cannot be resolved: {error}") from None
    if not resolved.is_relative_to(root):
        raise ValueError(
            f"script file {shown(value)} resolves outside the FDL's directory {shown(str(root))}"
        )
    if not resolved.is_file():
        raise ValueError(f"script file {shown(str(candidate))} is not a regular file")
    with resolved.open("rb") as stream:
        data = stream.read(MAX_SCRIPT_BYTES + 1)
    if len(data) > MAX_SCRIPT_BYTES:
        raise ValueError(f"script file {shown(str(candidate))} is larger than {MAX_SCRIPT_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"script file {shown(str(candidate))} is not UTF-8 text ({error.reason})") from None
    try:
        return check_script_text(text)
    except ValueError as error:
        raise ValueError(f"script file {shown(str(candidate))}: {error}") from None
