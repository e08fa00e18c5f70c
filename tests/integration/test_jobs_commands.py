"""`bucketrun jobs list|logs|delete` against both executors: the Kubernetes API (the emulator, its
kubelet running real processes) and the local executor (its state directory read from outside the
process that runs the Jobs), each with the real watcher writing records to the real S3.

A Job that must stay running waits for a file the test creates (`release`); every wait is on a
condition with a timeout (`until`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bucketrun.admin.jobs import EXIT_NOT_FOUND, EXIT_SKIPPED, delete_jobs
from bucketrun.cli.jobs import job_logs, list_jobs, parse_cursor, show_job
from dispatcher.adapters.kube import KubeApi, fetching
from dispatcher.domain.jobs import CreateOutcome
from dispatcher.executors.admin import JobStatus
from dispatcher.executors.local.executor import LocalExecutor
from dispatcher.runtime.settings import Settings
from tests.integration.dispatcher_process import child_environment
from tests.integration.stack import started, until
from tests.integration.watcher_support import WatcherEnv, job_doc, new_env
from watcher.app import run_watcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def held_job(name: str, release: Path) -> dict[str, Any]:
    """A Job whose `run` container says it waits, and runs until *release* exists."""
    doc = job_doc(name)
    run = doc["spec"]["template"]["spec"]["containers"][0]
    run["command"] = ["sh", "-c", f"echo waiting {name}; while [ ! -e {release} ]; do sleep 0.05; done"]
    return doc


@dataclass
class Where:
    """Where the test's Jobs run, with the settings `bucketrun jobs` reads them with."""

    kind: str
    env: WatcherEnv
    settings: Settings
    executor: LocalExecutor | None
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def create(self, *docs: dict[str, Any]) -> None:
        for doc in docs:
            if self.executor is None:
                await self.env.create_jobs([doc])
            else:
                assert await self.executor.create_job(doc) is CreateOutcome.CREATED

    async def start_watcher(self) -> None:
        await self.stack.enter_async_context(
            started(partial(run_watcher, self.settings, executor=self.executor), "watcher")
        )

    async def stop(self) -> None:
        """Stop the watcher and, locally, the executor (as stopping `bucketrun serve` does)."""
        await self.stack.aclose()

    async def pods(self, name: str, uid: str) -> list[Any]:
        """The pods of Job *name* (UID *uid*) that still exist (locally: its pods' workdirs)."""
        if self.executor is not None:
            pods = self.executor.state_dir / "jobs" / name / "pods"
            return list(pods.iterdir()) if pods.exists() else []
        async with await KubeApi.from_settings(self.settings.cluster) as api:
            return await fetching.job_pods(api, uid)


@pytest.fixture(params=["kubernetes", "local"])
async def where(request, amqp_names, s3, kube, tmp_path) -> AsyncIterator[Where]:
    kube.require_control().set_kubelet("run")
    env = await new_env(amqp_names, s3, kube, tmp_path)
    if request.param == "kubernetes":
        found = Where("kubernetes", env, env.settings, None)
        yield found
        await found.stop()
        return
    state = tmp_path / "state"
    cluster = env.settings.cluster.model_copy(update={"executor": "local", "local_state_dir": state})
    executor = LocalExecutor(state, max_running=4)
    found = Where("local", env, env.settings.model_copy(update={"cluster": cluster}), executor)
    await executor.start()
    found.stack.push_async_callback(executor.close)
    yield found
    await found.stop()


async def rows(where: Where, **filters: Any) -> dict[str, dict[str, Any]]:
    """`jobs list --json` (every page) as {job: row}, in the order listed."""
    text, code = await list_jobs(where.settings, "upper", as_json=True, limit=0, **filters)
    assert code == 0, text
    return {row["job"]: row for row in json.loads(text)["jobs"]}


def state_is(where: Where, **wanted: tuple[str, bool]):
    """A check that the listed Jobs have these (status, recorded) pairs; their rows when they do."""

    async def check():
        listed = await rows(where)
        got = {name: (row["status"], row["recorded"]) for name, row in listed.items() if name in wanted}
        return listed if got == wanted else None

    return check


async def next_second() -> None:
    """Wait until the clock has passed into the next second (creation times have whole seconds)."""
    start = datetime.now(UTC).replace(microsecond=0)

    async def passed() -> bool:
        return datetime.now(UTC).replace(microsecond=0) > start

    await until(passed, "the next second")


async def test_list_is_newest_first_filters_by_status_pages_and_logs_read_the_run_container(
    where: Where, tmp_path
) -> None:
    release = tmp_path / "release"
    await where.start_watcher()
    await where.create(job_doc("ok-job", exit_code=0))
    await next_second()
    await where.create(job_doc("bad-job", exit_code=1))
    await next_second()
    await where.create(held_job("held-job", release))
    listed = await until(
        state_is(
            where,
            **{
                "ok-job": ("succeeded", True),
                "bad-job": ("failed", True),
                "held-job": ("running", False),
            },
        ),
        f"two Jobs recorded and one running ({where.kind})",
    )
    assert list(listed) == ["held-job", "bad-job", "ok-job"]

    assert list(await rows(where, statuses={JobStatus.FAILED})) == ["bad-job"]
    assert list(await rows(where, statuses={JobStatus.RUNNING, JobStatus.PENDING})) == ["held-job"]
    assert list(await rows(where, statuses={JobStatus.SUCCEEDED, JobStatus.FAILED})) == ["bad-job", "ok-job"]

    # One Job a page: each page names where the next one starts, the last one says nothing more.
    pages: list[list[str]] = []
    before = None
    for _ in range(4):
        text, code = await list_jobs(where.settings, "upper", limit=1, before=before)
        assert code == 0
        lines = text.splitlines()
        assert lines[0].split() == ["JOB", "SERVICE", "STATUS", "CREATED", "STARTED", "FINISHED", "KEPT"]
        pages.append([line.split()[0] for line in lines[1:] if not line.startswith("(")])
        if not lines[-1].startswith("(more Jobs: --continue "):
            break
        before = parse_cursor(lines[-1].removeprefix("(more Jobs: --continue ").removesuffix(")"))
    assert pages == [["held-job"], ["bad-job"], ["ok-job"]]

    # The `run` container's whole log by default; --all heads each container's with its name.
    assert await job_logs(where.settings, "bad-job") == ("running bad-job", 0)
    text, code = await job_logs(where.settings, "bad-job", all_containers=True)
    assert code == 0
    assert text.startswith("==> run <==\nrunning bad-job\n==> stage-out <==\n{"), text
    assert json.loads(text.splitlines()[-1])["key"] == "out/bad-job.txt"
    assert await job_logs(where.settings, None, latest_of="upper") == ("waiting held-job", 0)
    assert (await job_logs(where.settings, None, latest_of="nobody"))[1] == EXIT_NOT_FOUND

    release.touch()
    await until(state_is(where, **{"held-job": ("succeeded", True)}), "the held Job done and recorded")


