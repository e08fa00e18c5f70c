"""HTTP handlers of the Kubernetes API surface: decode the request, call `Objects`, encode the answer."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.k8s_emulator import pod_logs
from tests.k8s_emulator.errors import ApiError, bad_request
from tests.k8s_emulator.kubelet import Kubelet
from tests.k8s_emulator.objects import DeleteOptions, Objects
from tests.k8s_emulator.requestinfo import RequestInfo, is_true
from tests.k8s_emulator.selectors import Selection, selection_from_query
from tests.k8s_emulator.store import dump_json
from tests.k8s_emulator.watches import WatchHub, WatchRequest

INFO_KEY = web.RequestKey("request_info", RequestInfo)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer, compact like the apiserver's."""
    return web.Response(body=dump_json(body), status=status, content_type="application/json", headers=headers)


def error_response(error: ApiError) -> web.Response:
    """The Status body and headers (e.g. Retry-After) of *error*."""
    return json_response(error.body, error.code, error.headers)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    media = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    if "json" not in media:
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            f"application/json (got {media!r})",
        )
    try:
        return json.loads(raw)
    except ValueError as error:
        raise bad_request(f"the body of the request is not valid JSON: {error}") from None


def _int_query(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{key}={raw!r} is not an integer") from None


def _refuse_dry_run(request: web.Request) -> None:
    # Refused rather than ignored: a dry run must never write. The real control plane serves it.
    if "dryRun" in request.query:
        raise bad_request(f"dryRun={request.query['dryRun']!r} is not emulated")


class KubernetesApi:
    """Serves /api and /apis: CRUD verbs, watch and pod logs (no discovery documents)."""

    def __init__(self, objects: Objects, watches: WatchHub, kubelet: Kubelet) -> None:
        self.objects = objects
        self.watches = watches
        self.kubelet = kubelet

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Dispatch one resolved request (the middleware stored its RequestInfo)."""
        info = request[INFO_KEY]
        if info.subresource == "log":
            assert info.name is not None  # resolve() allows log only on a named pod
            store, namespace = self.objects.store, info.namespace or ""
            return await pod_logs.serve_log(request, store, self.kubelet, namespace, info.name)
        if info.verb in ("list", "watch", "deletecollection"):
            return await self._collection(request, info)
        return await self._single(request, info)

    async def _collection(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        resource = info.resource
        assert resource is not None  # resolve() sets it for every request it lets through
        query = request.query
        selection = selection_from_query(query, resource.plural, info.namespace)
        if info.verb == "watch":
            return await self._watch(request, info, selection)
        if info.verb == "list":
            limit, token = _int_query(request, "limit"), query.get("continue")
            return json_response(self.objects.list(resource, selection, limit=limit, continue_token=token))
        options = DeleteOptions.from_request(dict(query), await _body(request))
        return json_response(self.objects.delete_collection(resource, selection, options))

    async def _single(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        resource, namespace, name = info.resource, info.namespace, info.name
        assert resource is not None  # resolve() sets it for every request it lets through
        _refuse_dry_run(request)
        if info.verb == "create":
            return json_response(self.objects.create(resource, namespace, await _body(request)), 201)
        assert name is not None  # every other verb addresses one object
        if info.verb == "get":
            return json_response(self.objects.get(resource, namespace, name))
        body = await _body(request)
        subresource = info.subresource
        if info.verb == "update":
            return json_response(
                self.objects.update(resource, namespace, name, body, subresource=subresource)
            )
        if info.verb == "patch":
            content_type = request.headers.get("Content-Type", "")
            patched = self.objects.patch(
                resource, namespace, name, content_type, body, subresource=subresource
            )
            return json_response(patched)
        options = DeleteOptions.from_request(dict(request.query), body)
        result = self.objects.delete(resource, namespace, name, options)
        headers = {"Warning": ", ".join(result.warnings)} if result.warnings else None
        return json_response(result.obj, 200, headers)

    async def _watch(
        self, request: web.Request, info: RequestInfo, selection: Selection
    ) -> web.StreamResponse:
        assert info.resource is not None
        rv = request.query.get("resourceVersion") or None
        if rv is not None and not rv.isdigit():
            raise bad_request(f"invalid resource version: {rv!r}")
        if is_true(request.query.get("sendInitialEvents")):
            raise bad_request("sendInitialEvents=true (a streaming list) is not emulated")
        timeout = _int_query(request, "timeoutSeconds")
        watch = WatchRequest(
            resource=info.resource,
            selection=selection,
            resource_version=rv,
            timeout_seconds=float(timeout) if timeout else None,
            bookmarks=is_true(request.query.get("allowWatchBookmarks")),
        )
        return await self.watches.serve(request, watch)
