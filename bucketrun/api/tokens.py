"""Checking an OIDC bearer token (a JWT) against the API's policy: pure, the issuer's keys handed in.

Two steps, so the keys can be chosen before anything is trusted: `read_header` reads, without
verifying, only what picks the keys (the issuer named by ``iss``, the header's ``kid`` and ``alg``) and
refuses at once an algorithm outside the policy (``none`` and ``HS*`` never are in it: a public key
used as an HMAC secret would let anyone sign). `verify` then checks the signature with the chosen key,
``iss``, ``aud``, ``exp``/``nbf``/``iat`` (with the policy's leeway) and the required groups, and
returns the caller. Every refusal is a `TokenRejectedError` whose reason names what failed and never
carries the token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt

ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""The signature algorithms a policy may accept: those verified with a public key."""
REQUIRED_CLAIMS: Final = ("iss", "aud", "exp", "sub")
EGI_GROUP_URN: Final = "urn:mace:egi.eu:group:"
"""EGI Check-in's entitlement prefix: ``urn:mace:egi.eu:group:<vo>:...`` makes its holder a member of
``<vo>``, as OSCAR reads it."""
_GROUP_CLAIMS: Final = ("groups", "group_membership")
_ENTITLEMENT_CLAIMS: Final = ("entitlements", "eduperson_entitlement")


class TokenRejectedError(Exception):
    """The token is refused; the message says why (for the log) and holds no part of the token."""


@dataclass(frozen=True)
class TokenPolicy:
    """What a token must satisfy."""

    issuers: frozenset[str]
    audiences: tuple[str, ...]
    algorithms: frozenset[str]
    groups: frozenset[str]
    """One of these is required; empty: none is."""
    leeway: float
    """Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``."""


@dataclass(frozen=True)
class TokenHeader:
    """What picks the keys, read before the signature is checked (so trusted for nothing else)."""

    issuer: str
    key_id: str | None
    algorithm: str


@dataclass(frozen=True)
class TokenCaller:
    """Whom a verified token speaks for."""

    subject: str
    issuer: str
    name: str


def read_header(token: str, policy: TokenPolicy) -> TokenHeader:
    """The issuer, key id and algorithm *token* names, or `TokenRejectedError` when the policy excludes
    them (an unknown issuer, an algorithm not accepted) or it is no JWT."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise TokenRejectedError(f"not a JWT: {error}") from None
    algorithm = header.get("alg")
    if algorithm not in policy.algorithms:
        raise TokenRejectedError(f"algorithm {algorithm!r:.40} is not accepted")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or issuer not in policy.issuers:
        raise TokenRejectedError(f"issuer {issuer!r:.200} is not configured")
    key_id = header.get("kid")
    if key_id is not None and not isinstance(key_id, str):
        raise TokenRejectedError("kid is not a string")
    return TokenHeader(issuer=issuer, key_id=key_id, algorithm=str(algorithm))


def signing_key(header: TokenHeader, keys: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The JWK of *keys* that signs *header*'s token: the one with its ``kid``, or without a ``kid`` the
    only one there is; None when there is none to choose."""
    signing = [key for key in keys if key.get("use", "sig") == "sig"]
    if header.key_id is None:
        return signing[0] if len(signing) == 1 else None
    return next((key for key in signing if key.get("kid") == header.key_id), None)


def verify(token: str, header: TokenHeader, jwk: Mapping[str, Any], policy: TokenPolicy) -> TokenCaller:
    """The caller *token* speaks for, once its signature by *jwk* and its claims pass *policy*."""
    if jwk.get("alg", header.algorithm) != header.algorithm:
        raise TokenRejectedError(
            f"key {header.key_id!r:.80} is for {jwk.get('alg')!r}, not {header.algorithm}"
        )
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=header.algorithm)
        claims = jwt.decode(
            token,
            key,
            algorithms=[header.algorithm],
            audience=list(policy.audiences),
            issuer=header.issuer,
            leeway=policy.leeway,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.PyJWTError as error:
        raise TokenRejectedError(f"{type(error).__name__}: {error}") from None
    if policy.groups and not policy.groups & groups_of(claims):
        raise TokenRejectedError(f"holds none of the groups {sorted(policy.groups)}")
    subject = str(claims["sub"])
    name = claims.get("preferred_username") or claims.get("name") or subject
    return TokenCaller(subject=subject, issuer=header.issuer, name=str(name))


def groups_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The groups *claims* grant: ``groups``, ``group_membership``, ``realm_access.roles`` as they are,
    and EGI entitlements (``entitlements``, ``eduperson_entitlement``) as their VO."""
    found: set[str] = set()
    for claim in _GROUP_CLAIMS:
        found.update(_strings(claims.get(claim)))
    realm = claims.get("realm_access")
    if isinstance(realm, Mapping):
        found.update(_strings(realm.get("roles")))
    for claim in _ENTITLEMENT_CLAIMS:
        found.update(_entitlement_group(value) for value in _strings(claims.get(claim)))
    return frozenset(found)


def _entitlement_group(entitlement: str) -> str:
    urn = entitlement.strip().lower().partition("#")[0]  # the part after # names the authority
    if urn.startswith(EGI_GROUP_URN) and (vo := urn.removeprefix(EGI_GROUP_URN).split(":")[0]):
        return vo
    return entitlement


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []
