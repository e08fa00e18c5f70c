"""The dashboard and the alert rules against a real Prometheus scraping a running dispatcher, watcher and API.

Set-up, as in production on Kubernetes: the dispatcher and the watcher run apart (each with its own
registry and /metrics port, so the per-component ``up`` and the watcher's Lease-based leader gauge are
real), both with the kubernetes executor on the API emulator, whose kubelet runs the Jobs' pods for
real. RabbitMQ and S3 (moto) are real servers; the test plays MinIO by publishing the notifications.
The API (over an in-memory catalog: its metrics are what is checked here) serves its metrics port as
`bucketrun api` does. Prometheus (Debian's binary) scrapes all three every second with the real rules
file.

Workload: successful Jobs of a capped service (one at a time, so later uploads are retried
"at-capacity"), a redelivered event (409: the Job exists), a failing script, an unparseable message
(dead-lettered) and a folder marker (ignored); API requests served, refused (401) and of an unknown
service (404). Then every panel query of the committed dashboard must
parse and return a number, except the panels that need RabbitMQ's own plugin (not scraped here), which
must parse; every rule must parse and evaluate without error, every recording rule must return a
number, and the one alert the workload provokes (dead letters) must be active.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - the test plays MinIO
import aiohttp
import pytest

from bucketrun.api.app import create_app
from bucketrun.api.settings import ApiSettings
from dispatcher.domain.events import build_message
from dispatcher.process.app import run_dispatcher
from dispatcher.runtime.settings import Settings
from tests.backends import free_port
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.prometheus import Prometheus, running_prometheus, scrape_config, wait_for_data
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.api_process import api_in_loop
from tests.integration.dispatcher_process import with_settings
from tests.integration.stack import started, until
from tests.integration.watcher_support import make_settings
from tests.observability_files import (
    RULES_FILE,
    committed_dashboard,
    load_builder,
    panel_queries,
    recorded_names,
    rules,
)
from tests.unit.test_api_oscar import MemoryCatalog
from watcher.app import run_watcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = ("upper", "broken")
FDL = """
functions:
  oscar:
  - c:
      name: upper
      image: busybox:1.36
      script: |
        sleep 1
        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"
      input: [{storage_provider: minio, path: DATA/in}]
      output: [{storage_provider: minio, path: DATA/out}]
      bucketrun: {max_concurrent_jobs: 1}
  - c:
      name: broken
      image: busybox:1.36
      script: |
        echo "failing on purpose" >&2
        exit 3
      input: [{storage_provider: minio, path: DATA/fail}]
      output: [{storage_provider: minio, path: DATA/never}]
