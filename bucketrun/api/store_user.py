"""The store keys the API hands its users (``/system/config``'s ``minio_provider``), never the admin's.

oscar-cli (``service put-file``, ``get-file``, ``list-files``) and oscar-python (``upload_file``,
``download_file``) read ``minio_provider`` from ``GET /system/config`` and then talk S3 to the store
themselves. OSCAR hands basic-auth users its admin keys there; bucketrun hands them the keys of a MinIO
user of their own (``BUCKETRUN_API__STORE_ACCESS_KEY`` / ``STORE_SECRET_KEY``), created at startup through
MinIO's admin API, whose only policy is ``bucketrun-api-users.<definitions bucket>``.

Invariant: that policy grants exactly "read and write the input and output folders, on bucketrun's own
store (``minio.default``), of the services applied through the API", never the records bucket nor the
definitions bucket. It is rewritten from the kept definitions at startup and after every create, update
and delete (the catalog calls ``grant`` under its lock, so rewrites follow changes in order).

Where the store has no admin API (moto, AWS S3), or bucketrun's key may not use it, or no keys are set,
the API says so at startup and serves empty keys: put-file and get-file then get the store's own 403. A
store that does not answer at startup delays the API by ``START_BUDGET`` at most: the user is then
created in the background, and empty keys are served until it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from bucketrun.api.settings import ApiSettings
from dispatcher.adapters.s3.users import StoreUsers
from dispatcher.domain.errors import PermanentError
from dispatcher.fdl.locations import split_location
from dispatcher.fdl.storage import DEFAULT_PROVIDER, normalise_provider
from dispatcher.runtime.retrying import OutOfTimeError, retry_transient
from dispatcher.runtime.settings import Settings

_log = structlog.get_logger(__name__)

POLICY_PREFIX: Final = "bucketrun-api-users."
"""The users' policy is named this, then the API's definitions bucket (one policy per API)."""
OBJECT_ACTIONS: Final = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
"""What the keys may do to objects under a granted folder: read, write (multipart too), delete."""
_DENY_ALL: Final = {"Effect": "Deny", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]}
START_BUDGET: Final = 15.0
"""Seconds ``start`` tries to create the user before the API serves without it (and goes on trying)."""
_CREATING: Final = "creating the API users' store user"


class StoreUserError(ValueError):
    """The API users' store keys cannot be used: one of the two is missing, or they are the admin's."""


@dataclass(frozen=True, order=True, slots=True)
class Grant:
    """One folder of bucketrun's store the keys may read and write (``""``: the whole bucket)."""

    bucket: str
    folder: str


def policy_name(definitions_bucket: str) -> str:
    """The canned policy of the users of the API keeping its definitions in ``definitions_bucket``."""
    return f"{POLICY_PREFIX}{definitions_bucket}"


def grants(definitions: Iterable[Mapping[str, Any]], *, withheld: Iterable[str]) -> tuple[Grant, ...]:
    """Every input and output folder on ``minio.default`` of the kept ``definitions`` (OSCAR JSON), read as
    ``services apply`` reads a path; never in a ``withheld`` bucket. Sorted, without repeats."""
    kept_out = frozenset(withheld)
    found: set[Grant] = set()
    for definition in definitions:
        for kind in ("input", "output"):
            for entry in definition.get(kind) or ():
                grant = _grant(entry, kind=kind, service=definition.get("name"))
                if grant is not None and grant.bucket not in kept_out:
                    found.add(grant)
    return tuple(sorted(found))


def _grant(entry: Mapping[str, Any], *, kind: str, service: object) -> Grant | None:
    """The folder of one ``input``/``output`` entry, None when it is not on bucketrun's store or unreadable
    (a kept definition was applied, so it reads; a provider of its own has keys of its own)."""
    provider = entry.get("storage_provider")
    try:
        if not isinstance(provider, str) or normalise_provider(provider) != DEFAULT_PROVIDER:
            return None
        location = split_location(entry.get("path"), kind=kind, provider=provider, service=service)
    except ValueError:
        return None
    return Grant(location.bucket, location.folder)


def policy_document(granted: Iterable[Grant]) -> dict[str, Any]:
    """The IAM policy allowing exactly ``granted``: objects under each folder, and listing a bucket only
    with a prefix within a granted folder (as the clients list: the folder, without its slash, or below
    it). Nothing granted: one statement denying everything (MinIO refuses an empty policy)."""
    by_bucket: dict[str, list[str]] = {}
    for grant in sorted(set(granted)):
        by_bucket.setdefault(grant.bucket, []).append(grant.folder)
    if not by_bucket:
        return {"Version": "2012-10-17", "Statement": [_DENY_ALL]}
    objects = [
        f"arn:aws:s3:::{bucket}/{folder}/*" if folder else f"arn:aws:s3:::{bucket}/*"
        for bucket, folders in by_bucket.items()
        for folder in folders
    ]
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": list(OBJECT_ACTIONS), "Resource": objects},
        {
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation"],
            "Resource": [f"arn:aws:s3:::{bucket}" for bucket in by_bucket],
        },
    ]
    for bucket, folders in by_bucket.items():
        listing: dict[str, Any] = {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
        }
        if "" not in folders:
            prefixes = [pattern for folder in folders for pattern in (folder, f"{folder}/*")]
            listing["Condition"] = {"StringLike": {"s3:prefix": prefixes}}
        statements.append(listing)
    return {"Version": "2012-10-17", "Statement": statements}


