"""``POST /job/{service}``: OSCAR's asynchronous invocation, through the dispatcher's own path.

The API creates no Job. It turns the request into the named service's task (``dispatcher.domain.invocation``
decides how: a storage event's record, or an opaque body stored as ``invocations/<service>/<request id>``
in the definitions bucket) and publishes it, with broker confirms, to that service's queue, where the
dispatcher creates the Job exactly as for an upload: same presigned input, same Job name rule (409 is
"exists"), same retries and dead letters. Nothing is declared but that queue, with the dispatcher's own
arguments (``AmqpClient.declare_service_queue``), so a task waits there until a dispatcher has the service.

Exactly once per request id: the id is ``X-Request-ID`` when sent (checked, 400 otherwise), else a new
UUID, and is answered back in ``X-Request-ID``. An opaque body is stored under that id only once (the
first body wins) and its task's identity is the id, so the same id sent again names the same Job. As
the catalog before it keeps a definition, the API writes a body only while the definitions bucket
notifies nobody (a write there must never trigger a service).

Answers, as OSCAR's: 201 with no body; 404 for a service the API does not have (before any credential is
looked at, as OSCAR's handler does); 401 without a credential. The credential is the service's token as
``Authorization: Bearer <token>`` (compared in constant time), or whatever the API's other routes accept.
A body the supervisor could not read is 400 with the reason; a broker or store that fails for now is 503.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final, Protocol

import structlog
from fastapi import APIRouter, FastAPI, Header, Request, Security
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import HTTPBearer

from bucketrun.admin.tokens import TOKEN_LENGTH
from bucketrun.api.auth import bearer_token
from bucketrun.api.catalog import ServiceCatalog, fdl_document, notification_ids
from bucketrun.api.oscar_types import Service
from dispatcher.adapters.amqp.client import AmqpClient
from dispatcher.adapters.amqp.headers import received_headers
from dispatcher.adapters.amqp.topology import DEFAULT_EXCHANGE
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.errors import TransientError
from dispatcher.domain.identity import job_name, object_version
from dispatcher.domain.ingress import ServiceTask
from dispatcher.domain.invocation import InvocationError, check_request_id, plan_invocation
from dispatcher.fdl import ServiceDefinition, ServiceDefinitionError
from dispatcher.fdl.loader import load_services_text
from dispatcher.runtime.settings import Settings

REQUEST_ID_HEADER: Final = "X-Request-ID"
_CONNECTION_NAME: Final = "bucketrun-api"
_log = structlog.get_logger(__name__)

_SERVICE_TOKEN: Final = HTTPBearer(
    auto_error=False, scheme_name="ServiceToken", description="The service's token: its `token` field"
)
_BODY: Final = {
    "description": "The event: a MinIO or S3 event for an input of the service, or the input file (a JSON "
    "body as it is, any other body base64)",
    "required": False,
    "content": {
        "application/json": {"schema": {}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "text/plain": {"schema": {"type": "string"}},
    },
}
_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    201: {
        "description": "Published to the service's queue; no body",
        "headers": {REQUEST_ID_HEADER: {"description": "The request id", "schema": {"type": "string"}}},
    },
    503: {
        "description": "The broker or the store failed for now: send the same request id again",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
}


class RouteAuth(Protocol):
    """The credential check of the API's other routes (``bucketrun.api.auth.Authenticator``)."""

    async def __call__(self, request: Request) -> object:
        """Raise what the API answers 401 for, unless ``request`` carries an accepted credential."""

    def dependencies(self) -> list[Any]:
        """What a route lists in ``dependencies=``: the schemes to document, and this check."""


class _StateError(RuntimeError):
    """The API's own state cannot be used (answered 500 with the message): a kept definition that no
    longer loads, or a definitions bucket that notifies someone."""


def is_service_token(presented: str | None, token: str) -> bool:
    """Whether ``presented`` is the service's ``token`` (constant time in the token's content; a service
    without a token matches nothing)."""
    if not presented or len(token) != TOKEN_LENGTH:
        return False
    return secrets.compare_digest(presented.encode(), token.encode())


def service_definition(definition: dict[str, Any], *, cluster: str | None) -> ServiceDefinition:
    """The ``ServiceDefinition`` of a kept OSCAR definition, loaded as ``services apply`` loaded it."""
    name = str(definition.get("name", ""))
    document = json.dumps(fdl_document(Service.model_validate(definition)))
    try:
        loaded = load_services_text(
            document, source=f"kept definition of {name}", base_dir=None, cluster=cluster
        )
    except ServiceDefinitionError as error:
        raise _StateError(f"the kept definition of {name} no longer loads: {error}") from error
    for service in loaded.services:
        if service.name == name:
            return service
    raise _StateError(f"the kept definition of {name} defines no service {name}")


