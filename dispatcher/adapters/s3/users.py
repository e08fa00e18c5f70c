"""Store users through MinIO's admin API: one user, one canned policy that is its only policy.

The only module that imports ``minio.minioadmin``. Calls are signed with bucketrun's own keys
(``StorageSettings``), which must be allowed MinIO's admin actions (``admin:CreateUser``,
``admin:CreatePolicy``, ``admin:AttachUserOrGroupPolicy``, ``admin:GetUser``). Like ``storage``, every call
runs in a worker thread and the SDK's exceptions become ``TransientError`` / ``PermanentError``.

A store without MinIO's admin API (moto, AWS S3, other S3 servers), or a key that may not use it, answers
with a 4xx that is no admin answer: ``AdminApiUnavailableError``, so the caller can say so and carry on
without the user. An answer that looks like success is not taken on trust: ``put_user`` reads the user
back and requires MinIO's own description of it, naming the policy it was given.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import urllib3
from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException
from minio.minioadmin import MinioAdmin

from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.runtime.settings import StorageSettings

_T = TypeVar("_T")

# Statuses that mean "try again later" (the same as the storage adapter's), and the 4xx a store answers
# when it has no admin API or this key may not use it.
_TRANSIENT_STATUSES: Final = frozenset({408, 429})
_UNAVAILABLE_STATUSES: Final = frozenset({400, 403, 404, 405, 501})
_MAX_DETAIL: Final = 300


class AdminApiUnavailableError(PermanentError):
    """The store has no MinIO admin API, or bucketrun's key may not use it; ``detail`` is its answer."""

    def __init__(self, endpoint: str, what: str, detail: str) -> None:
        super().__init__(
            f"the store at {endpoint} refused MinIO's admin API ({what}): {detail}",
            reason="storage-admin-unavailable",
        )
        self.detail = detail


class StoreUsers:
    """Writes canned policies and users of the store named by ``settings``, as its admin."""

    def __init__(self, settings: StorageSettings) -> None:
        """Build the admin client from ``settings``; no request is made."""
        self._endpoint = settings.endpoint
        self._admin = MinioAdmin(
            endpoint=settings.endpoint,
            credentials=StaticProvider(
                settings.access_key.get_secret_value(), settings.secret_key.get_secret_value()
            ),
            region=settings.region,
            secure=settings.secure,
            # Retried at bucketrun's level (retry_transient); the SDK's default pool retries 5xx 5 times.
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=settings.request_timeout, read=settings.request_timeout),
                maxsize=4,
                retries=urllib3.Retry(total=1, read=0, status=0, redirect=0),
            ),
        )

    def __repr__(self) -> str:
        """The endpoint only: never the keys."""
        return f"StoreUsers(endpoint={self._endpoint!r})"

    async def put_policy(self, name: str, document: Mapping[str, Any]) -> None:
        """Create or replace the canned policy ``name``; users it is attached to get it at once."""
        policy = dict(document)
        await self._run(f"write policy {name}", lambda: self._admin.policy_add(name, policy=policy))

    async def put_user(self, access_key: str, secret_key: str, *, policy: str) -> None:
        """Create the user (or reset its secret and enable it) with ``policy`` as its only policy.

        The user is then read back: ``AdminApiUnavailableError`` unless MinIO describes it with that policy.
        """
        what = f"create user {access_key}"
        await self._run(what, lambda: self._admin.user_add(access_key, secret_key))
        await self._run(
            f"set the policy of user {access_key}",
            lambda: self._admin.policy_set(policy, user=access_key),
        )
        answer = await self._run(f"read user {access_key}", lambda: self._admin.user_info(access_key))
        if policy_of(answer) != policy:
            raise AdminApiUnavailableError(
                self._endpoint, what, f"the user read back is not MinIO's user with policy {policy}"
            )

    async def _run(self, what: str, call: Callable[[], _T]) -> _T:
        try:
            return await asyncio.to_thread(call)
        except MinioAdminException as error:
            raise self._admin_error(what, error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise TransientError(
                f"cannot reach the store's admin API to {what}: {type(error).__name__}",
                kind="storage-connection",
            ) from error

    def _admin_error(self, what: str, error: MinioAdminException) -> TransientError | PermanentError:
        # The SDK keeps the status and body in private fields only.
        status_text: str = error._code
        detail = " ".join(str(error._body).split())[:_MAX_DETAIL]
        status = int(status_text) if status_text.isdigit() else 0
        if status >= 500 or status in _TRANSIENT_STATUSES:
            return TransientError(
                f"the store's admin API failed to {what}: HTTP {status}", kind="storage-5xx"
            )
        if status in _UNAVAILABLE_STATUSES:
            return AdminApiUnavailableError(self._endpoint, what, f"HTTP {status} {detail}".strip())
        return PermanentError(
            f"the store's admin API refused to {what}: HTTP {status_text} {detail}", reason="storage-refused"
        )


def policy_of(user_info: str) -> str | None:
    """The policy MinIO's ``user-info`` answer names (``policyName``), None when it is not such an answer."""
    try:
        info = json.loads(user_info)
    except ValueError:
        return None
    name = info.get("policyName") if isinstance(info, dict) else None
    return name if isinstance(name, str) else None
