"""Who may call the API: HTTP basic with the configured user and password, or an OIDC bearer token.

Every route but ``/health`` depends on one `Authenticator` (``dependencies()`` in ``create_app``).
``Authorization: Basic`` is compared with the configured credential in constant time (both parts,
always, so how long a refusal takes says nothing about which part was wrong). ``Authorization:
Bearer <JWT>`` is checked as `bucketrun.api.tokens` says, with the keys of the issuer its ``iss``
names (`bucketrun.api.jwks`: discovered, cached, refetched on an unknown ``kid`` at most once per
interval). As in OSCAR, both schemes are accepted when both are configured.

Any failure is an `UnauthorisedError`, answered 401 with an empty body: the reason is logged at info
(``api refused a credential``) and never names the credential. An issuer that cannot be reached
refuses its tokens (401), it does not fail the request (500).

A route with a credential of its own (``/job/{service}`` takes its service's token) checks that
first, then falls back on `Authenticator.authenticate` with the same header.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import structlog
from fastapi import Depends, Request, Security
from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.security.base import SecurityBase

from bucketrun.api.jwks import Fetch, IssuerKeys, Jwk, KeyCachePolicy, fetch_json
from bucketrun.api.settings import ApiSettings
from bucketrun.api.tokens import (
    TokenHeader,
    TokenPolicy,
    TokenRejectedError,
    read_header,
    signing_key,
    verify,
)

REALM: Final = "bucketrun"

_log = structlog.get_logger(__name__)


class UnauthorisedError(Exception):
    """A missing or wrong credential: answered 401 with no detail. The message is for the log only."""


@dataclass(frozen=True)
class Caller:
    """Who made the request, for the logs: the basic user name, or the token's subject and issuer."""

    name: str
    method: Literal["basic", "oidc", "service-token"]
    issuer: str | None = None


def authorization_parts(authorization: str | None) -> tuple[str, str]:
    """The scheme (lower case) and the credential of an ``Authorization`` header; empty when absent."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    return scheme.lower(), credential.strip()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    scheme, credential = authorization_parts(authorization)
    return credential if scheme == "bearer" and credential else None


class BasicCredential:
    """The configured user and password."""

    def __init__(self, username: str, password: str) -> None:
        self._username, self._password = username.encode(), password.encode()

    def check(self, credential: str) -> str:
        """The user name of a basic *credential* (``base64(user:password)``) that matches, else
        `UnauthorisedError`."""
        try:
            decoded = base64.b64decode(credential, validate=True)
        except (binascii.Error, ValueError):
            raise UnauthorisedError("basic credential is not base64") from None
        username, colon, password = decoded.partition(b":")
        user_ok = secrets.compare_digest(username, self._username)
        password_ok = secrets.compare_digest(password, self._password)
        if not (colon and user_ok and password_ok):
            raise UnauthorisedError("wrong basic user or password")
        return username.decode(errors="replace")


class OidcTokens:
    """Bearer tokens of the configured issuers."""

    def __init__(self, policy: TokenPolicy, issuers: dict[str, IssuerKeys]) -> None:
        self._policy, self._issuers = policy, issuers

    async def check(self, token: str) -> Caller:
        """The caller *token* speaks for, else `UnauthorisedError`."""
        try:
            header = read_header(token, self._policy)
            caller = verify(token, header, await self._key(header), self._policy)
        except TokenRejectedError as error:
            raise UnauthorisedError(f"bearer token: {error}") from None
        return Caller(name=caller.subject, method="oidc", issuer=caller.issuer)

    async def _key(self, header: TokenHeader) -> Jwk:
        keys = await self._issuers[header.issuer].keys(header.key_id)
        jwk = signing_key(header, keys)
        if jwk is None:
            why = "no key of its issuer signs it" if keys else "its issuer's keys could not be fetched"
            raise TokenRejectedError(f"{why} (kid {header.key_id!r:.80})")
        return jwk


class _Documented(SecurityBase):
    """A scheme shown in the OpenAPI document; `Authenticator` reads the header itself (FastAPI's own
    schemes answer a malformed basic credential with a 401 that has a body)."""

    def __init__(self, scheme: str) -> None:
        self.model = HTTPBaseModel(scheme=scheme)
        self.scheme_name = f"HTTP{scheme.title()}"

    async def __call__(self) -> None:
        return None


_BASIC_SCHEME: Final = _Documented("basic")
_BEARER_SCHEME: Final = _Documented("bearer")


class Authenticator:
    """The dependency every route but ``/health`` has: a `Caller`, or `UnauthorisedError`."""

    def __init__(
        self, api: ApiSettings, fetch: Fetch = fetch_json, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._basic = (
            BasicCredential(api.username, api.password.get_secret_value())
            if api.username is not None and api.password is not None
            else None
        )
        self._oidc = _oidc_tokens(api, fetch, clock) if api.oidc_issuers else None

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value of a 401: the schemes accepted."""
        schemes = [name for name, on in (("Basic", self._basic), ("Bearer", self._oidc)) if on is not None]
        return ", ".join(f'{scheme} realm="{REALM}"' for scheme in schemes)

    def dependencies(self) -> list[Any]:
        """What a route lists in ``dependencies=``: this check, and the schemes for the OpenAPI document."""
        schemes = [
            Security(scheme)
            for scheme, on in ((_BASIC_SCHEME, self._basic), (_BEARER_SCHEME, self._oidc))
            if on is not None
        ]
        return [*schemes, Depends(self)]

    async def __call__(self, request: Request) -> Caller:
        """The caller of *request*, bound to the request's log lines as ``caller``."""
        caller = await self.authenticate(request.headers.get("Authorization"))
        structlog.contextvars.bind_contextvars(caller=caller.name)
        return caller

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller an ``Authorization`` header value names, or `UnauthorisedError` (logged)."""
        try:
            return await self._check(authorization)
        except UnauthorisedError as error:
            _log.info("api refused a credential", reason=str(error))
            raise

    async def _check(self, authorization: str | None) -> Caller:
        scheme, credential = authorization_parts(authorization)
        if scheme == "basic" and self._basic is not None:
            return Caller(name=self._basic.check(credential), method="basic")
        if scheme == "bearer" and self._oidc is not None and credential:
            return await self._oidc.check(credential)
        shown = scheme if scheme in {"basic", "bearer"} else "other" if scheme else "none"
        raise UnauthorisedError(f"no accepted credential (scheme: {shown})")


def _oidc_tokens(api: ApiSettings, fetch: Fetch, clock: Callable[[], float]) -> OidcTokens:
    policy = TokenPolicy(
        issuers=frozenset(api.oidc_issuers),
        audiences=api.oidc_audience,
        algorithms=frozenset(api.oidc_algorithms),
        groups=frozenset(api.oidc_groups),
        leeway=api.oidc_leeway_seconds,
    )
    cache = KeyCachePolicy(
        ttl=api.oidc_jwks_cache_seconds,
        refetch_interval=api.oidc_jwks_refetch_seconds,
        timeout=api.oidc_fetch_timeout_seconds,
    )
    return OidcTokens(
        policy, {issuer: IssuerKeys(issuer, cache, fetch, clock) for issuer in api.oidc_issuers}
    )
