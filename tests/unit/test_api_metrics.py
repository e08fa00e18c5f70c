"""`bucketrun api`'s Prometheus metrics: requests by method, route template and code, and their latency,
read from the registry and from the metrics port as Prometheus scrapes it."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import uvicorn
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bucketrun.api.app import create_app
from bucketrun.api.metrics import metrics_of
from bucketrun.api.server import MetricsPortError, serve_on
from bucketrun.api.settings import ApiSettings
from dispatcher.runtime.settings import MetricsSettings
from tests.backends import free_port
from tests.integration.api_process import api_in_loop
from tests.unit.test_api_oscar import MemoryCatalog, settings

USER, PASSWORD = "oscar", "the-password"
AUTH = (USER, PASSWORD)
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def app_with_catalog() -> Any:
    return create_app(settings(), ApiSettings(username=USER, password=PASSWORD), MemoryCatalog())


@pytest.fixture
def app() -> Any:
    return app_with_catalog()


@pytest.fixture
def api(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called *name* in a Prometheus text exposition, by their sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def requests_total(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (labels["method"], labels["route"], labels["code"]): value
        for key, value in samples(text, "bucketrun_api_requests_total").items()
        for labels in [dict(key)]
    }


def test_requests_are_counted_by_route_template_method_and_code(api: TestClient, app: Any) -> None:
    api.get("/health")
    for _ in range(3):
        assert api.get("/system/info", auth=AUTH).status_code == 200
    assert api.get("/system/info").status_code == 401
    assert api.get("/system/services/a-secret-project-name", auth=AUTH).status_code == 404
    assert api.delete("/system/services/another-name", auth=AUTH).status_code == 404
    assert api.get("/no/such/path/user-typed").status_code == 404
    assert api.request("BREW", "/system/info", auth=AUTH).status_code == 405

    text = generate_latest(metrics_of(app).registry).decode()
    counted = requests_total(text)
    assert counted[("GET", "/health", "200")] == 1
    assert counted[("GET", "/system/info", "200")] == 3
    assert counted[("GET", "/system/info", "401")] == 1
    assert counted[("GET", "/system/services/{name}", "404")] == 1
    assert counted[("DELETE", "/system/services/{name}", "404")] == 1
    assert counted[("GET", "unmatched", "404")] == 1
    assert counted[("other", "/system/info", "405")] == 1
    for typed in ("a-secret-project-name", "another-name", "user-typed", "BREW"):
        assert typed not in text

    latency = samples(text, "bucketrun_api_request_duration_seconds_count")
    assert latency[(("method", "GET"), ("route", "/system/info"))] == 4
    buckets = samples(text, "bucketrun_api_request_duration_seconds_bucket")
    assert buckets[(("le", "+Inf"), ("method", "GET"), ("route", "/system/info"))] == 4
    assert 'bucketrun_build_info{component="api"' in text


def test_an_error_the_app_raises_is_counted_as_500(app: Any) -> None:
    @app.get("/boom-for-the-test")
    async def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom-for-the-test").status_code == 500
    counted = requests_total(generate_latest(metrics_of(app).registry).decode())
    assert counted[("GET", "/boom-for-the-test", "500")] == 1


async def test_the_metrics_port_serves_what_the_api_counted(app: Any) -> None:
    metrics_port = free_port()
    async with api_in_loop(app, metrics_port) as api_url, aiohttp.ClientSession() as session:
        async with session.get(f"{api_url}/system/services/x", headers=BASIC) as answer:
            assert answer.status == 404
        async with session.get(f"{api_url}/metrics", headers=BASIC) as answer:
            assert answer.status == 404  # not on the API's port
        async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
            assert answer.status == 200
            text = await answer.text()
        async with session.get(f"http://127.0.0.1:{metrics_port}/readyz") as answer:
            assert answer.status == 200
    counted = requests_total(text)
    assert counted[("GET", "/system/services/{name}", "404")] == 1
    assert counted[("GET", "unmatched", "404")] == 1


async def test_a_taken_metrics_port_is_a_clear_error(app: Any) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app))
    unused = socket.socket()
    try:
        with pytest.raises(MetricsPortError, match=f"127.0.0.1:{port} .*BUCKETRUN_METRICS__PORT"):
            await serve_on(
                server, unused, MetricsSettings(host="127.0.0.1", port=port), metrics_of(app).registry
            )
    finally:
        taken.close()
        unused.close()