"""
WAIT = 45.0
API_USER, API_PASSWORD = "oscar", "observed-password"


@dataclass
class Workload:
    """Plays MinIO: puts objects and publishes the notification each upload would produce."""

    settings: Settings
    names: AmqpNames
    s3: S3Scope
    data: str
    api: str
    sequencer: int = 0x17A76FE05CF30000

    def upload(self, key: str, body: bytes) -> bytes:
        """Put *body* at *key*; the MinIO notification of that upload (not yet published)."""
        client = self.s3.endpoint.client()
        result = client.put_object(self.data, key, io.BytesIO(body), len(body))
        return self.notification(key, len(body), str(result.etag))

    def notification(self, key: str, size: int, etag: str) -> bytes:
        self.sequencer += 1
        return build_message(
            event_name="s3:ObjectCreated:Put",
            bucket=self.data,
            key=key,
            size=size,
            etag=etag,
            sequencer=f"{self.sequencer:X}",
        )

    async def call_api(self) -> None:
        """One served, one refused and one unknown-service request to the API."""
        basic = "Basic " + base64.b64encode(f"{API_USER}:{API_PASSWORD}".encode()).decode()
        async with aiohttp.ClientSession(self.api) as session:
            for path, headers, status in (
                ("/system/info", {"Authorization": basic}, 200),
                ("/system/info", {}, 401),
                ("/system/services/no-such-service", {"Authorization": basic}, 404),
            ):
                async with session.get(path, headers=headers) as answer:
                    assert answer.status == status, path

    async def publish(self, *bodies: bytes) -> None:
        connection = await aio_pika.connect(self.names.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.settings.amqp.exchange)
            for body in bodies:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await exchange.publish(message, "")


@pytest.fixture
async def observed(amqp_names, s3, kube, tmp_path) -> AsyncIterator[tuple[Prometheus, Workload]]:
    """Dispatcher and watcher running, Prometheus scraping both and seeing them up."""
    kube.require_control().set_kubelet("run")
    settings, data = _settings(amqp_names, s3, kube, tmp_path)
    dispatcher = with_settings(settings, metrics={"port": free_port()})
    watcher = with_settings(settings, metrics={"port": free_port()})
    api_metrics_port = free_port()
    api = create_app(settings, ApiSettings(username=API_USER, password=API_PASSWORD), MemoryCatalog())
    config = scrape_config(
        {
            "bucketrun-dispatcher": f"127.0.0.1:{dispatcher.metrics.port}",
            "bucketrun-watcher": f"127.0.0.1:{watcher.metrics.port}",
            "bucketrun-api": f"127.0.0.1:{api_metrics_port}",
        },
        [RULES_FILE],
    )
    (tmp_path / "prometheus").mkdir()
    async with (
        started(partial(run_dispatcher, dispatcher), "dispatcher", within=60),
        started(partial(run_watcher, watcher), "watcher", within=60),
        api_in_loop(api, api_metrics_port) as api_url,
        running_prometheus(config, tmp_path / "prometheus") as prometheus,
    ):
        try:
            await wait_for_data(
                prometheus,
                'sum(up{job=~"bucketrun-(dispatcher|watcher|api)"}) == 3',
                "three targets up",
                WAIT,
            )
            await wait_for_data(prometheus, "sum(bucketrun_watcher_leader) == 1", "a leader", WAIT)
            # The DLQ's depth sampled at 0 before the workload, so its growth shows.
            await wait_for_data(
                prometheus, 'bucketrun_queue_messages{queue=~".+\\\\.dead-letter"}', "a DLQ sample", WAIT
            )
            yield prometheus, Workload(settings, amqp_names, s3, data, api_url)
        finally:
            print(f"--- prometheus log (tail) ---\n{prometheus.log()[-6000:]}")  # shown on failure only


def _settings(names: AmqpNames, s3: S3Scope, kube: KubeTestEnv, tmp_path: Path) -> tuple[Settings, str]:
    """The watcher tests' settings on this test's names, and the data bucket the services use."""
    data, records = s3.bucket("data"), s3.bucket("records")
    fdl = tmp_path / "services.yaml"
    fdl.write_text(FDL.replace("DATA", data))
    results = names.exchange("results")
    settings = make_settings(names, s3, kube, fdl, records_bucket=records, exchange=results)
    # bucketrun's default queue suffixes, which the dashboard's and the rules' queue matchers expect.
    for service in SERVICES:
        names.queue(f"service.{service}")
    amqp = {
        "dead_letter_queue": names.queue("dead-letter"),
        "service_queue_prefix": f"{names.prefix}.service",
    }
    return with_settings(settings, amqp=amqp, metrics={"queue_sample_interval": 1.0}), data


async def _drive(prometheus: Prometheus, load: Workload) -> None:
    """The workload, waiting on what Prometheus has scraped (never on time)."""
    first = load.upload("in/a.txt", b"first upload\n")
    await load.publish(first)
    await load.call_api()
    # Labelled series appear with their first increment, which rate() cannot see: let Prometheus scrape
    # the first Job's series before the rest of the workload moves them.
    await wait_for_data(
        prometheus, "sum(bucketrun_records_written_total) >= 1", "the first Job recorded", WAIT
    )
    await wait_for_data(prometheus, "sum(bucketrun_api_requests_total) >= 3", "the first API requests", WAIT)
    await load.call_api()
    await load.publish(
        *(load.upload(f"in/{name}.txt", b"more words\n") for name in ("b", "c", "d")),
        first,  # redelivered: its Job exists already
        load.upload("fail/x.txt", b"input of a failing script\n"),
        b"{this is not json",
        load.notification("in/", 0, "d41d8cd98f00b204e9800998ecf8427e"),  # a folder marker
    )
    for expr, what in (
        ("sum(bucketrun_records_written_total) >= 5", "five Jobs recorded"),
        ('sum(bucketrun_jobs_finished_total{service="broken", outcome="failed"}) >= 1', "the failed Job"),
        ('sum(bucketrun_jobs_finished_total{service="upper", outcome="succeeded"}) >= 4', "four successes"),
        ('sum(bucketrun_dead_lettered_total{reason="not-json"}) >= 1', "the dead letter"),
        ('sum(bucketrun_jobs_created_total{result="exists"}) >= 1', "the redelivered event's 409"),
        ('sum(bucketrun_retries_total{kind="at-capacity"}) >= 1', "an at-capacity retry"),
        ('sum(bucketrun_events_ignored_total{reason="folder-marker"}) >= 1', "the ignored folder marker"),
        ('max(bucketrun_queue_messages{queue=~".+\\\\.dead-letter"}) >= 1', "the DLQ depth sampled"),
        ("sum(bucketrun_api_requests_total) >= 6", "the second API requests"),
    ):
        await wait_for_data(prometheus, expr, what, WAIT)


async def test_every_panel_and_rule_evaluates_against_real_metrics(observed) -> None:
    prometheus, load = observed
    await _drive(prometheus, load)

    queries = panel_queries(committed_dashboard())
    plugin_panels = set(load_builder().NEEDS_RABBITMQ_PLUGIN)
    assert {query.panel for query in queries if "rabbitmq_" in query.expr} == plugin_panels
    for query in queries:  # every query parses, the plugin's too
        answer = await prometheus.query(query.promql)
        assert answer["status"] == "success", f"{query.panel} {query.ref_id}: {answer.get('error')}"

    expected = [query for query in queries if query.panel not in plugin_panels]
    assert len(expected) >= 25

    lacking: list[str] = []

    async def all_have_data() -> bool:
        lacking[:] = [
            f"{q.panel} {q.ref_id}: {q.promql}" for q in expected if not await prometheus.has_data(q.promql)
        ]
        return not lacking

    try:
        await until(all_have_data, "every panel query to return data", within=WAIT)
    except pytest.fail.Exception:
        pytest.fail("panel queries without data:\n" + "\n".join(lacking))

    services = await prometheus.get("label/service/values", **{"match[]": "bucketrun_running_jobs"})
    assert set(services["data"]) == set(SERVICES)  # the $service variable's choices

    for rule in rules():
        answer = await prometheus.query(rule["expr"])
        name = rule.get("alert") or rule.get("record")
        assert answer["status"] == "success", f"{name}: {answer.get('error')}"

    async def rules_evaluated() -> list[dict[str, Any]] | None:
        groups = (await prometheus.get("rules"))["data"]["groups"]
        loaded = [rule for group in groups for rule in group["rules"]]
        never = "0001-01-01T00:00:00Z"  # Go's zero time: not evaluated yet
        done = len(loaded) == len(rules()) and all(r["lastEvaluation"] != never for r in loaded)
        return loaded if done else None

    loaded = await until(rules_evaluated, "every rule evaluated once", within=WAIT)
    assert [(r["name"], r["health"], r.get("lastError", "")) for r in loaded if r["health"] != "ok"] == []

    for name in sorted(recorded_names()):
        await wait_for_data(prometheus, name, f"recording rule {name}", WAIT)

    # What the workload provokes: the dead letter (seen in the DLQ's depth) makes that alert pending.
    async def active_alerts() -> set[str] | None:
        found = {alert["labels"]["alertname"] for alert in (await prometheus.get("alerts"))["data"]["alerts"]}
        return found or None

    assert await until(active_alerts, "an active alert", within=WAIT) == {"BucketrunDeadLettersGrowing"}
