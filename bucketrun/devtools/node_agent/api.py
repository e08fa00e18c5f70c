"""A small Kubernetes API client for the node agent: a kubeconfig's credentials over aiohttp.

The agent needs a handful of calls (get, create, merge-patch, delete, list and watch) on plain JSON
documents, so it speaks HTTP itself rather than through bucketrun's kube adapter, whose typed calls
serve Jobs. Credentials come from one kubeconfig context: client certificate and key (files or
inline data), bearer token, and the cluster's CA.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

MERGE_PATCH = "application/merge-patch+json"
_REQUEST_TIMEOUT = 30.0


class ApiError(Exception):
    """The API server answered with an error status; *status* and its Status *reason* say which."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeconfigError(ValueError):
    """The kubeconfig cannot be used; the message names the file and the missing or bad entry."""


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate to it."""

    server: str
    ssl_context: ssl.SSLContext | None
    headers: Mapping[str, str] = field(default_factory=dict)


def _named(entries: Any, name: str, kind: str, path: Path) -> Mapping[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return dict(entry.get(kind) or {})
    raise KubeconfigError(f"{path}: no {kind} named {name!r}")


def _file(entry: Mapping[str, Any], key: str, base: Path, scratch: Path) -> Path | None:
    """The path of *key* (a file entry) or of *key*-data written to *scratch*; None if neither is set."""
    if entry.get(f"{key}-data"):
        target = scratch / key
        target.write_bytes(base64.b64decode(entry[f"{key}-data"]))
        target.chmod(0o600)
        return target
    if entry.get(key):
        return (base / str(entry[key])).resolve()
    return None


def load_kubeconfig(path: Path, context: str | None = None) -> Credentials:
    """The credentials of *context* (default: current-context) in the kubeconfig at *path*."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {error}") from error
    if not isinstance(config, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig (not a YAML mapping)")
    name = context or config.get("current-context")
    if not name:
        raise KubeconfigError(f"{path} has no current-context; pass a context name")
    ctx = _named(config.get("contexts"), name, "context", path)
    cluster = _named(config.get("clusters"), ctx.get("cluster", ""), "cluster", path)
    user = _named(config.get("users"), ctx.get("user", ""), "user", path) if ctx.get("user") else {}
    server = str(cluster.get("server") or "")
    if not server:
        raise KubeconfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    base = path.parent
    # Inline data must become files for the ssl module; they live as long as this process.
    scratch = Path(tempfile.mkdtemp(prefix="node-agent-kubeconfig-"))
    headers = {}
    if user.get("token"):
        headers["Authorization"] = f"Bearer {user['token']}"
    if not server.startswith("https://"):
        return Credentials(server.rstrip("/"), None, headers)
    context_ssl = ssl.create_default_context(
        cafile=_optional(_file(cluster, "certificate-authority", base, scratch))
    )
    if cluster.get("insecure-skip-tls-verify"):
        context_ssl.check_hostname = False
        context_ssl.verify_mode = ssl.CERT_NONE
    cert = _file(user, "client-certificate", base, scratch)
    key = _file(user, "client-key", base, scratch)
    if cert is not None:
        context_ssl.load_cert_chain(cert, key)
    return Credentials(server.rstrip("/"), context_ssl, headers)


def _optional(path: Path | None) -> str | None:
    return None if path is None else str(path)


class ApiClient:
    """JSON calls against one API server; every error status raises ApiError."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        connector = aiohttp.TCPConnector(ssl=credentials.ssl_context or False, limit=32)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=dict(credentials.headers),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    @property
    def server(self) -> str:
        """The API server's URL."""
        return self._credentials.server

    async def close(self) -> None:
        """Close the connection pool."""
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One call; the decoded JSON answer (ApiError for any status >= 400)."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        async with self._session.request(
            method,
            self.server + path,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT),
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise _error(response.status, text)
            result: dict[str, Any] = json.loads(text) if text else {}
            return result

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET *path*."""
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST *body* to the collection at *path*."""
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch to the object (or subresource) at *path*."""
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """DELETE the object at *path* with optional DeleteOptions."""
        return await self.request("DELETE", path, body=body)

    async def watch(
        self, path: str, params: Mapping[str, str], timeout_seconds: int
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request (`{"type": ..., "object": ...}`), until the server ends it."""
        query = {
            **params,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        async with self._session.get(
            self.server + path,
            params=query,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30, sock_read=timeout_seconds + 30),
        ) as response:
            if response.status >= 400:
                raise _error(response.status, await response.text())
            async for line in response.content:
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    yield event


def _error(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
    except ValueError:
        return ApiError(status, "", text[:500])
    if not isinstance(body, dict):
        return ApiError(status, "", text[:500])
    return ApiError(status, str(body.get("reason", "")), str(body.get("message", text[:500])))
