"""Creating: Jobs (one per object version) and the services' immutable ConfigMaps.

A 409 whose Status reason is ``AlreadyExists`` (``errors.already_exists``) is an outcome, not an error:
Job names are derived from the object version, so a redelivered event finds its Job and is acked
(``CreateOutcome.EXISTS``). Any other 409 is a transient conflict: taking it for "exists" would ack an
event that has no Job.

Writes are not rate-limited here: the caller holds the token bucket (``dispatcher.executors.kubernetes``)
and passes it to ``ConfigMapCreator.ensure`` as *before_write*.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from dispatcher.adapters.kube.api import KubeApi, raise_unless_ok
from dispatcher.adapters.kube.errors import already_exists
from dispatcher.domain import kube
from dispatcher.domain.jobs import CreateOutcome


async def create_job(api: KubeApi, doc: Mapping[str, Any]) -> CreateOutcome:
    """Create the Job *doc* (a plain dict): ``CREATED``, or ``EXISTS`` when the name is taken.

    Posted with one ``json.dumps`` (``KubeApi.post_json``): this is the per-event request.
    """
    action = f"create Job {api.namespace}/{kube.name(doc)}"
    path = f"/apis/batch/v1/namespaces/{quote(api.namespace, safe='')}/jobs"
    answer = await api.send(action, api.post_json(path, doc))
    if already_exists(answer.status, answer.body):
        return CreateOutcome.EXISTS
    raise_unless_ok(answer, action)
    return CreateOutcome.CREATED


class ConfigMapCreator:
    """Creates immutable ConfigMaps, each name once per process.

    Names are content hashes, so an existing ConfigMap of that name is the same one: no update is ever
    needed, and once a name is known (created here, or found by a 409 AlreadyExists) no request is made
    for it again. Concurrent calls for one name make one request between them.
    """

    def __init__(self, api: KubeApi) -> None:
        self._api = api
        self._known: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(
        self, doc: Mapping[str, Any], *, before_write: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Make sure the ConfigMap *doc* exists; True if this call created it.

        *before_write* (the executor's rate limit) is awaited just before the request, only when one is
        made.
        """
        name = str(kube.meta(doc).get("name", ""))
        if name in self._known:
            return False
        async with self._locks.setdefault(name, asyncio.Lock()):
            if name in self._known:
                return False
            if before_write is not None:
                await before_write()
            api = self._api
            action = f"create ConfigMap {api.namespace}/{name}"
            answer = await api.send(
                action,
                api.core.create_namespaced_config_map(
                    api.namespace, doc, _preload_content=False, _request_timeout=api.timeout
                ),
            )
            existed = already_exists(answer.status, answer.body)
            if not existed:
                raise_unless_ok(answer, action)
            self._known.add(name)
        self._locks.pop(name, None)
        return not existed

    def forget(self, name: str) -> None:
        """ConfigMap *name* is being deleted: the next ``ensure`` of it asks the API again."""
        self._known.discard(name)
