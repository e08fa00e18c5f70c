"""Ending the servers the developer tools start: each runs in a session of its own, so its process id
is its process group's, and stopping it ends everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM *process*'s process group, SIGKILL it when *process* has not exited within *timeout*
    seconds; wait for it either way. Nothing happens when it has exited already."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
