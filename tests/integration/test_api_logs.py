"""`bucketrun api`'s `/system/logs` routes against the suite's real cluster and store, with the real
watcher recording finished Jobs: what oscar-cli's and oscar-python's job calls (`service logs list`,
`get`, `remove`) see when some Jobs still exist and others are known by their records only.

The API runs in this test's event loop (httpx2's ASGI transport), beside the watcher; the service is
created through the API itself (`POST /system/services`), as oscar-cli's `apply` does. A Job that must
stay running waits for a file the test creates; every wait is on a condition with a timeout (`until`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bucketrun.admin.jobs import record_store
from bucketrun.api.app import create_app
from bucketrun.api.settings import ApiSettings
from dispatcher.domain.kube import name as kube_name
from dispatcher.executors.build import job_admin_of
from dispatcher.executors.local.executor import LocalExecutor
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.stack import until
from tests.integration.test_jobs_commands import Where, held_job, next_second
from tests.integration.watcher_support import job_doc, new_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER, PASSWORD = "oscar", "a-test-password-7d1e"
PAGE_SIZE = 2


@dataclass
class Served:
    """The API over one test's store and where its Jobs run, and the watcher recording them."""

    where: Where
    http: httpx2.AsyncClient

    @property
    def settings(self) -> Settings:
        return self.where.settings

    async def jobs(self, service: str = "upper") -> tuple[dict[str, dict[str, Any]], int]:
        """Every page of the service's Jobs merged, as oscar-cli's `service logs list` merges them, and
        how many pages there were. Fails if a Job is on two pages."""
        merged: dict[str, dict[str, Any]] = {}
        page, pages = "", 0
        while True:
            answer = await self.http.get(f"/system/logs/{service}", params={"page": page})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            pages += 1
            assert len(body["jobs"]) <= PAGE_SIZE
            assert not set(body["jobs"]) & set(merged), f"listed twice: {set(body['jobs']) & set(merged)}"
            merged.update(body["jobs"])
            if "next_page" not in body:
                return merged, pages
            page = body["next_page"]

    def statuses(self, *names: str) -> Any:
        """A check that the listed Jobs are exactly *names*' with these statuses (name=status pairs)."""

        async def check() -> dict[str, dict[str, Any]] | None:
            listed, _ = await self.jobs()
            got = {name: info["status"] for name, info in listed.items()}
            wanted = dict(pair.split("=") for pair in names)
            return listed if got == wanted else None

        return check

    async def recorded(self, name: str) -> bool:
        return await record_store(self.settings).read("upper", name) is not None

    async def job_names(self) -> set[str]:
        """The Jobs that exist where they run (of every service)."""
        async with job_admin_of(self.settings.cluster) as admin:
            return {kube_name(job) for job, _ in await admin.jobs(with_pods=False)}

    async def delete_job(self, name: str) -> None:
        """Delete the finished Job *name* where it runs, as its TTL would."""
        async with job_admin_of(self.settings.cluster) as admin:
            job = await admin.read_job(name)
            assert job is not None, name
            assert await admin.delete_job(job)


@pytest.fixture(params=["kubernetes", "local"])
async def served(
    request: pytest.FixtureRequest, amqp_names: AmqpNames, s3: S3Scope, kube: KubeTestEnv, tmp_path: Path
) -> AsyncIterator[Served]:
    if s3.endpoint.notify_arn is None:
        pytest.skip("creating a service needs MinIO's AMQP notifications (moto has none): run make servers")
    kube.require_control().set_kubelet("run")
    env = await new_env(amqp_names, s3, kube, tmp_path)
    storage = env.settings.storage.model_copy(update={"notify_arn": s3.endpoint.notify_arn})
    settings = env.settings.model_copy(update={"storage": storage})
    executor = None
    if request.param == "local":
        state = tmp_path / "state"
        cluster = settings.cluster.model_copy(update={"executor": "local", "local_state_dir": state})
        settings = settings.model_copy(update={"cluster": cluster})
        executor = LocalExecutor(state, max_running=4)
    where = Where(request.param, env, settings, executor)
    if executor is not None:
        await executor.start()
        where.stack.push_async_callback(executor.close)
    api = ApiSettings(
        username=USER,
        password=PASSWORD,
        definitions_bucket=s3.bucket("api", create=False),
        job_listing_limit=PAGE_SIZE,
    )
    transport = httpx2.ASGITransport(app=create_app(settings, api))
    try:
        async with httpx2.AsyncClient(
            transport=transport, base_url="http://api", auth=(USER, PASSWORD), timeout=60
        ) as http:
            await where.start_watcher()
            yield Served(where, http)
    finally:
        await where.stop()


