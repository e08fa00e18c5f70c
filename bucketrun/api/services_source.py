"""Where the API puts the FDL of each service it applied, so that the dispatcher runs it.

The dispatcher reads its services from FDL files (``BUCKETRUN_SERVICES__PATHS``). A service created
through the API becomes ``<name>.yaml`` (a one-service FDL document) in one of two places:

- a directory (``BUCKETRUN_API__SERVICES_DIR``), for a dispatcher on the same machine that names it in
  its ``BUCKETRUN_SERVICES__PATHS``: the local stack, compose (a shared volume), the tests;
- a Secret (``BUCKETRUN_API__SERVICES_SECRET``), one key per service, for a dispatcher in Kubernetes
  that mounts it as a directory (a Secret, not a ConfigMap: an FDL may hold secret values).

Either way the document holds the service's secret values, so a file is written owner-only. The
dispatcher also looks again when an event routes nowhere, so the first upload to a new service is not
dead-lettered for want of a reload (in Kubernetes the kubelet's refresh of the mounted Secret, about a
minute at most, comes first: `docs/USAGE.md` says so).
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
from pathlib import Path
from typing import Protocol

from dispatcher.adapters.kube import KubeApi
from dispatcher.adapters.kube.fetching import read_secret
from dispatcher.adapters.kube.patching import ensure_secret
from dispatcher.runtime.settings import ClusterSettings


def file_name(service: str) -> str:
    """The file (or Secret key) of *service*'s FDL."""
    return f"{service}.yaml"


class ServicesSource(Protocol):
    """Where API services' FDL documents go."""

    @property
    def where(self) -> str:
        """Named in messages: ``directory D`` or ``Secret NS/NAME``."""
        ...

    async def write(self, service: str, document: bytes) -> None:
        """Put *service*'s FDL document in place (replacing a previous one)."""
        ...

    async def remove(self, service: str) -> None:
        """Take *service*'s FDL out (nothing when it is not there)."""
        ...


class DirectorySource:
    """FDL files in a directory: written whole (a temporary file renamed over), owner-only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def where(self) -> str:
        """The directory, as messages name it."""
        return f"directory {self.directory}"

    async def write(self, service: str, document: bytes) -> None:
        """Replace ``<service>.yaml`` at once: the dispatcher never reads half a file."""
        await asyncio.to_thread(_replace_file, self.directory, file_name(service), document)

    async def remove(self, service: str) -> None:
        """Delete ``<service>.yaml`` if it is there."""
        await asyncio.to_thread((self.directory / file_name(service)).unlink, missing_ok=True)


def _replace_file(directory: Path, name: str, document: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # A dot-name while it is written: the loader skips those.
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as file:  # mkstemp's file is owner-only already
            file.write(document)
        Path(temporary).replace(directory / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class SecretSource:
    """One Secret, one key per service (the dispatcher's pod mounts it as a directory)."""

    def __init__(self, cluster: ClusterSettings, name: str) -> None:
        self._cluster = cluster
        self.name = name

    @property
    def where(self) -> str:
        """The Secret, as messages name it."""
        return f"Secret {self._cluster.namespace}/{self.name}"

    async def write(self, service: str, document: bytes) -> None:
        """Set the key ``<service>.yaml``, keeping the others."""
        await self._change(service, document)

    async def remove(self, service: str) -> None:
        """Drop the key ``<service>.yaml``; the Secret stays, maybe empty."""
        await self._change(service, None)

    async def _change(self, service: str, document: bytes | None) -> None:
        async with await KubeApi.from_settings(self._cluster) as api:
            existing = await read_secret(api, self.name) or {}
            data = {key: base64.b64decode(value) for key, value in (existing.get("data") or {}).items()}
            if document is None:
                if data.pop(file_name(service), None) is None:
                    return
            else:
                data[file_name(service)] = document
            await ensure_secret(api, self.name, data)


def services_source(
    cluster: ClusterSettings, directory: Path | None, secret: str | None
) -> ServicesSource | None:
    """The source the settings name; None when they name none (the API's services then never run)."""
    if directory is not None:
        return DirectorySource(directory)
    if secret is not None:
        return SecretSource(cluster, secret)
    return None
