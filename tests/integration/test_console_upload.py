"""A person's upload through MinIO's console reaches a Job, and its results show in the console.

``bucketrun demo`` runs as a user starts it (the built MinIO, its bucket notifications, no poller);
a headless Chromium (Debian's, tests/integration/minio_console.py) logs into the console with the
credentials the demo printed, opens the service's input folder ``in/``, uploads a file through the
console's upload control, waits for its outputs in ``<name>-out/results/``, then opens that folder and
saves a screenshot of it. The screenshot goes to the test's temporary directory; with
``BUCKETRUN_UPDATE_SCREENSHOT=1`` it also replaces ``docs/images/console-output.png`` (the README's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.backends.minio_server import require_built
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Endpoint
from tests.integration.minio_console import console, require_browser
from tests.integration.stack import until
from tests.integration.test_demo import demo_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

NAME = "bucketrun-demo"  # the demo's own MinIO: its default names, as in the README's screenshot
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "console-output.png"
UPLOAD = b"files dropped into the console\nbecome jobs too\n"
_STARTED = re.compile(r"S3: started MinIO \S+ on (?P<endpoint>\S+)")
_CONSOLE = re.compile(r"MinIO console: (?P<url>\S+)  user (?P<user>\S+)  password (?P<password>\S+)")


@dataclass
class RunningDemo:
    """``bucketrun demo`` in a subprocess, its output read as it comes (a full pipe would block it)."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    async def read(self) -> None:
        """Collect the output until the process closes it."""
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace"))

    @property
    def text(self) -> str:
        """Everything printed so far."""
        return "".join(self.lines)

    async def found(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """The first match of *pattern* so far (async, for `until`); fails when the demo has exited."""
        assert self.process.returncode is None, f"the demo exited early:\n{self.text}"
        return pattern.search(self.text)


async def test_a_file_uploaded_in_the_console_becomes_a_job_whose_outputs_the_console_shows(
    amqp_names: AmqpNames, tmp_path: Path
) -> None:
    require_built("minio")
    require_browser()
    evidence = tmp_path / "browser"
    evidence.mkdir()
    upload = tmp_path / "from-the-console.txt"
    upload.write_bytes(UPLOAD)

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bucketrun.cli.main",
        "demo",
        cwd=tmp_path,
        env=demo_environment(amqp_names, f"{NAME}-upper"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    demo = RunningDemo(process)
    reader = asyncio.create_task(demo.read())
    try:
        login = await until(lambda: demo.found(_CONSOLE), "the demo's console line", within=60)
        started = await until(lambda: demo.found(_STARTED), "the demo's MinIO line")
        await until(lambda: demo.found(re.compile("all samples done")), "the demo's own samples", within=90)
        s3 = S3Endpoint(started["endpoint"], login["user"], login["password"], backend="minio")

        def upload_through_the_console() -> None:
            with console(login["url"], evidence) as browser:
                browser.login(login["user"], login["password"])
                browser.open_bucket(f"{NAME}-in")
                browser.open_folder("in")
                browser.upload(upload)

        await asyncio.to_thread(upload_through_the_console)

        client = s3.client()
        outputs = {f"results/{upload.name}": UPLOAD.upper(), f"results/{upload.name}.words": b"8\n"}

        async def written() -> bool:
            names = {o.object_name for o in client.list_objects(f"{NAME}-out", prefix="results/")}
            return set(outputs) <= names

        await until(written, f"the outputs of {upload.name} in {NAME}-out/results/", within=60)
        for key, expected in outputs.items():
            response = client.get_object(f"{NAME}-out", key)
            try:
                assert response.read() == expected, key
            finally:
                response.close()
                response.release_conn()

        def screenshot_of_the_outputs() -> None:
            with console(login["url"], evidence) as browser:
                browser.login(login["user"], login["password"])
                browser.open_folder_by_url(f"{NAME}-out", "results")
                browser.shows(f"{upload.name}.words")
                browser.screenshot(evidence / SCREENSHOT.name)
                if os.environ.get("BUCKETRUN_UPDATE_SCREENSHOT") == "1":
                    browser.screenshot(SCREENSHOT)

        await asyncio.to_thread(screenshot_of_the_outputs)
        assert (evidence / SCREENSHOT.name).stat().st_size > 0
        assert f"{upload.name}" in demo.text  # the demo printed the job of the console's upload
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            process.kill()
            await process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert process.returncode == 0, demo.text
    assert "stopped MinIO" in demo.text
