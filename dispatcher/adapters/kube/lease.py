"""The Lease calls of leader election (``coordination.k8s.io/v1``): read, create, replace.

``Leases`` is the ``LeaseApi`` the watcher's ``LeaderElector`` runs against. Optimistic concurrency is
the API's: a create of a name that exists and a replace whose ``metadata.resourceVersion`` is no longer
current both answer 409, which here is None ("someone else was faster"), never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dispatcher.adapters.kube.api import KubeApi, raise_unless_ok
from dispatcher.adapters.kube.errors import status_object
from dispatcher.adapters.kube.fetching import read_named
from dispatcher.domain import kube


class Leases:
    """The Leases of the API's namespace."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def read_lease(self, name: str) -> dict[str, Any] | None:
        """Lease *name*, or None when it does not exist."""
        return await read_named(self.api, "Lease", self.api.coordination.read_namespaced_lease, name)

    async def create_lease(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create the Lease *doc*; the stored Lease, or None when one of that name exists already."""
        api = self.api
        action = f"create Lease {api.namespace}/{kube.name(doc)}"
        answer = await api.send(
            action,
            api.coordination.create_namespaced_lease(
                api.namespace, dict(doc), _preload_content=False, _request_timeout=api.timeout
            ),
        )
        if answer.status == 409:
            return None
        raise_unless_ok(answer, action)
        return status_object(answer.body)

    async def replace_lease(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """Replace the Lease *doc* (its ``metadata.resourceVersion`` is the precondition); the stored
        Lease, or None when someone changed it meanwhile (409)."""
        api = self.api
        name = kube.name(doc)
        action = f"replace Lease {api.namespace}/{name}"
        answer = await api.send(
            action,
            api.coordination.replace_namespaced_lease(
                name, api.namespace, dict(doc), _preload_content=False, _request_timeout=api.timeout
            ),
        )
        if answer.status == 409:
            return None
        raise_unless_ok(answer, action)
        return status_object(answer.body)
