"""The cluster adapter: bucketrun's few Kubernetes API calls, over kubernetes_asyncio.

The only module of ``dispatcher`` that imports ``kubernetes_asyncio``. Documents go out as plain dicts
and answers come back as raw JSON (``_preload_content=False``): building and parsing the generated
models costs more than the request itself. Every failure becomes a ``TransientError`` or
``PermanentError`` (``dispatcher.adapters.kube.errors``) raised from the original; a create's 409
``AlreadyExists`` is the outcome ``EXISTS`` (any other 409 is a transient conflict).

Writes are not rate-limited here: the executor that calls them holds the token bucket
(``dispatcher.executors.kubernetes``); the Secret calls are for ``services apply|list|delete``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NoReturn
from urllib.parse import quote

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url

# This is the cluster adapter: the one module allowed to import the client library.
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from yarl import URL

from dispatcher.adapters.kube.errors import (
    already_exists,
    error_for_exception,
    error_for_status,
    status_object,
)
from dispatcher.adapters.kube.informer import JobInformer, JobPage, ResourceExpired
from dispatcher.adapters.kube.list_watch import WatchStalled
from dispatcher.domain.constants import (
    DEFAULT_WATCH_READ_TIMEOUT,
    LABEL_JOB_CONTROLLER_UID,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from dispatcher.domain.errors import BucketrunError, TransientError
from dispatcher.domain.jobs import CreateOutcome, JobFacts, JobIndex, job_name, job_service
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
class DocumentPage:
    """One page of a list, with the objects as the API sent them."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str | None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Cluster:
    """One namespace of one cluster: create Jobs, ConfigMaps and Secrets; count active Jobs per service.

    Build it with ``await Cluster.connect(...)``; call ``start()`` to run the Job informer that
    ``active_jobs`` reads, and ``close()`` at the end (or use ``async with``).
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        request_timeout: float,
        watch_timeout: int = 300,
        watch_read_timeout: float = DEFAULT_WATCH_READ_TIMEOUT,
    ) -> None:
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, got {request_timeout}")
        if watch_read_timeout <= 0:
            raise ValueError(f"watch_read_timeout must be positive, got {watch_read_timeout}")
        self.namespace = namespace
        self._api = api
        # Typed as Any on purpose: with _preload_content=False the generated methods take plain dicts and
        # return the raw aiohttp response, which their annotations (models in, models out) do not describe.
        self._batch: Any = client.BatchV1Api(api)
        self._core: Any = client.CoreV1Api(api)
        self._coordination: Any = client.CoordinationV1Api(api)
        self._timeout = request_timeout
        self._watch_read_timeout = watch_read_timeout
        self._known_config_maps: set[str] = set()
        self._config_map_locks: dict[str, asyncio.Lock] = {}
        self._index = JobIndex()
        self._informer = JobInformer(self, self._index, watch_timeout=watch_timeout)
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
        watch_timeout: int = 300,
        watch_read_timeout: float = DEFAULT_WATCH_READ_TIMEOUT,
    ) -> Cluster:
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
        return cls(
            api,
            namespace,
            request_timeout=request_timeout,
            watch_timeout=watch_timeout,
            watch_read_timeout=watch_read_timeout,
        )

    @classmethod
    async def from_settings(
        cls, settings: ClusterSettings, *, environ: Mapping[str, str] = os.environ
    ) -> Cluster:
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

    async def __aenter__(self) -> Cluster:
        """Start the informer."""
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the informer and close the connections."""
        await self.close()

    def start(self) -> None:
        """Start the Job informer (list + watch) behind ``active_jobs``; idempotent."""
        self._informer.start()

    async def close(self) -> None:
        """Stop the informer and close the HTTP connections."""
        await self._informer.stop()
        if self._create_session is not None:
            await self._create_session.close()  # its connector is the API client's, closed next
        await self._api.close()

    # -- Job counting --------------------------------------------------------------------------------

    @property
    def informer(self) -> JobInformer:
        """The informer (its ``stats`` show lists, watches, 410s and errors so far)."""
        return self._informer

    @property
    def synced(self) -> asyncio.Event:
        """Set once the informer's first list is in: from then on ``active_jobs`` is meaningful."""
        return self._informer.synced

    async def wait_synced(self) -> None:
        """Return once ``synced`` is set (bound it with ``asyncio.timeout``)."""
        await self._informer.wait_synced()

    def active_jobs(self, service: str) -> int:
        """The service's Jobs not yet Complete or Failed (suspended ones included), as last seen."""
        return self._index.active(service)

    def note_created(self, service: str, name: str) -> None:
        """Count a Job this process just created before the watch reports it (``create_job`` does)."""
        self._index.note_created(service, name)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checking after each change of the Job counts."""
        await self._index.wait_until(predicate)

    # -- writes --------------------------------------------------------------------------------------

    async def create_job(self, doc: Mapping[str, Any]) -> CreateOutcome:
        """Create the Job *doc* (a plain dict): ``CREATED``, or ``EXISTS`` when the name is taken.

        A created Job of a bucketrun service counts in ``active_jobs`` at once.
        """
        name = job_name(doc)
        action = f"create Job {self.namespace}/{name}"
        path = f"/apis/batch/v1/namespaces/{quote(self.namespace, safe='')}/jobs"
        answer = await self._send(action, self._post_json(path, doc))
        if already_exists(answer.status, answer.body):
            return CreateOutcome.EXISTS
        self._raise_unless_ok(answer, action)
        service = job_service(doc)
        if service is not None:
            self._index.note_created(service, name)
        return CreateOutcome.CREATED

    def knows_config_map(self, name: str) -> bool:
        """True when ConfigMap *name* is known to exist (created or found by this process)."""
        return name in self._known_config_maps

    async def ensure_config_map(
        self, doc: Mapping[str, Any], *, before_write: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Make sure the immutable ConfigMap *doc* exists; True if this call created it.

        Names are content hashes, so an existing ConfigMap of that name is the same one: no update is
        ever needed, and once a name is known no request is made for it again. Concurrent calls for one
        name make one request between them. *before_write* (the executor's rate limit) is awaited just
        before the request, only when one is made.
        """
        name = str((doc.get("metadata") or {}).get("name", ""))
        if name in self._known_config_maps:
            return False
        async with self._config_map_locks.setdefault(name, asyncio.Lock()):
            if name in self._known_config_maps:
                return False
            if before_write is not None:
                await before_write()
            action = f"create ConfigMap {self.namespace}/{name}"
            answer = await self._send(
                action,
                self._core.create_namespaced_config_map(
                    self.namespace, doc, _preload_content=False, _request_timeout=self._timeout
                ),
            )
            existed = already_exists(answer.status, answer.body)
            if not existed:
                self._raise_unless_ok(answer, action)
            self._known_config_maps.add(name)
        self._config_map_locks.pop(name, None)
        return not existed

    async def read_config_map(self, name: str) -> dict[str, Any] | None:
        """ConfigMap *name* as the API has it, or None when there is none."""
        action = f"read ConfigMap {self.namespace}/{name}"
        return await self._read(
            action,
            self._core.read_namespaced_config_map(
                name, self.namespace, _preload_content=False, _request_timeout=self._timeout
            ),
        )

    async def list_config_maps(self, label_selector: str = MANAGED_SELECTOR) -> list[dict[str, Any]]:
        """The namespace's ConfigMaps matching *label_selector* (default: bucketrun's), all pages."""
        return await self._list_all(
            f"list ConfigMaps in {self.namespace}",
            self._core.list_namespaced_config_map,
            label_selector=label_selector,
        )

    async def delete_config_map(self, name: str) -> bool:
        """Delete ConfigMap *name*; False when it did not exist."""
        action = f"delete ConfigMap {self.namespace}/{name}"
        self._known_config_maps.discard(name)
        return await self._delete(
            action,
            self._core.delete_namespaced_config_map(
                name, self.namespace, _preload_content=False, _request_timeout=self._timeout
            ),
        )

    async def read_secret(self, name: str) -> dict[str, Any] | None:
        """Secret *name* as the API has it, values included (never log it), or None when there is none."""
        action = f"read Secret {self.namespace}/{name}"
        return await self._read(
            action,
            self._core.read_namespaced_secret(
                name, self.namespace, _preload_content=False, _request_timeout=self._timeout
            ),
        )

    async def delete_secret(self, name: str) -> bool:
        """Delete Secret *name*; False when it did not exist."""
        action = f"delete Secret {self.namespace}/{name}"
        return await self._delete(
            action,
            self._core.delete_namespaced_secret(
                name, self.namespace, _preload_content=False, _request_timeout=self._timeout
            ),
        )

    async def ensure_secret(
        self, name: str, data: Mapping[str, str | bytes], *, labels: Mapping[str, str] | None = None
    ) -> bool:
        """Create Secret *name* holding *data*, or replace it when its data differ or it lacks one of the
        labels; True if it changed. (For ``services apply``: no running component may write Secrets.)"""
        encoded = {key: _b64(value) for key, value in data.items()}
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: MANAGED_BY, **(labels or {})}},
            "data": encoded,
        }
        where = f"Secret {self.namespace}/{name}"
        created = await self._send(
            f"create {where}",
            self._core.create_namespaced_secret(
                self.namespace, body, _preload_content=False, _request_timeout=self._timeout
            ),
        )
        if created.status != 409:
            self._raise_unless_ok(created, f"create {where}")
            return True
        current = await self._send(
            f"read {where}",
            self._core.read_namespaced_secret(
                name, self.namespace, _preload_content=False, _request_timeout=self._timeout
            ),
        )
        self._raise_unless_ok(current, f"read {where}")
        existing = status_object(current.body)
        found_labels = (existing.get("metadata") or {}).get("labels") or {}
        labelled = body["metadata"]["labels"].items() <= found_labels.items()
        if (existing.get("data") or {}) == encoded and labelled:
            return False
        version = (existing.get("metadata") or {}).get("resourceVersion")
        body["metadata"] = {**body["metadata"], "resourceVersion": version}
        replaced = await self._send(
            f"replace {where}",
            self._core.replace_namespaced_secret(
                name, self.namespace, body, _preload_content=False, _request_timeout=self._timeout
            ),
        )
        if replaced.status == 409:
            raise TransientError(f"replace {where}: changed by someone else meanwhile", kind="api-conflict")
        self._raise_unless_ok(replaced, f"replace {where}")
        return True

    # -- health --------------------------------------------------------------------------------------

    async def ready(self) -> bool:
        """True when the API answers a Job list in this namespace in time and the informer is alive.

        Never raises (but a cancellation).
        """
        if self._informer.stats.lists and not self._informer.running:
            return False  # the informer was started and died: active_jobs would go stale
        try:
            answer = await self._send(
                f"list Jobs in {self.namespace}",
                self._batch.list_namespaced_job(
                    self.namespace,
                    limit=1,
                    label_selector=MANAGED_SELECTOR,
                    _preload_content=False,
                    _request_timeout=self._timeout,
                ),
            )
        except BucketrunError:
            return False
        return 200 <= answer.status < 300

    # -- JobSource, for the informer -----------------------------------------------------------------

    async def list_jobs(self, *, limit: int, continue_token: str | None) -> JobPage:
        """One page of bucketrun's Jobs in the namespace, reduced to ``JobFacts``."""
        page = await self.list_job_documents(limit=limit, continue_token=continue_token)
        return JobPage([JobFacts.of(item) for item in page.items], page.resource_version, page.continue_token)

    async def list_job_documents(self, *, limit: int, continue_token: str | None) -> DocumentPage:
        """One page of bucketrun's Jobs in the namespace as the API sent them; ``ResourceExpired`` on 410."""
        action = f"list Jobs in {self.namespace}"
        answer = await self._send(
            action,
            self._batch.list_namespaced_job(
                self.namespace,
                label_selector=MANAGED_SELECTOR,
                limit=limit,
                _continue=continue_token,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        if answer.status == 410:
            raise ResourceExpired(f"{action}: continue token expired")
        self._raise_unless_ok(answer, action)
        listing = status_object(answer.body)
        metadata = listing.get("metadata") or {}
        items = listing.get("items")
        version = metadata.get("resourceVersion")
        if not isinstance(items, list) or not isinstance(version, str):
            raise TransientError(f"{action}: the answer is not a Job list", kind="api-5xx")
        return DocumentPage(
            [item for item in items if isinstance(item, dict)], version, metadata.get("continue") or None
        )

    @asynccontextmanager
    async def watch_jobs(
        self, *, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
        """A watch stream of bucketrun's Jobs from *resource_version*, with bookmarks: raw events.

        A stream that sends nothing for ``watch_read_timeout`` seconds raises ``WatchStalled``.
        """
        action = f"watch Jobs in {self.namespace}"
        # No total timeout: the stream lasts timeout_seconds. The read timeout is independent of it: the
        # API server sends a bookmark about every minute, so a stream silent for about two of them sits
        # on a dead (half-open) connection, and waiting for the end of timeout_seconds would blind the
        # loop for up to 10 minutes.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout, sock_read=self._watch_read_timeout
        )
        try:
            response = await self._batch.list_namespaced_job(
                self.namespace,
                label_selector=MANAGED_SELECTOR,
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
            raise _mapped(error, action) from error
        try:
            if response.status == 410:
                raise ResourceExpired(f"{action}: resourceVersion {resource_version} expired")
            if response.status != 200:
                _raise_for_status(response.status, response.headers, await response.read(), action)
            events = _watch_events(response, action, self._watch_read_timeout)
            try:
                yield events
            finally:
                await events.aclose()  # finalised here, not by the garbage collector
        finally:
            response.close()

    # -- reads and marks, for the watcher and the jobs commands ---------------------------------------

    async def read_job(self, name: str) -> dict[str, Any] | None:
        """Job *name* as the API has it, or None when there is no such Job."""
        action = f"read Job {self.namespace}/{name}"
        return await self._read(
            action,
            self._batch.read_namespaced_job(
                name, self.namespace, _preload_content=False, _request_timeout=self._timeout
            ),
        )

    async def job_pods(self, job_uid: str) -> list[dict[str, Any]]:
        """The pods the Job with UID *job_uid* created (by the controller-uid label), oldest first."""
        action = f"list pods of Job {job_uid} in {self.namespace}"
        answer = await self._send(
            action,
            self._core.list_namespaced_pod(
                self.namespace,
                label_selector=f"{LABEL_JOB_CONTROLLER_UID}={job_uid}",
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        self._raise_unless_ok(answer, action)
        items = status_object(answer.body).get("items")
        pods = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
        return sorted(pods, key=lambda pod: str((pod.get("metadata") or {}).get("creationTimestamp", "")))

    async def pod_log(self, pod: str, container: str, *, tail_lines: int | None = None) -> str | None:
        """The last *tail_lines* lines of *container*'s log in *pod*; None when the pod is gone or the
        container never started (the API then has no log to give)."""
        action = f"read the log of {self.namespace}/{pod} container {container}"
        answer = await self._send(
            action,
            self._core.read_namespaced_pod_log(
                pod,
                self.namespace,
                container=container,
                tail_lines=tail_lines,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        if answer.status in (400, 404):
            return None
        self._raise_unless_ok(answer, action)
        return answer.body.decode("utf-8", "replace")

    async def annotate_job(self, name: str, annotations: Mapping[str, str]) -> bool:
        """Merge *annotations* into Job *name*'s metadata; False when the Job no longer exists."""
        action = f"annotate Job {self.namespace}/{name}"
        answer = await self._send(
            action,
            self._batch.patch_namespaced_job(
                name,
                self.namespace,
                {"metadata": {"annotations": dict(annotations)}},
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        if answer.status == 404:
            return False
        self._raise_unless_ok(answer, action)
        return True

    async def pending_pods(self) -> list[dict[str, Any]]:
        """bucketrun's pods in phase Pending (waiting to be scheduled, or a container waiting to start),
        every page: where the watcher looks for pods that can never start."""
        return await self._list_all(
            f"list pending pods in {self.namespace}",
            self._core.list_namespaced_pod,
            label_selector=MANAGED_SELECTOR,
            field_selector="status.phase=Pending",
        )

    async def delete_job(self, name: str, uid: str) -> bool:
        """Delete Job *name* and its pods (propagationPolicy Background) if it is still the Job with UID
        *uid*; False when it is gone (404) or the name is another Job's now (409: the UID precondition)."""
        action = f"delete Job {self.namespace}/{name}"
        answer = await self._send(
            action,
            self._batch.delete_namespaced_job(
                name,
                self.namespace,
                body={"propagationPolicy": "Background", "preconditions": {"uid": uid}},
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        if answer.status in (404, 409):
            return False
        self._raise_unless_ok(answer, action)
        return True

    # -- Leases, for leader election -----------------------------------------------------------------

    async def read_lease(self, name: str) -> dict[str, Any] | None:
        """Lease *name* (``coordination.k8s.io/v1``), or None when it does not exist."""
        action = f"read Lease {self.namespace}/{name}"
        return await self._read(
            action,
            self._coordination.read_namespaced_lease(
                name, self.namespace, _preload_content=False, _request_timeout=self._timeout
            ),
        )

    async def create_lease(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create the Lease *doc*; the stored Lease, or None when one of that name exists already."""
        action = f"create Lease {self.namespace}/{job_name(doc)}"
        answer = await self._send(
            action,
            self._coordination.create_namespaced_lease(
                self.namespace, dict(doc), _preload_content=False, _request_timeout=self._timeout
            ),
        )
        if answer.status == 409:
            return None
        self._raise_unless_ok(answer, action)
        return status_object(answer.body)

    async def replace_lease(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """Replace the Lease *doc* (its ``metadata.resourceVersion`` is the precondition); the stored
        Lease, or None when someone changed it meanwhile (409)."""
        name = job_name(doc)
        action = f"replace Lease {self.namespace}/{name}"
        answer = await self._send(
            action,
            self._coordination.replace_namespaced_lease(
                name, self.namespace, dict(doc), _preload_content=False, _request_timeout=self._timeout
            ),
        )
        if answer.status == 409:
            return None
        self._raise_unless_ok(answer, action)
        return status_object(answer.body)

    # -- plumbing ------------------------------------------------------------------------------------

    async def _post_json(self, path: str, doc: Mapping[str, Any]) -> aiohttp.ClientResponse:
        """POST *doc* to *path* as one ``json.dumps``, with the API client's own connection pool and auth.

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
            data=json.dumps(doc, separators=(",", ":")).encode(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
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

    async def _read(self, action: str, request: Awaitable[Any]) -> dict[str, Any] | None:
        """The object a GET *request* answers, or None when there is none (404)."""
        answer = await self._send(action, request)
        if answer.status == 404:
            return None
        self._raise_unless_ok(answer, action)
        return status_object(answer.body)

    async def _delete(self, action: str, request: Awaitable[Any]) -> bool:
        """Whether the DELETE *request* removed something (False: there was nothing, 404)."""
        answer = await self._send(action, request)
        if answer.status == 404:
            return False
        self._raise_unless_ok(answer, action)
        return True

    async def _send(self, action: str, request: Awaitable[Any]) -> _Answer:
        try:
            response = await request
            try:
                body = await response.read()
            finally:
                response.release()
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
            raise _mapped(error, action) from error
        return _Answer(response.status, response.headers, body)

    async def _list_all(
        self, action: str, list_page: Callable[..., Any], **query: Any
    ) -> list[dict[str, Any]]:
        """Every item of a namespaced list, page after page (500 a page), as the API sent them."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            answer = await self._send(
                action,
                list_page(
                    self.namespace,
                    limit=500,
                    _continue=token,
                    _preload_content=False,
                    _request_timeout=self._timeout,
                    **query,
                ),
            )
            self._raise_unless_ok(answer, action)
            listing = status_object(answer.body)
            items = listing.get("items")
            found += [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
            token = (listing.get("metadata") or {}).get("continue") or None
            if token is None:
                return found

    @staticmethod
    def _raise_unless_ok(answer: _Answer, action: str) -> None:
        if not 200 <= answer.status < 300:
            _raise_for_status(answer.status, answer.headers, answer.body, action)


async def _watch_events(
    response: aiohttp.ClientResponse, action: str, read_timeout: float
) -> AsyncGenerator[Mapping[str, Any]]:
    """The events of a watch response, one JSON object per line; ``WatchStalled`` after *read_timeout*
    seconds without a byte."""
    try:
        async for line in response.content:
            if not line.strip():
                continue
            event = json.loads(line)
            if not isinstance(event, dict):
                raise TransientError(
                    f"{action}: a watch line is not an event: {line[:200]!r}", kind="api-watch"
                )
            yield event
    except TimeoutError as error:  # the socket read timeout (aiohttp.SocketTimeoutError is one)
        raise WatchStalled(
            f"{action}: nothing received for {read_timeout:g} s, not even a bookmark"
        ) from error
    except (aiohttp.ClientError, ConnectionError) as error:
        raise _mapped(error, action) from error
    except ValueError as error:  # bad JSON, or a line longer than the read buffer
        raise TransientError(f"{action}: unreadable watch stream: {error}", kind="api-watch") from error


def _raise_for_status(code: int, headers: Mapping[str, str], body: bytes, action: str) -> NoReturn:
    """Raise bucketrun's error for an HTTP error answer, from the library's own exception for it."""
    cause = ApiException(status=code, reason=_phrase(body))
    cause.body = body
    raise error_for_status(code, headers, body, action=action) from cause


def _phrase(body: bytes) -> str:
    reason = status_object(body).get("reason")
    return reason if isinstance(reason, str) else ""


def _mapped(error: BaseException, action: str) -> TransientError:
    mapped = error_for_exception(error, action=action)
    return mapped if mapped is not None else TransientError(f"{action}: {error!r}", kind="api-connection")


def _b64(value: str | bytes) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")