class StoreUser:
    """The API users' MinIO user: created at ``start``, its policy rewritten by ``grant``."""

    def __init__(self, settings: Settings, api: ApiSettings, *, start_budget: float = START_BUDGET) -> None:
        """Check the configured keys; no request is made. ``StoreUserError`` when one is missing or they
        are the admin's. ``start`` tries for ``start_budget`` seconds before going on in the background."""
        access = api.store_access_key.get_secret_value() if api.store_access_key else ""
        secret = api.store_secret_key.get_secret_value() if api.store_secret_key else ""
        if bool(access) != bool(secret):
            raise StoreUserError(
                "set both BUCKETRUN_API__STORE_ACCESS_KEY and BUCKETRUN_API__STORE_SECRET_KEY, or neither"
            )
        if access and access == settings.storage.access_key.get_secret_value():
            raise StoreUserError(
                "BUCKETRUN_API__STORE_ACCESS_KEY is bucketrun's own store key "
                "(BUCKETRUN_STORAGE__ACCESS_KEY): give the API's users a key of their own"
            )
        self._keys = (access, secret) if access and secret else None
        self._policy = policy_name(api.definitions_bucket)
        self._withheld = (settings.storage.records_bucket, api.definitions_bucket)
        self._users = StoreUsers(settings.storage) if self._keys else None
        self._ready = False
        self._lock = asyncio.Lock()
        self._creating: asyncio.Task[None] | None = None
        self._start_budget = start_budget

    @property
    def keys(self) -> tuple[str, str]:
        """(access key, secret key) for ``minio_provider``: empty strings unless the user was created."""
        return self._keys if self._ready and self._keys else ("", "")

    async def start(self, definitions: Callable[[], Awaitable[Iterable[Mapping[str, Any]]]]) -> None:
        """Write the policy for the kept ``definitions()``, then create the user with it; say so when it
        cannot be. A store that does not answer within the start budget is tried again in the
        background (empty keys are served meanwhile): the API starts either way."""
        if self._users is None or self._keys is None:
            _log.warning(
                "no store keys for API users (BUCKETRUN_API__STORE_ACCESS_KEY, _SECRET_KEY): "
                "/system/config serves empty keys, so put-file and get-file get the store's 403"
            )
            return
        users, (access, secret) = self._users, self._keys

        async def create() -> None:
            async with self._lock:  # a grant waits for it, then sees the user ready
                document = policy_document(grants(await definitions(), withheld=self._withheld))
                await users.put_policy(self._policy, document)
                await users.put_user(access, secret, policy=self._policy)
                self._ready = True

        try:
            await retry_transient(create, what=_CREATING, base=0.5, cap=5.0, seconds=self._start_budget)
        except OutOfTimeError as error:
            _log.warning(
                "the store does not answer: the API users' store user is created once it does; until "
                "then /system/config serves empty keys",
                error=str(error),
            )
            self._creating = asyncio.create_task(self._create_later(create))
            return
        except PermanentError as error:
            self._cannot(error)
            return
        _log.info("API users' store user ready", access_key=access, policy=self._policy)

    async def stop(self) -> None:
        """Stop trying to create the user in the background, if it still is."""
        if self._creating is not None:
            self._creating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._creating

    async def _create_later(self, create: Callable[[], Awaitable[None]]) -> None:
        try:
            await retry_transient(create, what=_CREATING, base=1.0, cap=60.0)
        except PermanentError as error:
            self._cannot(error)
            return
        _log.info("API users' store user ready", access_key=self._keys[0] if self._keys else "")

    @staticmethod
    def _cannot(error: PermanentError) -> None:
        _log.warning(
            "the API users' store user cannot be created: /system/config serves empty keys, so "
            "put-file and get-file get the store's 403",
            error=str(error),
        )

    async def grant(self, definitions: Iterable[Mapping[str, Any]]) -> None:
        """Rewrite the users' policy for ``definitions`` (all the API's services); nothing when the user
        was not created."""
        document = policy_document(grants(definitions, withheld=self._withheld))
        async with self._lock:
            if self._ready and self._users is not None:
                await self._users.put_policy(self._policy, document)
