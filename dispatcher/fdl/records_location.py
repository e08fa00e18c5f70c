"""Where job records are written, and where they may be: never where a service input would see them.

A record written under a service's input path would trigger that service (and its record the next
one, for ever). The check runs wherever definitions are loaded: at start and on every reload.

One Job's record lives in the folder ``record_folder`` names. The watcher writes it; the dispatcher
grants each Job's stage-out a presigned PUT of ``OUTPUTS_MANIFEST_FILE`` in it. Both take the folder
from here, so the key signed and the key read cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from dispatcher.fdl.model import ServiceDefinition
from dispatcher.fdl.storage import DEFAULT_PROVIDER

OUTPUTS_MANIFEST_FILE: Final = "outputs.json"
"""Name, in a Job's record folder, of the complete list of objects its stage-out uploaded."""


def record_folder(prefix: str, service: str, name: str) -> str:
    """``<prefix>/<service>/<name>/``: the folder of one Job's record.

    The prefix is a folder, as ``check_records_location`` reads it: glued on as text, a prefix ``i``
    and a service ``n`` would write under ``in/``, which the check never saw.
    """
    folder = prefix.strip("/")
    return f"{folder}/{service}/{name}/" if folder else f"{service}/{name}/"


def outputs_manifest_key(prefix: str, service: str, name: str) -> str:
    """The key of Job *name*'s outputs manifest in the records bucket."""
    return record_folder(prefix, service, name) + OUTPUTS_MANIFEST_FILE


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
