"""How an FDL ``path`` names a bucket and a folder, read as current OSCAR reads it.

OSCAR trims spaces and slashes from both ends of ``path`` and splits it at the first slash: the bucket,
then the folder (possibly several segments). A MinIO/S3 path without any slash has changed meaning
over OSCAR's releases:

=================  ==========================================================================
OSCAR              ``path: results`` in service ``grayify``
=================  ==========================================================================
4.1 and later      folder ``results`` of the bucket named after the service: ``grayify/results``
before 4.1         the bucket ``results`` itself (an output writes at its top). As an input:
                   notifications for the whole bucket up to 3.3.0; no notification at all
                   (never triggered) from 3.3.1 to 3.5; refused ("missing folder") from 3.6
=================  ==========================================================================

bucketrun reads it as OSCAR 4.1 does, and warns that an FDL written for an older OSCAR meant
something else. Other providers keep the plain split (bucketrun refuses them anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from dispatcher.fdl.errors import shown
from dispatcher.fdl.names import check_bucket_name

_BUCKET_PROVIDER_KINDS: Final = ("minio", "s3")
_SINCE: Final = "4.1"


@dataclass(frozen=True, slots=True)
class Location:
    """The bucket and folder a ``path`` names, and how an older OSCAR would have read it differently."""

    bucket: str
    folder: str
    older_reading: str | None = None
    """A warning for the FDL's author when OSCAR before 4.1 read the path otherwise; None when not."""


def split_location(location: object, *, kind: str, provider: object, service: object) -> Location:
    """Bucket and folder of the ``path`` of an ``input`` or ``output`` (``kind``) of ``service``.

    ``provider`` is the entry's ``storage_provider`` and ``service`` the service's ``name`` as written.
    Raises ``ValueError`` quoting the path when it names nothing usable (the bucket and folder
    themselves are checked by the model).
    """
    text = location.strip(" /") if isinstance(location, str) else ""
    if not text:
        raise ValueError(f"required 'bucket/folder' string, got {shown(location)}")
    if "//" in text:
        raise ValueError(f"path {shown(location)} has an empty segment ('//')")
    bucket, slash, folder = text.partition("/")
    provider_kind = provider.partition(".")[0].lower() if isinstance(provider, str) else ""
    if slash or provider_kind not in _BUCKET_PROVIDER_KINDS:
        return Location(bucket, folder)
    return _folder_of_service_bucket(text, kind=kind, service=service, written=location)


def _folder_of_service_bucket(folder: str, *, kind: str, service: object, written: object) -> Location:
    if not isinstance(service, str) or not service:
        raise ValueError(
            f"path {shown(written)} names no bucket: OSCAR {_SINCE}+ uses the service's name as the bucket, "
            "and this service has none"
        )
    try:
        check_bucket_name(service)
    except ValueError as error:
        raise ValueError(
            f"path {shown(written)} names no bucket: OSCAR {_SINCE}+ uses the service's name "
            f"{shown(service)} as the bucket, which cannot be one ({error}); write 'bucket/folder'"
        ) from None
    if kind == "input":
        before = (
            "as an input it watched that whole bucket up to OSCAR 3.3.0, never triggered from 3.3.1 "
            "to 3.5 and was refused from 3.6"
        )
    else:
        before = "results went to the top of that bucket"
    older = (
        f"path {shown(written)} has no bucket: read as folder {shown(folder)} of the bucket named after "
        f"the service, {shown(f'{service}/{folder}')}, as OSCAR {_SINCE} and later read it; before "
        f"{_SINCE}, OSCAR read it as the bucket {shown(folder)} ({before}); write "
        f"{shown(f'{service}/{folder}')} to say so, or {shown(f'{folder}/<folder>')} for a folder of "
        "that bucket"
    )
    return Location(service, folder, older)
