"""The kubelet's HTTPS log endpoint, so `pods/log` (and `kubectl logs`) work through the API server.

`GET /containerLogs/{namespace}/{pod}/{container}` with `tailLines`, `limitBytes`, `timestamps` and
`follow` (streamed until the container terminates or the client goes), and `GET /healthz`. The API
server calls it at the node's InternalIP and `daemonEndpoints.kubeletEndpoint.Port`, verifying the
serving certificate with `--kubelet-certificate-authority` and presenting the client certificate of
`--kubelet-client-certificate`; given a client CA, the server refuses any client without a certificate
it signed.

The runner writes stdout and stderr interleaved to one file per container, without per-line times,
so `timestamps=true` stamps each line with the file's last modification time (a kubelet stamps each
line with the time the runtime read it). tailLines is applied first, then the stamps, then limitBytes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

_FOLLOW_POLL = 0.1


class LogSource:
    """Where a container's log is, and whether it may still grow; the pod manager answers."""

    def __init__(self, path: Path, waiting_reason: str | None, terminated: Callable[[], bool]) -> None:
        self.path = path
        self.waiting_reason = waiting_reason
        """Set while the container has not started: the log request is refused with this reason."""
        self.terminated = terminated


Lookup = Callable[[str, str, str], LogSource | str]
"""(namespace, pod, container) → the log source, or the error message for a 404."""


class LogRequestError(ValueError):
    """A query parameter is malformed; the message names it."""


def rfc3339_nano(moment: datetime) -> str:
    """A timestamp as the kubelet prefixes log lines (RFC 3339 with nanoseconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def format_log(
    data: bytes, *, tail_lines: int | None, limit_bytes: int | None, stamp: datetime | None
) -> bytes:
    """Apply tailLines, then the timestamp prefix, then limitBytes (pure)."""
    lines = data.splitlines(keepends=True)
    if tail_lines is not None:
        lines = lines[len(lines) - tail_lines :] if tail_lines < len(lines) else lines
    if stamp is not None:
        prefix = rfc3339_nano(stamp).encode() + b" "
        lines = [prefix + line for line in lines]
    result = b"".join(lines)
    return result if limit_bytes is None else result[:limit_bytes]


def int_param(query: Mapping[str, str], key: str, minimum: int) -> int | None:
    """The integer query parameter *key* (None when absent); LogRequestError when it is not one."""
    raw = query.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise LogRequestError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise LogRequestError(f"{key} must be at least {minimum}, got {value}")
    return value


def is_true(raw: str | None) -> bool:
    """A boolean query parameter as Kubernetes reads one."""
    return raw is not None and raw.lower() in ("true", "1", "t", "yes")


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """TLS for the log server: *cert*/*key*, and client certificates required when *client_ca* is given."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def log_app(lookup: Lookup, serving: Callable[[], bool]) -> web.Application:
    """The log server's routes; while *serving()* is False (the unreachable fault) it answers 503."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def container_logs(request: web.Request) -> web.StreamResponse:
        if not serving():
            raise web.HTTPServiceUnavailable(text="node is unreachable (fault injected)")
        info = request.match_info
        found = lookup(info["namespace"], info["pod"], info["container"])
        if isinstance(found, str):
            raise web.HTTPNotFound(text=found)
        if found.waiting_reason is not None:
            raise web.HTTPBadRequest(
                text=f'container "{info["container"]}" in pod "{info["pod"]}" is waiting to start: '
                f"{found.waiting_reason}"
            )
        try:
            tail_lines = int_param(request.query, "tailLines", 0)
            limit_bytes = int_param(request.query, "limitBytes", 1)
        except LogRequestError as error:
            raise web.HTTPBadRequest(text=str(error)) from None
        return await _answer(request, found, tail_lines, limit_bytes)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    return app


def _read(path: Path) -> tuple[bytes, datetime]:
    try:
        return path.read_bytes(), datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        return b"", datetime.now(UTC)


async def _answer(
    request: web.Request, source: LogSource, tail_lines: int | None, limit_bytes: int | None
) -> web.StreamResponse:
    timestamps = is_true(request.query.get("timestamps"))
    data, stamp = await asyncio.to_thread(_read, source.path)
    body = format_log(
        data, tail_lines=tail_lines, limit_bytes=limit_bytes, stamp=stamp if timestamps else None
    )
    if not is_true(request.query.get("follow")) or source.terminated():
        return web.Response(body=body, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(body)
    sent, offset = len(body), len(data)
    while limit_bytes is None or sent < limit_bytes:
        done = source.terminated()
        chunk = await asyncio.to_thread(_read_from, source.path, offset)
        offset += len(chunk)
        if chunk:
            out = format_log(
                chunk, tail_lines=None, limit_bytes=None, stamp=datetime.now(UTC) if timestamps else None
            )
            if limit_bytes is not None:
                out = out[: limit_bytes - sent]
            await response.write(out)
            sent += len(out)
        if done:
            break
        await asyncio.sleep(_FOLLOW_POLL)
    await response.write_eof()
    return response


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read()
    except FileNotFoundError:
        return b""
