"""A fault proxy in front of a real kube-apiserver: plain HTTP towards the tests, TLS towards the API server,
with the emulator's control interface for the faults a proxy can make.

Clients reach http://127.0.0.1:PORT with no credentials (`write_kubeconfig`); the proxy forwards each
request over TLS, verifying the API server against the cluster CA and presenting the admin's client
certificate -- except for requests that carry `Authorization: Bearer`, which go on with that token and no
client certificate (the API server would take the certificate's identity over the token's), so RBAC seen
through the proxy is the token's. Responses pass through unchanged; watch streams line by line as they
arrive (`fault_proxy_watch`). Upgrade requests (exec, attach, port-forward) are not supported.

`FaultProxyControl` has the method signatures and semantics of the emulator's `EmulatorControl` for
everything a proxy can do: injected errors (answered as the API server's `Status`, 429 with Retry-After)
and latency by verb and resource with seeded dice, request counts by verb, resource, subresource,
namespace and final status, peaks of requests in flight, the ERROR events the API server sent on relayed
watches (by Status code: a watch's 410 comes as HTTP 200 and one ERROR event, which request counts
cannot show), and watch faults. Where the proxy differs:

- `expire_next_watch` answers the next watch calls itself, with the event the API server's watch cache
  sends for a resourceVersion it no longer holds (HTTP 200, one ERROR event with a 410 Expired Status,
  end of stream), whatever resourceVersion was asked for. Real compaction (`compact`, through the
  ControlPlane's etcdctl) cannot promise that: a watch resuming at its latest resourceVersion stays valid
  after a compaction, and the watch cache serves recent history on its own.
- `set_watch_knobs(bookmark_interval=...)` adds bookmarks of the proxy's own, between the API server's,
  to watches that allow them: each carries the resourceVersion last relayed to that client.
- Requests the proxy could not forward (the API server is down) are counted with code 502, while the
  client sees what it would see of a dead server: its connection closed without an answer. Requests
  whose client left before the API server answered are counted 499 (after it answered: with the API
  server's status). Paths outside /api and /apis pass through uncounted and free of faults.

The proxy runs in a thread of its own with its own event loop (`run_fault_proxy`), so the tests' sync
calls to the control object work from any thread but the proxy's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import aiohttp
import yaml
from aiohttp import web
from multidict import CIMultiDict

from tests.backends.fault_proxy_requests import (
    ProxyRequest,
    bearer_token,
    forwarded_headers,
    parse_request,
    status_json,
)
from tests.backends.fault_proxy_watch import Relay, UpstreamBrokenError, WatchKnobs, WatchStream
from tests.k8s_emulator.config import rules_from_rates
from tests.k8s_emulator.errors import ApiError
from tests.k8s_emulator.faults import FaultInjector, FaultPlan, FaultRule
from tests.k8s_emulator.requestinfo import is_true
from tests.k8s_emulator.stats import RequestStats
from tests.k8s_emulator.watches import expired_line

if TYPE_CHECKING:
    from bucketrun.devtools.control_plane import ControlPlane

HOST: Final = "127.0.0.1"
UNREACHABLE: Final = 502
"""The code a request is counted under when the API server could not be reached."""
CLIENT_GONE: Final = 499
_UPSTREAM_STATUS: Final = web.RequestKey("bucketrun.upstream_status", int)
"""The request-scoped key under which the API server's status is kept once it answered."""
"""The code a request is counted under when its client left before the answer (nginx's convention)."""
BODY_LIMIT: Final = 64 * 2**20
"""Request bodies the proxy accepts: well above the API server's own 3 MiB, so it is the one that refuses."""
CONNECT_TIMEOUT: Final = 5.0
"""Seconds to open a connection to the API server before the request counts as unreachable."""
CONTROL_TIMEOUT: Final = 10.0
"""Seconds a control call waits for the proxy's event loop."""

T = TypeVar("T")


