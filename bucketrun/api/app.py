"""The OSCAR-compatible routes, with OSCAR's paths, methods, status codes and bodies.

Errors are plain text as OSCAR's handlers write them (oscar-cli prints the body of any status outside
200 to 204 except 401, 404 and 502, which it words itself). Every route but ``/health`` needs HTTP basic
auth; a wrong credential is a bare 401.
"""

from __future__ import annotations

import json
import platform
import secrets
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import ValidationError

from bucketrun.api.catalog import (
    ApplyFailedError,
    InvalidServiceError,
    ServiceCatalog,
    ServiceExistsError,
    UnknownServiceError,
)
from bucketrun.api.oscar_types import ClusterConfig, ConfigForUser, Info, MinIOProvider, Service
from bucketrun.api.settings import ApiSettings
from dispatcher import __version__
from dispatcher.domain.errors import BucketrunError
from dispatcher.runtime.settings import Settings

_NOT_VALID: Final = "The service specification is not valid: "
_GO_ARCH: Final = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class _RefusedError(Exception):
    def __init__(self, status: int, text: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.text = text


_BASIC: Final = HTTPBasic(auto_error=False)


class BasicAuth:
    """The dependency every route but ``/health`` has: the configured user and password, or a bare 401."""

    def __init__(self, api: ApiSettings) -> None:
        self._username = api.username.encode()
        self._password = api.password.get_secret_value().encode()

    def __call__(self, credentials: Annotated[HTTPBasicCredentials | None, Depends(_BASIC)]) -> None:
        """Refuse the request unless it carries the credential."""
        if credentials is None:
            raise _RefusedError(401)
        # Both compared, always: how long a refusal takes says nothing about which part was wrong.
        user_ok = secrets.compare_digest(credentials.username.encode(), self._username)
        password_ok = secrets.compare_digest(credentials.password.encode(), self._password)
        if not (user_ok and password_ok):
            raise _RefusedError(401)


def minio_provider(settings: Settings) -> MinIOProvider:
    """How oscar-cli reaches the store: the endpoint only, never the admin's keys."""
    storage = settings.storage
    scheme = "https" if storage.secure else "http"
    return MinIOProvider(
        endpoint=f"{scheme}://{storage.endpoint}",
        verify=storage.secure,
        access_key="",
        secret_key="",
        region=storage.region,
    )


def cluster_config(settings: Settings) -> ConfigForUser:
    """The body of ``GET /system/config``."""
    namespace = settings.cluster.namespace
    return ConfigForUser(
        config=ClusterConfig(name="bucketrun", namespace=namespace, services_namespace=namespace),
        minio_provider=minio_provider(settings),
    )


def system_info() -> Info:
    """The body of ``GET /system/info``."""
    machine = platform.machine().lower()
    return Info(
        version=__version__, git_commit="", architecture=_GO_ARCH.get(machine, machine), kubernetes_version=""
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _RefusedError(413, f"request body of {declared} bytes is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _RefusedError(413, f"request body is larger than {limit} bytes")
    return bytes(body)


def parse_service(body: bytes) -> Service:
    """The service in a create/update body; 400 with OSCAR's wording when it is not one."""
    try:
        return Service.model_validate(json.loads(body))
    except json.JSONDecodeError as error:
        raise _RefusedError(400, f"{_NOT_VALID}{error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise _RefusedError(400, f"{_NOT_VALID}{problems}") from None


def create_app(settings: Settings, api: ApiSettings, catalog: ServiceCatalog | None = None) -> FastAPI:
    """The application; ``catalog`` defaults to one over ``settings``' store and cluster."""
    services = catalog if catalog is not None else ServiceCatalog(settings)
    app = FastAPI(
        title="bucketrun (OSCAR-compatible API)", version=__version__, docs_url=None, redoc_url=None
    )
    auth = [Depends(BasicAuth(api))]

    @app.exception_handler(_RefusedError)
    async def refused(_: Request, error: _RefusedError) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="bucketrun"'} if error.status == 401 else None
        return PlainTextResponse(error.text, status_code=error.status, headers=headers)

    @app.exception_handler(UnknownServiceError)
    async def unknown(_: Request, __: UnknownServiceError) -> Response:
        return Response(status_code=404)

    @app.exception_handler(InvalidServiceError)
    async def invalid(_: Request, error: InvalidServiceError) -> Response:
        return PlainTextResponse(str(error), status_code=400)

    @app.exception_handler(ServiceExistsError)
    async def exists(_: Request, error: ServiceExistsError) -> Response:
        return PlainTextResponse(f"A service with the name {error} already exists", status_code=409)

    @app.exception_handler(ApplyFailedError)
    async def failed(_: Request, error: ApplyFailedError) -> Response:
        return PlainTextResponse(str(error), status_code=500)

    @app.exception_handler(BucketrunError)
    async def backend(_: Request, error: BucketrunError) -> Response:
        return PlainTextResponse(f"error: {error}", status_code=500)

    @app.get("/health", response_class=PlainTextResponse)
    async def health() -> str:
        return "Ok"

    @app.get("/system/info", dependencies=auth)
    async def info() -> Info:
        return system_info()

    @app.get("/system/config", dependencies=auth)
    async def config() -> ConfigForUser:
        return cluster_config(settings)

    @app.get("/system/services", dependencies=auth)
    async def list_services() -> list[dict[str, Any]]:
        return await services.list()

    @app.post("/system/services", dependencies=auth)
    async def create_service(request: Request) -> Response:
        await services.create(parse_service(await read_body(request, api.max_body_bytes)))
        return Response(status_code=201)

    @app.put("/system/services", dependencies=auth)
    async def update_service(request: Request) -> Response:
        await services.update(parse_service(await read_body(request, api.max_body_bytes)))
        return Response(status_code=204)

    @app.get("/system/services/{name}", dependencies=auth)
    async def read_service(name: str) -> JSONResponse:
        return JSONResponse(await services.get(name))

    @app.delete("/system/services/{name}", dependencies=auth)
    async def delete_service(name: str) -> Response:
        await services.delete(name)
        return Response(status_code=204)

    return app