def service_body(inputs: str) -> dict[str, Any]:
    """What oscar-cli posts for a small FDL service (the fields bucketrun reads)."""
    return {
        "name": "upper",
        "image": "busybox:1.36",
        "script": 'tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"\n',
        "input": [{"storage_provider": "minio.default", "path": f"{inputs}/in"}],
        "output": [{"storage_provider": "minio.default", "path": f"{inputs}/out"}],
    }


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


async def test_jobs_in_the_cluster_and_in_the_records_are_listed_paged_logged_and_deleted(
    served: Served, s3: S3Scope, tmp_path: Path
) -> None:
    http = served.http
    created = await http.post("/system/services", json=service_body(s3.bucket("inputs", create=False)))
    assert created.status_code == 201, created.text
    assert (await http.get("/system/logs/upper")).json() == {"jobs": {}}

    release = tmp_path / "release"
    where = served.where
    await where.create(job_doc("gone-job", exit_code=0))
    await next_second()
    await where.create(job_doc("bad-job", exit_code=1), job_doc("other-job", service="other"))
    await next_second()
    await where.create(job_doc("ok-job", exit_code=0))
    await next_second()
    await where.create(held_job("held-job", release))

    async def recorded() -> bool:
        return all([await served.recorded(name) for name in ("gone-job", "bad-job", "ok-job")])

    await until(recorded, "three finished Jobs recorded by the watcher")
    # gone-job is known by its record only from now on, as after the Job TTL.
    await served.delete_job("gone-job")

    async def gone() -> bool:
        return "gone-job" not in await served.job_names()

    await until(gone, "gone-job's Job deleted")
    listed = await until(
        served.statuses("held-job=Running", "ok-job=Succeeded", "bad-job=Failed", "gone-job=Succeeded"),
        "four Jobs listed, one running",
    )
    # Newest first across pages, each Job once; the other service's Job on none.
    assert list(listed) == ["held-job", "ok-job", "bad-job", "gone-job"]
    assert (await served.jobs())[1] == 2
    for name, info in listed.items():
        assert utc(info["creation_time"]) <= utc(info["start_time"]), name
        if name == "held-job":
            assert "finish_time" not in info
        else:
            assert utc(info["start_time"]) <= utc(info["finish_time"]), name
    assert utc(listed["gone-job"]["creation_time"]) < utc(listed["bad-job"]["creation_time"])

    # The run container's log: from the pod while it exists, from the record once the Job is gone.
    for name in ("bad-job", "gone-job"):
        answer = await http.get(f"/system/logs/upper/{name}")
        assert (answer.status_code, answer.text.strip()) == (200, f"running {name}")
        assert answer.headers["content-type"].startswith("text/plain")
    assert (await http.get("/system/logs/upper/held-job")).text.strip() == "waiting held-job"
    for missing in ("/system/logs/upper/other-job", "/system/logs/upper/no-such-job", "/system/logs/nobody"):
        answer = await http.get(missing)
        assert (answer.status_code, answer.text) == (404, ""), missing

    # OSCAR's default delete: the succeeded Jobs, with their records; the failed and the running stay.
    answer = await http.delete("/system/logs/upper")
    assert (answer.status_code, answer.text) == (204, "")
    await until(served.statuses("held-job=Running", "bad-job=Failed"), "the succeeded Jobs deleted")
    assert not await served.recorded("ok-job")
    assert not await served.recorded("gone-job")
    assert "ok-job" not in await served.job_names()

    # One Job: from the cluster and from the records; a second time it is not found.
    answer = await http.delete("/system/logs/upper/bad-job")
    assert (answer.status_code, answer.text) == (204, "")
    assert "bad-job" not in await served.job_names()
    assert not await served.recorded("bad-job")
    assert (await http.get("/system/logs/upper/bad-job")).status_code == 404
    assert (await http.delete("/system/logs/upper/bad-job")).status_code == 404
    assert (await http.delete("/system/logs/upper/other-job")).status_code == 404  # not upper's

    # all=true: the running one too (its pods stopped); the other service's Job stays. The local
    # executor's Job only once `serve` (here: the executor and the watcher) has stopped.
    answer = await http.delete("/system/logs/upper", params={"all": "true"})
    if where.kind == "local":
        assert answer.status_code == 409
        assert answer.text.startswith("skip job held-job: not finished, and it runs in the local executor")
        assert (await http.get("/system/logs/upper/held-job")).text.strip() == "waiting held-job"
        await where.stop()
        answer = await http.delete("/system/logs/upper", params={"all": "true"})
    assert (answer.status_code, answer.text) == (204, "")
    assert (await http.get("/system/logs/upper")).json() == {"jobs": {}}
    assert await served.job_names() == {"other-job"}
