"""Find processes a test run left behind: every live descendant of the pytest process."""

from __future__ import annotations

import os
from pathlib import Path


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    state, ppid = fields[0], int(fields[1])
    return None if state == "Z" else ppid


def descendants(root: int | None = None) -> dict[int, str]:
    """Live (non-zombie) descendants of *root* (default: this process), as pid -> command line."""
    root = os.getpid() if root is None else root
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (ppid := _parent_of(int(entry.name))) is not None:
            parents[int(entry.name)] = ppid
    found: dict[int, str] = {}
    frontier = {root}
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in found}
        for pid in children:
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            found[pid] = cmdline.strip()
        frontier = children
    return found
