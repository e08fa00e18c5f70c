"""The connection to one namespace of one cluster: configuration, HTTP, and answers as bucketrun's errors.

Every call of the verb modules (``creating``, ``fetching``, ``patching``, ``deleting``, ``watching``)
and of ``lease`` goes through a ``KubeApi``, and only there is kubernetes_asyncio imported. Documents go
out as plain dicts and answers come back as raw JSON (``_preload_content=False``): building and parsing
the generated models costs more than the request itself. Every failure becomes a ``TransientError`` or
``PermanentError`` (``dispatcher.adapters.kube.errors``) raised from the original.

A ``KubeApi`` holds no state but the connection: caches, counts and rate limits belong to whoever
calls (``creating.ConfigMapCreator``, ``informer.JobInformer``, the executor's token bucket).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NoReturn

import aiohttp
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from yarl import URL

from dispatcher.adapters.kube.errors import error_for_exception, error_for_status, status_object
from dispatcher.domain.constants import DEFAULT_WATCH_READ_TIMEOUT, LABEL_MANAGED_BY, MANAGED_BY
from dispatcher.domain.errors import BucketrunError, TransientError
from dispatcher.runtime.settings import ClusterSettings

MANAGED_SELECTOR: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
"""Label selector of every object bucketrun creates."""
IN_CLUSTER_ENV: Final = "KUBERNETES_SERVICE_HOST"
"""Set by the kubelet in every pod: its presence means "running inside a cluster"."""
_AUTH_SETTINGS: Final = ["BearerToken"]
"""The generated API methods' auth settings (every Kubernetes endpoint has this one)."""


class ClusterConfigError(BucketrunError):
    """No usable cluster configuration (kubeconfig or in-cluster service account)."""


def runs_in_cluster(kubeconfig: Path | None, environ: Mapping[str, str]) -> bool:
    """Whether to use the pod's service account: no kubeconfig given and Kubernetes' service variables set."""
    return kubeconfig is None and bool(environ.get(IN_CLUSTER_ENV))


