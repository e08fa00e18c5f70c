"""The API's own settings (``BUCKETRUN_API__*``), beside the dispatcher's ``Settings`` it also loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bucketrun.api.tokens import ASYMMETRIC_ALGORITHMS
from dispatcher.fdl.names import check_bucket_name, check_dns_subdomain

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024


def _listed(value: object) -> object:
    """A comma-separated environment value as a list (one starting with ``[`` is read as JSON)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _issuers(issuers: tuple[str, ...]) -> tuple[str, ...]:
    for issuer in issuers:
        parts = urlsplit(issuer)
        if parts.scheme not in {"https", "http"} or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"{issuer!r} is not an issuer URL (http(s)://host/path, no query)")
    return issuers


def _algorithms(algorithms: tuple[str, ...]) -> tuple[str, ...]:
    refused = [name for name in algorithms if name not in ASYMMETRIC_ALGORITHMS]
    if refused or not algorithms:
        raise ValueError(f"{refused or 'none'}: choose from {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}")
    return algorithms


class ApiSettings(BaseSettings):
    """`bucketrun api`: who may call it, where it listens, where its services go, how much it reads."""

    model_config = SettingsConfigDict(
        env_prefix="BUCKETRUN_API__",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    username: str | None = Field(default=None, min_length=1)
    """HTTP basic user every route but ``/health`` accepts (OSCAR's ``OSCAR_USERNAME``). Required unless
    ``oidc_issuers`` is set; unset, no basic credential is accepted."""
    password: SecretStr | None = Field(default=None, min_length=1)
    """Its password (OSCAR's ``OSCAR_PASSWORD``): set with ``username``, or neither."""
    oidc_issuers: Annotated[
        tuple[str, ...], NoDecode, BeforeValidator(_listed), AfterValidator(_issuers)
    ] = ()
    """OIDC issuers whose bearer tokens are accepted (OSCAR's ``OIDC_ISSUERS``), comma-separated or a
    JSON list, each exactly as its tokens' ``iss`` claim spells it; its keys come from
    ``<issuer>/.well-known/openid-configuration``. Default none (no bearer token is accepted)."""
    oidc_audience: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_listed)] = ()
    """Audiences a token's ``aud`` must name one of (comma-separated or a JSON list). Required with
    ``oidc_issuers`` (OSCAR checks none, so any token its issuer signed for any client would do)."""
    oidc_groups: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_listed)] = ()
    """Groups a token must hold one of (OSCAR's ``OIDC_GROUPS``), read from its ``groups``,
    ``group_membership``, ``realm_access.roles``, ``entitlements`` and ``eduperson_entitlement`` claims
    (an EGI ``urn:mace:egi.eu:group:<vo>:...`` entitlement counts as ``<vo>``). Default none: any
    token that passes the other checks."""
    oidc_algorithms: Annotated[
        tuple[str, ...], NoDecode, BeforeValidator(_listed), AfterValidator(_algorithms)
    ] = ("RS256", "ES256")
    """Signature algorithms accepted, asymmetric only (``none`` and ``HS*`` are refused). Default
    ``RS256,ES256``."""
    oidc_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    """Clock skew, in seconds, allowed on a token's ``exp``, ``nbf`` and ``iat``. Default 30."""
    oidc_jwks_cache_seconds: float = Field(default=600.0, gt=0)
    """Seconds an issuer's keys are used before they are fetched again. Default 600."""
    oidc_jwks_refetch_seconds: float = Field(default=60.0, ge=0)
    """Least seconds between two fetches of one issuer's keys, whatever asks (a token naming an unknown
    key, expiry, a failed fetch): a flood of made-up ``kid`` values reaches the issuer once. Default 60."""
    oidc_fetch_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """Seconds one fetch of an issuer's discovery document or keys may take. Default 5."""
    store_access_key: SecretStr | None = Field(default=None, min_length=3, max_length=20)
    """Access key of the MinIO user the API creates for its users and serves in ``/system/config``
    (put-file, get-file): it may read and write only the input and output folders of the API's
    services. Not bucketrun's own key. Default none: empty keys are served."""
    store_secret_key: SecretStr | None = Field(default=None, min_length=8, max_length=40)
    """Its secret key (MinIO: 8 to 40 characters); set both or neither. Default none."""
    host: str = "127.0.0.1"
    """Address to listen on. Default ``127.0.0.1``."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port to listen on (0: any free port). Default 8080, OSCAR's."""
    definitions_bucket: Annotated[str, AfterValidator(check_bucket_name)] = "bucketrun-api"
    """Bucket of the store where the API keeps the definitions it applied (``services/<name>.json``, no
    credentials): not the records bucket, and one that notifies nothing. Created when missing. Default
    ``bucketrun-api``."""
    services_dir: Path | None = None
    """Directory where the API writes each service it applied as ``<name>.yaml`` (owner-only), for a
    dispatcher on this machine that reads it (name it in the dispatcher's ``BUCKETRUN_SERVICES__PATHS``).
    Set this or ``services_secret``; with neither, services applied through the API never run. Default
    none."""
    services_secret: Annotated[str, AfterValidator(check_dns_subdomain)] | None = None
    """Secret (in the cluster's namespace) where the API writes each service it applied, one key
    ``<name>.yaml`` each, for a dispatcher in Kubernetes that mounts it and names the mount in
    ``BUCKETRUN_SERVICES__PATHS`` (deploy/kubernetes: ``bucketrun-api-services``). Default none."""
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    """Largest request body, in bytes, read; a bigger one is answered 413. Default 1 MiB (a service's
    script must fit a ConfigMap anyway)."""
    job_listing_limit: int = Field(default=70, ge=1, le=10_000)
    """Jobs per page of ``GET /system/logs/{service}`` (OSCAR's ``JOB_LISTING_LIMIT``). Default 70,
    OSCAR's."""

    @model_validator(mode="after")
    def _a_credential(self) -> ApiSettings:
        if self.services_dir is not None and self.services_secret is not None:
            raise PydanticCustomError(
                "services",
                "set BUCKETRUN_API__SERVICES_DIR or BUCKETRUN_API__SERVICES_SECRET, not both: the dispatcher "
                "reads one place",
            )
        if (self.username is None) != (self.password is None):
            raise PydanticCustomError(
                "basic", "set both BUCKETRUN_API__USERNAME and BUCKETRUN_API__PASSWORD, or neither"
            )
        if self.oidc_issuers and not self.oidc_audience:
            raise PydanticCustomError(
                "audience", "BUCKETRUN_API__OIDC_AUDIENCE is required with BUCKETRUN_API__OIDC_ISSUERS"
            )
        if self.username is None and not self.oidc_issuers:
            raise PydanticCustomError(
                "credential",
                "no credential: set BUCKETRUN_API__USERNAME and BUCKETRUN_API__PASSWORD (HTTP basic), "
                "or BUCKETRUN_API__OIDC_ISSUERS and BUCKETRUN_API__OIDC_AUDIENCE (OIDC bearer tokens)",
            )
        return self

    def secret_values(self) -> tuple[str, ...]:
        """The configured secrets, for the log redaction."""
        return (self.password.get_secret_value(),) if self.password is not None else ()
