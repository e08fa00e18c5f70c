"""Service tokens, as OSCAR issues them: the credential ``POST /job/<service>`` takes as ``Bearer``.

OSCAR gives every service a token when it is created (32 random bytes as 64 hex characters), keeps it
when the service is updated, shows it in the service's ``token`` field, and drops it with the service.
bucketrun keeps each token in a Secret of its own, ``bucketrun-<service>-token`` (key ``token``, labelled
as bucketrun's and that service's), in the namespace the Jobs run in: never in the definitions bucket, a
ConfigMap, a Job or a log line. ``services delete`` leaves it alone (its Secret is the service's
``environment.secrets``, ``bucketrun-<service>-secrets``, a name this one can never take); the API's
delete removes it.

With the ``local`` executor there is no cluster to keep a Secret in: a service then has no token
(``""``), and ``/job`` takes the API's own credential only.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Final

from dispatcher.adapters.kube import deleting, fetching, patching
from dispatcher.adapters.kube.api import KubeApi
from dispatcher.domain import constants as c
from dispatcher.executors.build import cluster_of
from dispatcher.runtime.settings import ClusterSettings

TOKEN_BYTES: Final = 32
"""Random bytes in a token: OSCAR's, shown as 64 hex characters."""
TOKEN_LENGTH: Final = 2 * TOKEN_BYTES
"""Characters of a token."""
TOKEN_KEY: Final = "token"  # noqa: S105 - the Secret's key name, not a credential
"""The key of the Secret that holds the token."""
TOKEN_COMPONENT: Final = "service-token"  # noqa: S105 - a label value, not a credential


def token_secret_name(service: str) -> str:
    """Name of the Secret holding ``service``'s token."""
    return f"bucketrun-{service}-token"


def new_token() -> str:
    """A fresh token: ``TOKEN_BYTES`` bytes from the operating system's CSPRNG, in hex."""
    return secrets.token_hex(TOKEN_BYTES)


def token_of(document: dict[str, object] | None) -> str:
    """The token a Secret document holds, or ``""`` when it holds none that could be one."""
    data = document.get("data") if document else None
    encoded = data.get(TOKEN_KEY) if isinstance(data, dict) else None
    if not isinstance(encoded, str):
        return ""
    try:
        token = base64.b64decode(encoded, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return token if len(token) == TOKEN_LENGTH else ""


class ServiceTokens:
    """Issues, keeps, reads and drops the services' tokens in the cluster ``settings`` names."""

    def __init__(self, settings: ClusterSettings) -> None:
        self._settings = settings

    @asynccontextmanager
    async def _cluster(self) -> AsyncIterator[KubeApi | None]:
        async with cluster_of(self._settings) as api:
            yield api

    async def issue(self, service: str) -> str:
        """A new token for ``service``, replacing any it had (a create); ``""`` without a cluster."""
        async with self._cluster() as api:
            return await self._issue(api, service) if api is not None else ""

    async def keep(self, service: str) -> str:
        """``service``'s token, issued now if it has none (an update keeps the token it had)."""
        async with self._cluster() as api:
            if api is None:
                return ""
            token = token_of(await fetching.read_secret(api, token_secret_name(service)))
            return token or await self._issue(api, service)

    async def read(self, services: Iterable[str]) -> dict[str, str]:
        """The token of each of ``services`` (``""`` for one that has none, or without a cluster)."""
        names = list(services)
        async with self._cluster() as api:
            if api is None:
                return dict.fromkeys(names, "")
            found = [await fetching.read_secret(api, token_secret_name(name)) for name in names]
            return {name: token_of(document) for name, document in zip(names, found, strict=True)}

    async def drop(self, service: str) -> bool:
        """Delete ``service``'s token; False when it had none (or there is no cluster)."""
        async with self._cluster() as api:
            return await deleting.delete_secret(api, token_secret_name(service)) if api is not None else False

    @staticmethod
    async def _issue(api: KubeApi, service: str) -> str:
        token = new_token()
        labels = {c.LABEL_SERVICE: service, c.LABEL_COMPONENT: TOKEN_COMPONENT}
        await patching.ensure_secret(api, token_secret_name(service), {TOKEN_KEY: token}, labels=labels)
        return token
