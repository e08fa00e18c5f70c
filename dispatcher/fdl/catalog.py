"""The services in force: loaded from FDL files, checked against the records location, and routed.

``Catalog`` is swapped whole when the definitions change, so a message is always handled by one
consistent set of services.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from dispatcher.domain.errors import StartupError
from dispatcher.domain.routing import Router
from dispatcher.fdl.errors import ServiceDefinitionError
from dispatcher.fdl.loader import load_services
from dispatcher.fdl.model import ServiceDefinition
from dispatcher.fdl.records_location import RecordsOverlapError, check_records_location

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Catalog:
    """The services in force, and the router built from them (swapped whole on reload)."""

    services: Mapping[str, ServiceDefinition]
    router: Router[ServiceDefinition]

    @property
    def counts_jobs(self) -> bool:
        """True when some service has ``max_concurrent_jobs``: only then must the dispatcher count each
        service's unfinished Jobs (``Executor.count_jobs``)."""
        return any(service.options.max_concurrent_jobs is not None for service in self.services.values())

    def cap_of(self, name: str) -> int | None:
        """Service *name*'s ``max_concurrent_jobs`` (None when it has none, or is not loaded)."""
        service = self.services.get(name)
        return service.options.max_concurrent_jobs if service is not None else None

    def uncapped(self, name: str) -> bool:
        """True for a loaded service without ``max_concurrent_jobs``: its events need no admission, so
        they may be created by the ingress consumer or travel in batches."""
        return name in self.services and self.cap_of(name) is None

    @classmethod
    def of(cls, services: tuple[ServiceDefinition, ...]) -> Catalog:
        """Index *services* by name and build their router."""
        return cls({service.name: service for service in services}, Router(services))


def load_catalog(
    paths: tuple[Path, ...],
    records: tuple[str, str] | None = None,
    *,
    cluster: str | None = None,
    empty_dirs: bool = False,
) -> Catalog:
    """The services in *paths*; `StartupError` listing every problem when they do not load, or when an
    input path overlaps the *records* location (bucket, prefix) where job records are written. *cluster*
    chooses among a service's definitions for several OSCAR clusters (``BUCKETRUN_SERVICES__CLUSTER``).
    With *empty_dirs*, a directory of no FDL file loads as no service (logged as a warning when no
    service at all is loaded) instead of being refused."""
    if not paths:
        raise StartupError(
            "no service definitions: set BUCKETRUN_SERVICES__PATHS to FDL files or directories"
        )
    try:
        loaded = load_services(paths, cluster=cluster, empty_dirs=empty_dirs)
        if records is not None:
            check_records_location(*records, loaded.services)
    except ServiceDefinitionError as error:
        raise StartupError("\n".join(str(problem) for problem in error.problems)) from error
    except RecordsOverlapError as error:
        raise StartupError(str(error)) from error
    for warning in loaded.warnings:
        _log.warning("service definition warning", detail=str(warning))
    if not loaded.services:
        _log.warning(
            "no service definitions loaded: every event routes nowhere until one appears",
            paths=[str(path) for path in paths],
        )
    for note in loaded.notes:
        _log.info("service definition for another cluster set aside", detail=note)
    return Catalog.of(loaded.services)