async def test_delete_spares_unfinished_and_unrecorded_jobs_and_removes_pods_and_records(
    where: Where, tmp_path
) -> None:
    release = tmp_path / "release"
    await where.create(job_doc("done-job", exit_code=0), held_job("held-job", release))
    await until(
        state_is(where, **{"done-job": ("succeeded", False), "held-job": ("running", False)}),
        f"one Job finished (no watcher yet) and one running ({where.kind})",
    )
    # Finished but not recorded yet: left alone, and so is the running Job (the real command line, with
    # its exit code).
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bucketrun.cli.main",
        *("jobs", "delete", "--service", "upper", "--status", "all"),
        env=child_environment(where.settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(command.communicate(), 60)
    assert command.returncode == EXIT_SKIPPED, stderr.decode()
    out = stdout.decode().splitlines()
    running_elsewhere = (
        "not finished, and it runs in the local executor of `bucketrun serve`, which alone can stop it: stop "
        "serve first (it runs the Job again at its next start unless the Job is deleted meanwhile)"
    )
    assert out[:2] == [
        "skip job held-job: "
        + (
            running_elsewhere
            if where.kind == "local"
            else "not finished (pending or running); --force deletes it and stops its pods"
        ),
        "skip job done-job: finished but not recorded yet (the watcher records it soon); --force deletes it "
        "unrecorded",
    ]
    assert out[2:] == ["deleted 0 job(s) and 0 record(s), 2 skipped"]
    await where.start_watcher()
    listed = await until(state_is(where, **{"done-job": ("succeeded", True)}), "the finished Job recorded")
    done_uid = listed["done-job"]["uid"]

    # A dry run prints what it would delete and deletes nothing.
    out = []
    assert await delete_jobs(
        where.settings, service="upper", status="succeeded", dry_run=True, emit=out.append
    ) == (
        "",
        0,
    )
    assert out == [
        "delete job done-job (succeeded)",
        "dry run: would delete 1 job(s) and 0 record(s); nothing was deleted",
    ]
    assert (await rows(where))["done-job"]["live"]

    # What oscar-cli's `service logs remove` does: the succeeded Jobs go, with their pods; the record stays.
    assert await job_logs(where.settings, "done-job") == ("running done-job", 0)
    out.clear()
    assert await delete_jobs(where.settings, service="upper", status="succeeded", emit=out.append) == ("", 0)
    assert out == ["delete job done-job (succeeded)", "deleted 1 job(s) and 0 record(s)"]
    kept = (await rows(where))["done-job"]
    assert (kept["live"], kept["recorded"], kept["status"]) == (False, True, "succeeded")

    async def no_pods() -> bool:
        return not await where.pods("done-job", done_uid)

    await until(no_pods, "the deleted Job's pods gone")
    assert await job_logs(where.settings, "done-job") == ("running done-job", 0)  # from the record

    # A Job only its record keeps is deleted with --records only.
    text, code = await delete_jobs(where.settings, ["done-job"], emit=out.append)
    assert code == EXIT_NOT_FOUND
    assert "only its record is left (--records deletes it)" in text
    out.clear()
    assert await delete_jobs(where.settings, ["done-job"], records=True, emit=out.append) == ("", 0)
    assert re.fullmatch(r"delete record done-job \([0-9]+ objects\)", out[0]), out
    assert "done-job" not in await rows(where)
    assert (await show_job(where.settings, "done-job"))[1] == EXIT_NOT_FOUND
    assert (await delete_jobs(where.settings, ["no-such-job"], emit=out.append))[1] == EXIT_NOT_FOUND

    # --force deletes a running Job and stops its pod; the local executor's only while serve is stopped.
    held_uid = (await rows(where))["held-job"]["uid"]
    out.clear()
    code = (await delete_jobs(where.settings, ["held-job"], force=True, emit=out.append))[1]
    if where.kind == "local":
        assert code == EXIT_SKIPPED
        assert out[0] == f"skip job held-job: {running_elsewhere}"
        assert (await rows(where))["held-job"]["status"] == "running"
        await where.stop()
        out.clear()
        code = (await delete_jobs(where.settings, ["held-job"], force=True, emit=out.append))[1]
    assert code == 0, out
    assert out == ["delete job held-job (unfinished)", "deleted 1 job(s) and 0 record(s)"]
    assert "held-job" not in await rows(where)

    async def held_pods_gone() -> bool:
        return not await where.pods("held-job", held_uid)

    await until(held_pods_gone, "the running Job's pods gone")