@dataclass(frozen=True)
class Upstream:
    """The API server behind the proxy and the credentials the proxy uses towards it."""

    url: str
    """https://HOST:PORT of the API server."""
    ca_cert: Path
    """The CA that signed the API server's serving certificate."""
    client_cert: Path
    """The client certificate presented for requests without a bearer token (the admin's)."""
    client_key: Path

    def contexts(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        """(with the client certificate, without it) TLS contexts, both verifying the API server."""
        admin = ssl.create_default_context(cafile=str(self.ca_cert))
        admin.load_cert_chain(str(self.client_cert), str(self.client_key))
        return admin, ssl.create_default_context(cafile=str(self.ca_cert))


class FaultProxy:
    """The proxy's server side and its state; lives in one event loop (see `run_fault_proxy`)."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.faults = FaultInjector()
        self.stats = RequestStats()
        self.knobs = WatchKnobs()
        self.watches: set[WatchStream] = set()
        self.served_watches = 0
        self.watch_errors: Counter[int] = Counter()
        """ERROR events the API server sent on relayed watches, by Status code (not the forced 410s)."""
        self._admin_tls, self._token_tls = upstream.contexts()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The proxy's http://127.0.0.1:PORT."""
        return f"http://{HOST}:{self.port}"

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:*port* (0: a free one)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # watches hold a connection each: no pool cap
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            auto_decompress=False,  # bodies pass through as sent, Content-Encoding included
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        app = web.Application(client_max_size=BODY_LIMIT)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        # handler_cancellation: a handler holding a stalled stream ends when its client leaves.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, port)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        """End every watch and stop listening."""
        for stream in list(self.watches):
            stream.drop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- control (called in the proxy's loop) -----------------------------------------------------------

    def set_plan(self, plan: FaultPlan) -> dict[str, Any]:
        """Replace the fault plan; its JSON form."""
        self.faults.set_plan(plan)
        return plan.to_json()

    def reset(self) -> None:
        """Faults and watch knobs back to none (statistics and open streams are kept, as the emulator's)."""
        self.faults.set_plan(FaultPlan())
        self.knobs = WatchKnobs()

    def drop_watches(self) -> int:
        """End every relayed watch now, stalled ones included; how many there were."""
        streams = list(self.watches)
        for stream in streams:
            stream.drop()
        return len(streams)

    def stall_watches(self) -> int:
        """Silence every open (not yet stalled) watch; how many."""
        streams = [stream for stream in self.watches if not stream.stalled]
        for stream in streams:
            stream.stall()
        return len(streams)

    def reset_stats(self) -> None:
        """Zero the request counts, their peaks and the relayed ERROR events."""
        self.stats.reset()
        self.watch_errors.clear()

    def watch_counts(self) -> tuple[int, int]:
        """(open, stalled) relayed watches."""
        stalled = sum(1 for stream in self.watches if stream.stalled)
        return len(self.watches) - stalled, stalled

    def state(self) -> dict[str, Any]:
        """What `FaultProxyControl.state` reports."""
        open_, stalled = self.watch_counts()
        knobs = self.knobs
        return {
            "upstream": self.upstream.url,
            "url": self.url,
            "watches": {
                "open": open_,
                "stalled": stalled,
                "served": self.served_watches,
                "bookmark_interval": knobs.bookmark_interval,
                "drop_after_events": knobs.drop_after_events,
                "drop_after_seconds": knobs.drop_after_seconds,
                "expire_next": knobs.expire_next,
                "error_events": dict(self.watch_errors),
            },
            "faults": {**self.faults.plan.to_json(), "injected": self.faults.injected},
        }

    # --- requests ---------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward one request, with faults and statistics for /api and /apis requests."""
        info = parse_request(request.method, request.path, request.query)
        if not info.counted:
            return await self._forward(request, info)
        kind = (info.verb, info.resource, info.subresource)
        self.stats.started(*kind)
        code = CLIENT_GONE
        try:
            response = await self._with_faults(request, info)
            code = response.status
            return response
        finally:
            # A client that left after the API server answered still got its request done: count the
            # API server's status (a create the client never saw acknowledged did create the object).
            code = request.get(_UPSTREAM_STATUS, code) if code == CLIENT_GONE else code
            self.stats.finished(*kind)
            self.stats.record(info.verb, info.resource, info.subresource, info.namespace, code)

    async def _with_faults(self, request: web.Request, info: ProxyRequest) -> web.StreamResponse:
        decision = self.faults.decide(info.verb, info.resource)
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        if decision.error is not None:
            return _error_response(decision.error)
        if info.is_watch and self.knobs.expire_next > 0:
            self.knobs.expire_next -= 1
            return await self._expired(request)
        return await self._forward(request, info)

    def _upstream_call(self, request: web.Request, body: bytes) -> Any:
        """The aiohttp request context for *request* towards the API server."""
        assert self._session is not None, "the proxy is not started"
        tls = self._token_tls if bearer_token(request.headers) else self._admin_tls
        return self._session.request(
            request.method,
            self.upstream.url + request.raw_path,
            headers=CIMultiDict(forwarded_headers(request.headers.items())),
            data=body or None,
            ssl=tls,
            allow_redirects=False,
        )

    async def _forward(self, request: web.Request, info: ProxyRequest) -> web.StreamResponse:
        body = await request.read()
        try:
            async with self._upstream_call(request, body) as upstream:
                request[_UPSTREAM_STATUS] = upstream.status
                if info.is_watch and upstream.status == 200:
                    return await self._relay_watch(request, info, upstream)
                return await _pass_on(request, upstream)
        except (aiohttp.ClientConnectionError, OSError, TimeoutError):
            _hang_up(request)
            return web.Response(status=UNREACHABLE)  # never sent: the connection is closed

    async def _relay_watch(
        self, request: web.Request, info: ProxyRequest, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        requested = request.query.get("resourceVersion", "")
        stream = WatchStream(
            info,
            wants_bookmarks=is_true(request.query.get("allowWatchBookmarks")),
            resource_version="" if requested == "0" else requested,
            awaiting_initial_end=is_true(request.query.get("sendInitialEvents")),
        )
        response = web.StreamResponse(status=upstream.status, headers=_response_headers(upstream))
        await response.prepare(request)
        self.watches.add(stream)
        self.served_watches += 1
        try:
            await Relay(stream, upstream, response, self.knobs, self.watch_errors).run()
            if stream.stalled and not stream.dropped:
                upstream.close()
                await stream.release.wait()  # cancelled when the client leaves
        except UpstreamBrokenError:
            _hang_up(request)
            return response
        finally:
            self.watches.discard(stream)
        await response.write_eof()
        return response

    async def _expired(self, request: web.Request) -> web.StreamResponse:
        """200 and one 410 Expired ERROR event, as the API server's watch cache answers."""
        self.served_watches += 1
        requested = request.query.get("resourceVersion") or "0"
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(expired_line(requested, await self._current_revision(request)))
        await response.write_eof()
        return response

    async def _current_revision(self, request: web.Request) -> int:
        """The API server's current resourceVersion, read with the client's credentials (the oldest the
        410 message names); 0 when it cannot be read."""
        assert self._session is not None, "the proxy is not started"
        tls = self._token_tls if bearer_token(request.headers) else self._admin_tls
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        with contextlib.suppress(aiohttp.ClientError, OSError, ValueError, KeyError, TypeError):
            async with self._session.get(
                self.upstream.url + request.path, params={"limit": "1"}, headers=headers, ssl=tls
            ) as answer:
                return int((await answer.json(content_type=None))["metadata"]["resourceVersion"])
        return 0


def _hang_up(request: web.Request) -> None:
    """Close the client's connection without an answer (what a client sees of a server that died)."""
    if request.transport is not None:
        request.transport.close()


def _response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    return CIMultiDict(forwarded_headers(upstream.headers.items()))


async def _pass_on(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """The API server's answer as it is: whole when its length is known, else streamed chunk by chunk."""
    headers = _response_headers(upstream)
    if upstream.content_length is not None or request.method == "HEAD":
        return web.Response(status=upstream.status, headers=headers, body=await upstream.read())
    response = web.StreamResponse(status=upstream.status, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        _hang_up(request)
        return response
    await response.write_eof()
    return response


def _error_response(error: ApiError) -> web.Response:
    """An injected error as the API server answers it (a `Status`), naming the proxy as its source."""
    message = error.message.replace("by the emulator", "by the fault proxy")
    injected = ApiError(
        error.code, message, reason=error.reason, details=error.details, headers=error.headers
    )
    return web.Response(
        status=error.code, body=status_json(injected), content_type="application/json", headers=error.headers
    )


class FaultProxyControl:
    """Synchronous control of a `FaultProxy` running in another thread's event loop; the emulator's
    `EmulatorControl` methods that a proxy can serve, with the same signatures and meanings (see the
    module docstring for where they differ). The Kubernetes-side knobs (kubelet modes, Job back-off) are
    not here: they belong to whoever runs the pods."""

    def __init__(
        self,
        proxy: FaultProxy,
        loop: asyncio.AbstractEventLoop,
        *,
        compactor: Callable[[], int] | None = None,
        timeout: float = CONTROL_TIMEOUT,
    ) -> None:
        self.proxy = proxy
        self.loop = loop
        self.compactor = compactor
        self.timeout = timeout
        self.compacted_revision: int | None = None

    def _call(self, function: Callable[[], T]) -> T:
        """Run *function* in the proxy's loop and return its result."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError(
                "FaultProxyControl was called in the proxy's own event loop: it would wait for itself"
            )

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(self.timeout)

    # -- state ------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Upstream, open/stalled/served watches and their knobs, the fault plan with the injected count,
        and the revision `compact` last compacted at."""
        state = self._call(self.proxy.state)
        state["compacted_revision"] = self.compacted_revision
        return state

    def reset(self) -> None:
        """Every runtime knob back to its start-up value: no faults, no watch faults, no forced 410s
        (request counts and open streams are kept, as the emulator keeps them)."""
        self._call(self.proxy.reset)

    # -- faults -----------------------------------------------------------------------------------------

    def set_faults(
        self,
        *,
        error_rates: Mapping[int, float] | None = None,
        verbs: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        rules: Sequence[FaultRule] = (),
        latency: float | tuple[float, float] = 0.0,
        retry_after_seconds: int = 1,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Replace the fault plan: error rates by status ({500: 0.3, 429: 0.05}), optionally only for
        *verbs* ("create", "watch", …) and *resources* ("jobs", …), plus extra *rules*; latency in
        seconds (fixed or (min, max)) before each request is forwarded; the Retry-After of 429s; a seed
        for reproducible dice. ValueError naming a bad rate, code or latency."""
        all_rules = rules_from_rates(error_rates or {}, verbs, resources) + tuple(rules)
        bounds = latency if isinstance(latency, tuple) else (latency, latency)
        plan = FaultPlan(all_rules, (float(bounds[0]), float(bounds[1])), retry_after_seconds, seed)
        return self._call(lambda: self.proxy.set_plan(plan))

    def clear_faults(self) -> None:
        """No injected errors and no latency."""
        self._call(lambda: self.proxy.set_plan(FaultPlan()))

    # -- watches ----------------------------------------------------------------------------------------

    def drop_watches(self) -> int:
        """End every relayed watch stream now (cleanly, stalled ones too); returns how many were open."""
        return self._call(self.proxy.drop_watches)

    def stall_watches(self) -> int:
        """Make every open watch stream go silent but stay open (a half-open connection): no event, no
        bookmark, no end at timeoutSeconds, until the client gives up. Returns how many were open."""
        return self._call(self.proxy.stall_watches)

    def expire_next_watch(self, count: int = 1) -> None:
        """The next *count* watch calls get 410 Expired whatever resourceVersion they ask for."""
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")

        def add() -> None:
            self.proxy.knobs.expire_next += count

        self._call(add)

    def set_watch_knobs(
        self,
        *,
        bookmark_interval: float | None = None,
        drop_after_events: int | None = None,
        drop_after_seconds: float | None = None,
    ) -> None:
        """Bookmarks of the proxy's own every *bookmark_interval* seconds on watches that allow them (on
        top of the API server's), and faults that end every watch after N events or T seconds (0
        disables). ValueError naming a bad value."""
        if bookmark_interval is not None and bookmark_interval <= 0:
            raise ValueError(f"bookmark_interval must be positive, got {bookmark_interval}")
        for name, value in (
            ("drop_after_events", drop_after_events),
            ("drop_after_seconds", drop_after_seconds),
        ):
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")

        def apply() -> None:
            knobs = self.proxy.knobs
            if bookmark_interval is not None:
                knobs.bookmark_interval = bookmark_interval
            if drop_after_events is not None:
                knobs.drop_after_events = drop_after_events or None
            if drop_after_seconds is not None:
                knobs.drop_after_seconds = drop_after_seconds or None

        self._call(apply)

    def open_watches(self) -> int:
        """Watch streams relayed right now (stalled ones not counted)."""
        return self._call(self.proxy.watch_counts)[0]

    def stalled_watches(self) -> int:
        """Stalled watch streams whose clients are still connected."""
        return self._call(self.proxy.watch_counts)[1]

    def compact(self, revision: int | None = None) -> int:
        """Compact etcd's history at its current revision (`etcdctl compact --physical`, through the
        control plane); returns that revision. Only "now" is supported: a *revision* is refused."""
        if revision is not None:
            raise ValueError(
                f"the fault proxy compacts at etcd's current revision only; got revision={revision}"
            )
        if self.compactor is None:
            raise RuntimeError("this fault proxy was started without a control plane to compact")
        self.compacted_revision = self.compactor()
        return self.compacted_revision

    # -- stats ------------------------------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """Request counts: rows of verb, resource, subresource, namespace, code, count."""
        return self._call(self.proxy.stats.to_json)

    def reset_stats(self) -> None:
        """Zero every request count and peak, and the relayed ERROR events."""
        self._call(self.proxy.reset_stats)

    def watch_error_events(self) -> dict[int, int]:
        """ERROR events the API server itself sent on relayed watch streams since the last
        `reset_stats`, by their Status code: a 410 here is the API server's "too old resource version"
        (a watch answers it with HTTP 200, so the request counts cannot show it); the 410s that
        `expire_next_watch` forces are the proxy's and never counted here."""
        return self._call(lambda: dict(self.proxy.watch_errors))

    def peak_in_flight(self, *, verb: str, resource: str, subresource: str = "") -> int:
        """The most requests of this kind that were in progress at once since the last reset (0: none)."""
        for row in self._call(self.proxy.stats.peaks_to_json):
            if (row["verb"], row["resource"], row["subresource"]) == (verb, resource, subresource):
                return int(row["peak"])
        return 0

    def request_count(
        self,
        *,
        verb: str | Sequence[str] | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        code: int | None = None,
    ) -> int:
        """How many API requests matched every given dimension (verb may be several, e.g. the writes)."""
        verbs = {verb} if isinstance(verb, str) else set(verb) if verb is not None else None
        wanted = {"resource": resource, "subresource": subresource, "namespace": namespace, "code": code}
        return sum(
            int(row["count"])
            for row in self.stats()
            if (verbs is None or row["verb"] in verbs)
            and all(value is None or row[key] == value for key, value in wanted.items())
        )


@dataclass(frozen=True)
class FaultProxyHandle:
    """A running fault proxy: where it listens and how to steer it."""

    url: str
    control: FaultProxyControl

    def write_kubeconfig(self, path: Path, *, namespace: str = "default", token: str | None = None) -> Path:
        """A kubeconfig for the proxy: its plain-HTTP URL and no credentials (the proxy adds the admin's),
        or a bearer *token* (the proxy forwards it, and the API server sees the token's user)."""
        return write_kubeconfig(path, self.url, namespace=namespace, token=token)


def write_kubeconfig(path: Path, url: str, *, namespace: str = "default", token: str | None = None) -> Path:
    """A kubeconfig with one cluster (*url*), a user with no credentials or *token*, and a current context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fault-proxy", "cluster": {"server": url}}],
        "users": [{"name": "through-proxy", "user": {"token": token} if token else {}}],
        "contexts": [
            {
                "name": "fault-proxy",
                "context": {"cluster": "fault-proxy", "user": "through-proxy", "namespace": namespace},
            }
        ],
        "current-context": "fault-proxy",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


_thread_numbers = itertools.count(1)


@contextlib.contextmanager
def run_fault_proxy(
    upstream: Upstream,
    *,
    compactor: Callable[[], int] | None = None,
    port: int = 0,
    startup_timeout: float = 10.0,
) -> Iterator[FaultProxyHandle]:
    """Run a `FaultProxy` for *upstream* in a thread with its own event loop until the block ends.

    *compactor* compacts the cluster's etcd and returns the revision (a ControlPlane's `compact`)."""
    loop = asyncio.new_event_loop()
    proxy = FaultProxy(upstream)
    started = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(proxy.start(port))
        except BaseException as error:  # noqa: BLE001 - handed to the starting thread, which raises it
            failure.append(error)
            started.set()
            loop.close()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(proxy.stop())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=serve, name=f"fault-proxy-{next(_thread_numbers)}", daemon=True)
    thread.start()
    if not started.wait(startup_timeout) or failure:
        loop.call_soon_threadsafe(loop.stop)
        raise RuntimeError(f"the fault proxy for {upstream.url} did not start") from (
            failure[0] if failure else None
        )
    try:
        yield FaultProxyHandle(proxy.url, FaultProxyControl(proxy, loop, compactor=compactor))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def upstream_of(plane: ControlPlane) -> Upstream:
    """The API server of a local control plane, reached with its admin's client certificate."""
    return Upstream(plane.api_url, plane.ca_cert, plane.admin.cert, plane.admin.key)


@contextlib.contextmanager
def proxy_for(plane: ControlPlane, *, port: int = 0) -> Iterator[FaultProxyHandle]:
    """A fault proxy in front of *plane*'s API server, compacting through its etcd."""
    with run_fault_proxy(upstream_of(plane), compactor=plane.compact, port=port) as handle:
        yield handle
