"""Schemathesis against `bucketrun api`'s own OpenAPI document: no 5xx, and every answer is one the
document declares (status code, content type, body schema, headers).

The app runs in-process (Schemathesis' ASGI transport, one event loop for the whole run, the app's
lifespan started once) on the test's real store, cluster namespace and RabbitMQ names. Every operation
is generated twice, with schema-valid input and with input the schema refuses; a quarter of the
requests go without a credential; half name the service the run creates first, or a hostile name
('../escaped', 'a/b', a NUL), instead of the generated one. Generated services are pointed at the
test's buckets before they are sent, so a service that passes validation is applied only inside the
test's scope (its ConfigMap and Secrets in the test's namespace, its buckets among those the s3 fixture
removes).

The run is bounded (``MAX_EXAMPLES`` per operation and mode, ``DEADLINE`` per request) to stay under a
minute; Hypothesis' database is off, so a run never replays an earlier machine's examples.
"""

from __future__ import annotations

import asyncio
import base64
import time
import traceback
from typing import Any, Final

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bucketrun.api.app import create_app
from bucketrun.api.settings import ApiSettings
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.stack import amqp_settings, storage_settings

pytestmark = pytest.mark.integration

USER: Final = "oscar"
PASSWORD: Final = "schema-test-password-5d1e"
MAX_EXAMPLES: Final = 30
"""Examples per operation and generation mode."""
DEADLINE: Final = 20.0
"""Seconds one request may take (an apply reaches the store and the cluster several times)."""
BUDGET: Final = 60.0
"""Seconds the whole run may take."""
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
SERVICE: Final = "upper"
"""A service the run creates first; half the cases are pointed at it."""
SERVICE_BODY: Final = {"name": SERVICE, "image": "busybox:1.36", "script": 'cat "$INPUT_FILE_PATH"\n'}
SERVICE_PARAMETERS: Final = frozenset({"name", "service", "service_name"})
"""Path parameters that name a service."""
HOSTILE_NAMES: Final = ("../escaped", "a/b", "nul\x00", "..")
"""Names that are no service's, and that a file or object name must not be built from unchecked."""
_AUTHORIZATION: Final = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def settings_for(s3: S3Scope, kube: KubeTestEnv, names: AmqpNames) -> tuple[Settings, ApiSettings]:
    """The API's settings on the test's store, namespace and broker names."""
    settings = Settings.load(
        amqp=amqp_settings(names),
        storage=storage_settings(
            s3.endpoint,
            records_bucket=s3.bucket("records", create=False),
            **({"notify_arn": s3.endpoint.notify_arn} if s3.endpoint.notify_arn else {}),
        ),
        cluster={"executor": "kubernetes", "namespace": kube.namespace, "kubeconfig": kube.kubeconfig},
    )
    api = ApiSettings(
        username=USER, password=SecretStr(PASSWORD), definitions_bucket=s3.bucket("api", create=False)
    )
    return settings, api


def confined(body: Any, bucket: str) -> Any:
    """A generated service body whose input and output paths name *bucket* (the rest of each path
    kept), so applying it creates nothing outside the test's buckets; any other body as it is."""
    if not isinstance(body, dict):
        return body
    confined_body = dict(body)
    for field in ("input", "output"):
        entries = body.get(field)
        if isinstance(entries, list):
            confined_body[field] = [
                {**entry, "path": f"{bucket}/{str(entry.get('path', '')).partition('/')[2]}"}
                if isinstance(entry, dict)
                else entry
                for entry in entries
            ]
    return confined_body


def aim_at(case: Any, service: str) -> None:
    """Make *case* name *service* (its path's service, its body's name): the service the run starts
    with, so the answers for one that exists are checked too, or a hostile name."""
    parameters = case.path_parameters or {}
    for name in SERVICE_PARAMETERS & parameters.keys():
        parameters[name] = service
    if isinstance(case.body, dict) and "name" in case.body:
        case.body = {**case.body, "name": service}


