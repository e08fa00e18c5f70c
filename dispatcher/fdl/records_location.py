"""Where job records are written, and where they may be: never where a service input would see them.

A record written under a service's input path would trigger that service (and its record the next
one, for ever). The check runs wherever definitions are loaded: at start and on every reload.

The folder of one Job's record is ``dispatcher.domain.record.record_folder``.
"""

from __future__ import annotations

from collections.abc import Iterable

from dispatcher.fdl.model import ServiceDefinition
from dispatcher.fdl.storage import DEFAULT_PROVIDER


class RecordsOverlapError(ValueError):
    """The records location could trigger a service: records would start chained Jobs."""


def check_records_location(bucket: str, prefix: str, services: Iterable[ServiceDefinition]) -> None:
    """``RecordsOverlapError`` naming every service whose input path overlaps ``bucket``/``prefix``.

    Only inputs on bucketrun's own storage matter: records are written there.
    """
    clashes = [
        f"service {service.name!r} input {path.path!r}"
        for service in services
        for path in service.inputs
        if path.provider == DEFAULT_PROVIDER and path.overlaps(bucket, prefix)
    ]
    if clashes:
        raise RecordsOverlapError(
            f"the job records location {bucket}/{prefix} overlaps "
            + "; ".join(clashes)
            + ": a record written there would trigger the service. Choose another "
            "BUCKETRUN_STORAGE__RECORDS_BUCKET or BUCKETRUN_STORAGE__RECORDS_PREFIX."
        )
