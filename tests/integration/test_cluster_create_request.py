"""The Job create request, as it reaches an HTTP server: path, auth from the API client, the body.

`creating.create_job` serialises the Job with one ``json.dumps`` and posts it with the API client's own
session instead of the generated method (which walks the document with sanitize_for_serialization). The
Kubernetes emulator accepts any token, so this test records what a bare aiohttp server receives: the
token the client configuration gives (its refresh hook run), its default headers, the JSON body.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client  # noqa: TID251 - building the API client the adapter is given

from dispatcher.adapters.kube.api import KubeApi
from dispatcher.adapters.kube.creating import create_job
from dispatcher.domain.jobs import CreateOutcome

pytestmark = pytest.mark.integration

JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "bucketrun-upper-0123456789abcdef", "labels": {"app": 'ü "quoted"'}},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "run", "image": "x"}]}}},
}


@pytest.fixture
async def recorder():
    """An HTTP server answering Job creates: 201 the first time a name is posted, 409 after."""
    seen: list[dict[str, Any]] = []

    async def create(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"path": request.path, "headers": dict(request.headers), "body": body})
        name = json.loads(body)["metadata"]["name"]
        if sum(1 for item in seen if json.loads(item["body"])["metadata"]["name"] == name) > 1:
            return web.json_response({"kind": "Status", "reason": "AlreadyExists", "code": 409}, status=409)
        return web.json_response(json.loads(body), status=201)

    app = web.Application()
    app.router.add_post("/apis/batch/v1/namespaces/{namespace}/jobs", create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_create_posts_the_json_body_with_the_clients_token_and_headers(recorder):
    host, seen = recorder
    refreshed: list[int] = []

    async def refresh(configuration: client.Configuration) -> None:
        refreshed.append(1)
        configuration.api_key["BearerToken"] = f"token-{len(refreshed)}"

    configuration = client.Configuration(host=host)
    configuration.api_key = {"BearerToken": "token-0"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    configuration.refresh_api_key_hook = refresh
    api = client.ApiClient(configuration=configuration)
    async with KubeApi(api, "team a", request_timeout=5.0) as kube:
        assert await create_job(kube, JOB) is CreateOutcome.CREATED
        assert await create_job(kube, JOB) is CreateOutcome.EXISTS

    first, second = seen
    assert first["path"] == "/apis/batch/v1/namespaces/team a/jobs"
    assert first["headers"]["Authorization"] == "Bearer token-1"  # the refresh hook ran before the request
    assert second["headers"]["Authorization"] == "Bearer token-2"
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["User-Agent"] == api.user_agent
    assert json.loads(first["body"]) == JOB


@pytest.mark.parametrize("bypassed", [False, True])
async def test_create_goes_through_the_proxy_the_environment_names(recorder, monkeypatch, bypassed):
    """``HTTP_PROXY`` is honoured as the client's own session would (looked up once, not per request),
    and ``NO_PROXY`` bypasses it: the recorder plays the proxy, the API host is one that never answers."""
    proxy, seen = recorder
    api_host = "127.0.0.1" if bypassed else "api.invalid"  # .invalid never resolves: only a proxy reaches it
    target = proxy if bypassed else f"http://{api_host}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9" if bypassed else proxy)  # port 9: nobody
    if bypassed:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    configuration = client.Configuration(host=target)
    async with KubeApi(client.ApiClient(configuration=configuration), "ns", request_timeout=5.0) as kube:
        assert await create_job(kube, JOB) is CreateOutcome.CREATED
        assert await create_job(kube, JOB) is CreateOutcome.EXISTS
    assert [item["path"] for item in seen] == ["/apis/batch/v1/namespaces/ns/jobs"] * 2
    host_header = seen[0]["headers"]["Host"]
    assert host_header.startswith("127.0.0.1" if bypassed else api_host)