def seed_service(app: Any, bucket: str) -> None:
    """Create SERVICE through the API, as oscar-cli would."""
    with asgi.get_client(app) as client:
        answer = client.post(
            "/system/services",
            json=SERVICE_BODY | {"input": [{"storage_provider": "minio.default", "path": f"{bucket}/in"}]},
            headers={"Authorization": _AUTHORIZATION},
        )
    assert answer.status_code == 201, f"the run's service was not created: {answer.status_code} {answer.text}"


def check_operation(operation: Any, mode: GenerationMode, bucket: str, failures: list[str]) -> None:
    """Run *operation* on up to ``MAX_EXAMPLES`` cases of *mode*; each failed check is added to
    *failures* (the first per operation and mode: Hypothesis stops at it and shrinks it)."""

    raised: list[str] = []  # the last failing request, and where it failed

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,  # a request's own bound is DEADLINE, below
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(
        case=operation.as_strategy(generation_mode=mode),
        authorised=st.integers(0, 3),
        aimed=st.sampled_from([None, None, SERVICE, SERVICE, *HOSTILE_NAMES]),
    )
    def run(case: Any, authorised: int, aimed: str | None) -> None:
        case.body = confined(case.body, bucket)
        if aimed is not None:
            aim_at(case, aimed)
        headers = {"Authorization": _AUTHORIZATION} if authorised else {}
        started = time.monotonic()
        try:
            case.call_and_validate(headers=headers, checks=CHECKS)
        except Exception:
            # Hypothesis reports the shrunk case, not where an exception of the app's arose: keep it.
            raised[:] = [f"{case.as_curl_command(headers=headers)}\n{traceback.format_exc(limit=-6)}"]
            raise
        took = time.monotonic() - started
        assert took < DEADLINE, f"{case.operation.label} took {took:.1f} s"

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        return  # nothing to negate: an operation without input has no negative case
    except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - every failure is reported, not raised
        where = raised[0] if raised else ""
        failures.append(f"{operation.label} ({mode.value}): {type(error).__name__}: {error}\n{where}")


def run_schemathesis(app: Any, bucket: str) -> tuple[list[str], int]:
    """Every operation of *app*'s document, both modes: (failures, operations checked)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Authorization": _AUTHORIZATION})
    failures: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"an operation Schemathesis cannot read: {result.err()}")
        else:
            operations.append(result.ok())
    try:
        seed_service(app, bucket)
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                check_operation(operation, mode, bucket, failures)
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan: its broker connection and the like
    return failures, len(operations)


async def test_every_answer_is_one_the_openapi_document_declares(
    s3: S3Scope, kube: KubeTestEnv, amqp_names: AmqpNames
) -> None:
    settings, api = settings_for(s3, kube, amqp_names)
    app = create_app(settings, api)
    bucket = s3.bucket("io", create=False)
    # In a thread of its own: the run is synchronous, and the servers' fixtures may need this loop.
    started = time.monotonic()
    try:
        failures, checked = await asyncio.wait_for(
            asyncio.to_thread(run_schemathesis, app, bucket), BUDGET * 3
        )
    finally:
        _forget_service_queues(amqp_names, api, s3)
    took = time.monotonic() - started
    assert checked >= 10, f"only {checked} operations in the document"
    assert not failures, "\n\n".join(failures)
    assert took < BUDGET, f"the run took {took:.0f} s, over its {BUDGET:.0f} s budget: lower MAX_EXAMPLES"


def _forget_service_queues(names: AmqpNames, api: ApiSettings, s3: S3Scope) -> None:
    """Register the per-service queues POST /job may have declared for the services generated, so the
    amqp_names fixture deletes them too."""
    client = s3.endpoint.client()
    if not client.bucket_exists(api.definitions_bucket):
        return
    for item in client.list_objects(api.definitions_bucket, prefix="services/"):
        name = (item.object_name or "").removeprefix("services/").removesuffix(".json")
        names.queue(f"svc.{name}")
