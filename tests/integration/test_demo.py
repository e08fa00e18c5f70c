"""``bucketrun demo --once`` as a user runs it, against the test session's RabbitMQ and S3 server.

The environment points the demo at the session's S3 server and gives it unique AMQP names, so it
reuses both instead of starting its own; its files go to a temporary working directory.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bucketrun.devtools.demo import SAMPLES
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope

pytestmark = pytest.mark.integration


def _environment(names: AmqpNames, s3: S3Scope, service: str) -> dict[str, str]:
    for role in ("ingress", "dlq", "retry.1s", "retry.5s", "retry.30s", "retry.120s", f"svc.{service}"):
        names.queue(role)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BUCKETRUN_")}
    environment.update(
        {
            "BUCKETRUN_AMQP__URL": names.url,
            "BUCKETRUN_AMQP__EXCHANGE": names.exchange("events"),
            "BUCKETRUN_AMQP__INGRESS_QUEUE": f"{names.prefix}.ingress",
            "BUCKETRUN_AMQP__DEAD_LETTER_EXCHANGE": names.exchange("dlx"),
            "BUCKETRUN_AMQP__DEAD_LETTER_QUEUE": f"{names.prefix}.dlq",
            "BUCKETRUN_AMQP__RETRY_EXCHANGE": names.exchange("retry"),
            "BUCKETRUN_AMQP__RETRY_QUEUE_PREFIX": f"{names.prefix}.retry",
            "BUCKETRUN_AMQP__SERVICE_QUEUE_PREFIX": f"{names.prefix}.svc",
            "BUCKETRUN_WATCHER__RESULTS_EXCHANGE": names.exchange("results"),
            "BUCKETRUN_STORAGE__ENDPOINT": s3.endpoint.endpoint,
            "BUCKETRUN_STORAGE__ACCESS_KEY": s3.endpoint.access_key,
            "BUCKETRUN_STORAGE__SECRET_KEY": s3.endpoint.secret_key,
            "BUCKETRUN_STORAGE__REGION": s3.endpoint.region,
            "BUCKETRUN_METRICS__PORT": "0",
        }
    )
    return environment


async def test_demo_once_ends_with_every_sample_s_outputs_in_the_output_bucket(
    amqp_names: AmqpNames, s3: S3Scope, tmp_path: Path
) -> None:
    name = s3.prefix
    for role in ("in", "out", "records"):
        s3.bucket(role, create=False)  # created by the demo, removed by the fixture
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bucketrun.cli.main",
        "demo",
        "--once",
        "--timeout",
        "90",
        "--name",
        name,
        cwd=tmp_path,
        env=_environment(amqp_names, s3, f"{name}-upper"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(demo.communicate(), 110)
    text = out.decode()
    assert demo.returncode == 0, text
    assert "S3: reusing" in text
    assert "moto" not in text  # it started no S3 server of its own

    client = s3.endpoint.client()
    for key, body in SAMPLES.items():
        file = key.rsplit("/", 1)[-1]
        for suffix, expected in (("", body.upper()), (".words", b"%d\n" % len(body.split()))):
            response = client.get_object(f"{name}-out", f"results/{file}{suffix}")
            try:
                assert response.read() == expected, (file, suffix)
            finally:
                response.close()
                response.release_conn()
            assert f"{name}-out/results/{file}{suffix}" in text
    assert (tmp_path / ".bucketrun-demo" / "services.yaml").is_file()
    records = [o.object_name for o in client.list_objects(f"{name}-records", recursive=True)]
    assert sum(1 for key in records if (key or "").endswith("/status.json")) == len(SAMPLES)