class Invocations:
    """Publishes invocation tasks: one broker connection, opened at the first invocation."""

    def __init__(self, settings: Settings, definitions_bucket: str) -> None:
        self._settings = settings
        self._bucket = definitions_bucket
        self._storage = Storage(settings.storage)
        self._amqp: AmqpClient | None = None
        self._connecting = asyncio.Lock()

    async def _client(self) -> AmqpClient:
        async with self._connecting:
            if self._amqp is None:
                self._amqp = await AmqpClient.connect(self._settings.amqp, connection_name=_CONNECTION_NAME)
            return self._amqp

    async def close(self) -> None:
        """Close the broker connection, if one was opened."""
        if self._amqp is not None:
            await self._amqp.close()
            self._amqp = None

    async def _check_quiet(self) -> None:
        """Refuse to write to the definitions bucket while it notifies anyone: the body could trigger a
        service (the catalog checks the same before it keeps a definition)."""
        if ids := await notification_ids(self._storage, self._bucket):
            raise _StateError(
                f"the definitions bucket {self._bucket} has notification entries ({ids}), and writing the "
                "invocation there could trigger a service; give BUCKETRUN_API__DEFINITIONS_BUCKET a bucket "
                "that notifies nothing"
            )

    async def invoke(self, definition: dict[str, Any], body: bytes, request_id: str) -> ServiceTask:
        """Store the content (an opaque body), then publish the task; the task published."""
        cluster = self._settings.services.cluster
        service = await asyncio.to_thread(service_definition, definition, cluster=cluster)
        task, content = plan_invocation(
            service,
            body,
            request_id,
            bucket=self._bucket,
            max_bytes=self._settings.dispatch.max_message_bytes,
        )
        event = task.event
        if content is not None and not await self._storage.object_exists(event.bucket, event.key):
            await self._check_quiet()
            await self._storage.put_object(
                event.bucket,
                event.key,
                content,
                content_type=event.content_type or "application/octet-stream",
            )
        amqp = await self._client()
        queue = await amqp.declare_service_queue(task.service)
        await amqp.publisher.publish(
            DEFAULT_EXCHANGE,
            queue,
            task.body,
            received_headers(time.time()),
            content_type="application/json",
            message_id=request_id,
        )
        return task


def register_invocations(
    app: FastAPI, settings: Settings, definitions_bucket: str, catalog: ServiceCatalog, auth: RouteAuth
) -> None:
    """Add ``POST /job/{service}`` to ``app`` (its services in ``catalog``, opaque bodies kept in
    ``definitions_bucket``); ``auth`` is the other routes' credential check."""
    invocations = Invocations(settings, definitions_bucket)
    router = APIRouter(lifespan=_closing(invocations))

    async def authorised(service_name: str, request: Request) -> dict[str, Any]:
        # The service first (404), then the credential (401), as OSCAR's handler does.
        definition = await catalog.get(service_name)
        presented = bearer_token(request.headers.get("authorization"))
        if not is_service_token(presented, str(definition.get("token") or "")):
            await auth(request)
        return definition

    # The schemes are documented; the check itself runs in `authorised`, after the service token's.
    documented = [
        Security(_SERVICE_TOKEN),
        *(item for item in auth.dependencies() if getattr(item, "dependency", None) is not auth),
    ]

    @router.post(
        "/job/{service_name}",
        status_code=201,
        response_class=Response,
        dependencies=documented,
        responses=_RESPONSES,
        openapi_extra={"requestBody": _BODY},
    )
    async def invoke(
        service_name: str, request: Request, x_request_id: Annotated[str | None, Header()] = None
    ) -> Response:
        # Called, not declared as a dependency: its result is needed here, and an annotation naming a
        # local function cannot be resolved by FastAPI (this module postpones annotations).
        definition = await authorised(service_name, request)
        request_id = check_request_id(x_request_id) if x_request_id is not None else str(uuid.uuid4())
        headers = {REQUEST_ID_HEADER: request_id}
        try:
            task = await invocations.invoke(definition, await request.body(), request_id)
        except TransientError as error:
            return PlainTextResponse(
                f"error: {error}; try again with the same {REQUEST_ID_HEADER}", 503, headers
            )
        event = task.event
        _log.info(
            "invocation published",
            service=task.service,
            request_id=request_id,
            job=job_name(task.service, event.bucket, event.key, object_version(event)),
        )
        return Response(status_code=201, headers=headers)

    @app.exception_handler(InvocationError)
    async def refused(_: Request, error: InvocationError) -> Response:
        return PlainTextResponse(str(error), status_code=400)

    @app.exception_handler(_StateError)
    async def unusable(_: Request, error: _StateError) -> Response:
        return PlainTextResponse(f"error: {error}", status_code=500)

    app.include_router(router)


def _closing(invocations: Invocations) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await invocations.close()

    return lifespan
