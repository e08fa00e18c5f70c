"""An OIDC issuer's signing keys: discovered, fetched over HTTP and cached. The API's only HTTP client.

Invariant: **one issuer is fetched at most once per ``refetch_interval``, whatever asks.** A token
naming a key the cache lacks (a rotation), keys older than ``ttl``, or no keys yet (the issuer was
down) each ask for a fetch, but `fetch_due` grants one only when the interval has passed since the
last attempt, and a lock makes concurrent requests share it: a flood of tokens with made-up ``kid`` s
costs the issuer one request per interval, and an issuer that is down is not retried on every request.
Between fetches the last keys fetched stay in use; a failed fetch keeps them (it is logged) rather than
refuse every token while the issuer is briefly unreachable.

Keys are found as OIDC discovery says: ``<issuer>/.well-known/openid-configuration``, whose ``issuer``
must be the configured one, names ``jwks_uri``; that document's ``keys`` are the JWKs. Both documents
are read with a timeout and a size bound. Nothing here verifies a token (`bucketrun.api.tokens` does).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import structlog

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
MAX_DOCUMENT_BYTES: Final = 512 * 1024
"""The largest discovery or JWKS document read (real ones are a few KiB)."""

Jwk = Mapping[str, Any]
Fetch = Callable[[str, float], Awaitable[Any]]
"""Reads the JSON document at a URL within a timeout (seconds); raises `IssuerFetchError`."""

_log = structlog.get_logger(__name__)


class IssuerFetchError(Exception):
    """The issuer's discovery document or keys could not be read; the message says which and why."""


@dataclass(frozen=True)
class KeyCachePolicy:
    """How long keys are kept and how often an issuer may be asked for them."""

    ttl: float
    """Seconds keys are used before they are fetched again."""
    refetch_interval: float
    """Least seconds between two fetches of one issuer."""
    timeout: float
    """Seconds one document's fetch may take."""


def fetch_due(
    *,
    fetched: bool,
    fetched_at: float,
    attempted_at: float | None,
    key_known: bool,
    now: float,
    policy: KeyCachePolicy,
) -> bool:
    """Whether to fetch the keys now: they are missing, stale or lack the key asked for, and the
    interval since the last attempt has passed."""
    wanted = not fetched or not key_known or now - fetched_at >= policy.ttl
    return wanted and (attempted_at is None or now - attempted_at >= policy.refetch_interval)


async def fetch_json(url: str, within: float) -> Any:
    """The JSON document at *url*, read within *within* seconds and `MAX_DOCUMENT_BYTES`."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as session,
            session.get(url, headers={"Accept": "application/json"}) as response,
        ):
            body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as error:
        raise IssuerFetchError(f"{url}: {type(error).__name__}: {error}") from None
    if status != 200:
        raise IssuerFetchError(f"{url}: HTTP {status}")
    if len(body) > MAX_DOCUMENT_BYTES:
        raise IssuerFetchError(f"{url}: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as error:
        raise IssuerFetchError(f"{url}: not JSON ({error})") from None


def jwks_uri(issuer: str, discovery: Any) -> str:
    """The ``jwks_uri`` of *issuer*'s discovery document, which must name *issuer* itself."""
    if not isinstance(discovery, dict) or discovery.get("issuer") != issuer:
        found = discovery.get("issuer") if isinstance(discovery, dict) else None
        raise IssuerFetchError(f"{issuer}: the discovery document names issuer {found!r}")
    uri = discovery.get("jwks_uri")
    if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
        raise IssuerFetchError(f"{issuer}: the discovery document has no jwks_uri")
    return uri


def signing_keys(issuer: str, document: Any) -> tuple[Jwk, ...]:
    """The JWKs of a JWKS *document* (``{"keys": [...]}``)."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise IssuerFetchError(f"{issuer}: the JWKS document has no keys list")
    return tuple(key for key in keys if isinstance(key, dict) and isinstance(key.get("kty"), str))


class IssuerKeys:
    """One issuer's keys, fetched when `fetch_due` says so (see the module docstring)."""

    def __init__(
        self,
        issuer: str,
        policy: KeyCachePolicy,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._policy, self._fetch, self._clock = policy, fetch, clock
        self._keys: tuple[Jwk, ...] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def keys(self, key_id: str | None) -> tuple[Jwk, ...]:
        """The issuer's keys, fetched first when due; empty while none could ever be fetched."""
        # A request that comes while a fetch is in flight waits for its keys instead of going without.
        if self._due(key_id) or self._lock.locked():
            async with self._lock:
                if self._due(key_id):  # not fetched by the request this one waited for
                    await self._refresh()
        return self._keys or ()

    def _due(self, key_id: str | None) -> bool:
        known = key_id is None or any(key.get("kid") == key_id for key in self._keys or ())
        return fetch_due(
            fetched=self._keys is not None,
            fetched_at=self._fetched_at,
            attempted_at=self._attempted_at,
            key_known=known,
            now=self._clock(),
            policy=self._policy,
        )

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        timeout = self._policy.timeout
        try:
            discovery = await self._fetch(self.issuer.rstrip("/") + DISCOVERY_PATH, timeout)
            keys = signing_keys(self.issuer, await self._fetch(jwks_uri(self.issuer, discovery), timeout))
        except IssuerFetchError as error:
            _log.warning("oidc keys not fetched", issuer=self.issuer, error=str(error))
            return
        self._keys, self._fetched_at = keys, self._clock()
        _log.info("oidc keys fetched", issuer=self.issuer, keys=len(keys))