@dataclass(frozen=True, slots=True)
class Answer:
    """An API answer, read whole: status, headers and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class KubeApi:
    """One namespace of one cluster, through one connection pool.

    Build it with ``await KubeApi.connect(...)`` or ``from_settings``; ``close()`` at the end (or use
    ``async with``).
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        request_timeout: float,
        watch_read_timeout: float = DEFAULT_WATCH_READ_TIMEOUT,
    ) -> None:
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, got {request_timeout}")
        if watch_read_timeout <= 0:
            raise ValueError(f"watch_read_timeout must be positive, got {watch_read_timeout}")
        self.namespace = namespace
        self.timeout = request_timeout
        """Seconds one request may take (a watch: to connect)."""
        self.watch_read_timeout = watch_read_timeout
        """Seconds a watch stream may stay silent before it is taken for a dead connection."""
        self._api = api
        # Typed as Any on purpose: with _preload_content=False the generated methods take plain dicts and
        # return the raw aiohttp response, which their annotations (models in, models out) do not describe.
        self.batch: Any = client.BatchV1Api(api)
        """``batch/v1``: Jobs."""
        self.core: Any = client.CoreV1Api(api)
        """``v1``: ConfigMaps, Secrets, pods and their logs."""
        self.coordination: Any = client.CoordinationV1Api(api)
        """``coordination.k8s.io/v1``: Leases."""
        self._create_session: aiohttp.ClientSession | None = None
        self._create_proxy: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls,
        namespace: str,
        *,
        kubeconfig: Path | None = None,
        in_cluster: bool = False,
        request_timeout: float = 10.0,
        context: str | None = None,
        watch_read_timeout: float = DEFAULT_WATCH_READ_TIMEOUT,
    ) -> KubeApi:
        """A client from the pod's service account (``in_cluster``) or from a kubeconfig file.

        Without ``kubeconfig``, the file comes from ``$KUBECONFIG`` or ``~/.kube/config``.
        ``ClusterConfigError`` when neither works.
        """
        configuration = client.Configuration()
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                await config.load_kube_config(
                    config_file=str(kubeconfig) if kubeconfig is not None else None,
                    context=context,
                    client_configuration=configuration,
                )
        except (ConfigException, OSError) as error:
            where = (
                "the in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig or '(default)'}"
            )
            raise ClusterConfigError(
                f"cannot configure the Kubernetes client from {where}: {error}"
            ) from error
        api = client.ApiClient(configuration=configuration)
        return cls(api, namespace, request_timeout=request_timeout, watch_read_timeout=watch_read_timeout)

    @classmethod
    async def from_settings(
        cls, settings: ClusterSettings, *, environ: Mapping[str, str] = os.environ
    ) -> KubeApi:
        """``connect`` as the ``cluster`` settings say: a kubeconfig if one is set, else the in-cluster
        service account when running in a pod, else ``$KUBECONFIG`` / ``~/.kube/config``."""
        return await cls.connect(
            settings.namespace,
            kubeconfig=settings.kubeconfig,
            in_cluster=runs_in_cluster(settings.kubeconfig, environ),
            request_timeout=settings.request_timeout,
            context=settings.context,
            watch_read_timeout=settings.watch_read_timeout,
        )

    async def __aenter__(self) -> KubeApi:
        """Nothing to start: the connection opens with the first request."""
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the connections."""
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._create_session is not None:
            await self._create_session.close()  # its connector is the API client's, closed next
        await self._api.close()

    async def send(self, action: str, request: Awaitable[Any]) -> Answer:
        """Await *request* (a generated method called with ``_preload_content=False``) and read the
        answer whole; a connection failure or timeout is a ``TransientError`` about *action*."""
        try:
            response = await request
            try:
                body = await response.read()
            finally:
                response.release()
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
            raise mapped(error, action) from error
        return Answer(response.status, response.headers, body)

    async def post_json(self, path: str, doc: Mapping[str, Any]) -> aiohttp.ClientResponse:
        """POST *doc* to *path* as one ``json_body``, with the API client's own connection pool and auth.

        For the per-event create: the generated method walks the document with
        ``sanitize_for_serialization`` and runs its generic request building, which cost more CPU than
        the request itself; plain dicts need neither. Everything else still comes from the client: host,
        default headers, token (``update_params_for_auth``, which runs its refresh hook), TLS (the
        client's connector), proxy and TLS server name. The proxy from the environment
        (``HTTPS_PROXY``/``NO_PROXY``) is looked up once, not on every request as the client's session
        does (two thread-pool round trips per request: proxy variables and ``~/.netrc``, which a
        token-authenticated request cannot use anyway).
        """
        api = self._api
        headers: dict[str, str] = {
            **api.default_headers,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        if api.cookie:
            headers["Cookie"] = api.cookie
        await api.update_params_for_auth(headers, [], _AUTH_SETTINGS)
        url = f"{api.configuration.host}{path}"
        session = self._create_session or self._open_create_session(url)
        response: aiohttp.ClientResponse = await session.post(
            url,
            data=json_body(doc),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            **self._create_proxy,
        )
        return response

    def _open_create_session(self, url: str) -> aiohttp.ClientSession:
        """The session for creates: the client's connector, the proxy settings resolved once."""
        rest = self._api.rest_client
        extra: dict[str, Any] = {}
        if rest.proxy:
            extra["proxy"] = rest.proxy
            if rest.proxy_headers:
                extra["proxy_headers"] = rest.proxy_headers
        else:
            with contextlib.suppress(LookupError):  # no proxy for this host in the environment
                extra["proxy"], extra["proxy_auth"] = get_env_proxy_for_url(URL(url))
        if rest.server_hostname:
            extra["server_hostname"] = rest.server_hostname
        self._create_proxy = extra
        self._create_session = aiohttp.ClientSession(
            connector=rest.pool_manager.connector, connector_owner=False, trust_env=False
        )
        return self._create_session


def json_body(doc: Mapping[str, Any]) -> bytes:
    """*doc* as a compact JSON request body.

    orjson writes a rendered Job about five times faster than ``json.dumps`` (the create is the
    dispatcher's per-event request). Where orjson refuses what ``json`` writes (a key that is not a
    string, an integer beyond 64 bits, a lone surrogate, a mapping that is not a dict), ``json`` writes it,
    so no document is sent differently from before: the API server reads both texts as the same object.
    """
    try:
        return orjson.dumps(doc)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(doc, separators=(",", ":")).encode()


def raise_unless_ok(answer: Answer, action: str) -> None:
    """Raise bucketrun's error for *answer* unless it is a 2xx."""
    if not 200 <= answer.status < 300:
        raise_for_status(answer.status, answer.headers, answer.body, action)


def raise_for_status(code: int, headers: Mapping[str, str], body: bytes, action: str) -> NoReturn:
    """Raise bucketrun's error for an HTTP error answer, from the library's own exception for it."""
    cause = ApiException(status=code, reason=_phrase(body))
    cause.body = body
    raise error_for_status(code, headers, body, action=action) from cause


def mapped(error: BaseException, action: str) -> TransientError:
    """The ``TransientError`` for a client-side failure (connection, timeout) while doing *action*."""
    found = error_for_exception(error, action=action)
    return found if found is not None else TransientError(f"{action}: {error!r}", kind="api-connection")


def _phrase(body: bytes) -> str:
    reason = status_object(body).get("reason")
    return reason if isinstance(reason, str) else ""
