"""The real, unmodified oscar-cli, run as a user runs it, for the tests of `bucketrun api`.

oscar-cli is built from source by `make servers` (its pin in .ci/servers.env; `BUCKETRUN_OSCAR_CLI`
names another build). Every call names a config file of the test's own (`--config`): oscar-cli finds
its default ~/.oscar-cli/config.yaml through the password database, not $HOME, so only the flag keeps
the user's file unread and unwritten.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

from bucketrun.devtools.minio_server import servers_dir

RUN_TIMEOUT = 90.0


def oscar_cli_binary() -> Path:
    """The oscar-cli to run; skips where it was not built (fails under CI unless the module proxy does
    not serve it, which `make servers` records in bin/oscar-cli.unavailable)."""
    configured = os.environ.get("BUCKETRUN_OSCAR_CLI")
    path = Path(configured) if configured else servers_dir() / "bin" / "oscar-cli"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    unavailable = servers_dir() / "bin" / "oscar-cli.unavailable"
    if unavailable.is_file():
        pytest.skip(f"oscar-cli is not built: {unavailable.read_text().strip()}")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI builds oscar-cli with make servers, yet {path} is missing")
    pytest.skip(f"oscar-cli is not built ({path} missing): run make servers")


class OscarCli:
    """oscar-cli with a HOME of its own, against one `bucketrun api`."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.config = home / "oscar-cli.yaml"

    async def __call__(self, *args: str) -> tuple[int, str]:
        """Run ``oscar-cli ARGS --config <the test's file>`` on a terminal of its own, as a user runs it
        (its spinners print their closing line only there): (exit code, what it wrote, colours and
        carriage returns taken out)."""
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "dumb"}
        controller, terminal = pty.openpty()
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary,
                *args,
                "--config",
                str(self.config),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=terminal,
                stderr=terminal,
            )
        finally:
            os.close(terminal)
        reader = asyncio.create_task(asyncio.to_thread(_read_all, controller))
        try:
            async with asyncio.timeout(RUN_TIMEOUT):
                await process.wait()
                written = await reader
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"oscar-cli {' '.join(args)} did not finish within {RUN_TIMEOUT} s")
        finally:
            os.close(controller)
        assert process.returncode is not None
        text = _ANSI.sub("", written.decode(errors="replace")).replace("\r\n", "\n")
        return process.returncode, "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _read_all(fd: int) -> bytes:
    """Everything written to the terminal whose controlling side is *fd*, until its last writer closed."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: no process holds the terminal any more
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
