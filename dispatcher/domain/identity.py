"""Job identity: the one Job name per (service, object version), so redelivered events hit 409 AlreadyExists.

Name layout: ``<service prefix>-<hash>``.

- ``hash``: 20 base32 characters (100 bits) of SHA-256 over a length-prefixed encoding of (service,
  bucket, key, version). Length prefixes make the encoding injective, so ``("a", "b/c", "d")`` and
  ``("a/b", "c", "d")`` hash different inputs; 100 bits keep accidental collisions out of reach (about
  1e-15 at a billion Jobs).
- ``service prefix``: the service name lower-cased, every run of other characters than ``[a-z0-9]`` turned
  into ``-``, cut to 36 characters; ``job`` when nothing is left. Only for people reading ``kubectl``
  output: uniqueness comes from the hash alone.

Length budget: at most 57 characters (36 + 1 + 20). A Job name must be a DNS-1123 label of at most 63
characters to fit the ``job-name`` / ``batch.kubernetes.io/job-name`` labels Kubernetes puts on its pods;
57 also leaves room for the ``-xxxxx`` suffix the Job controller appends to the pod ``generateName``
(Kubernetes cuts the base to 58 characters, so longer names would lose the end of the hash in pod names).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

from dispatcher.domain.events import EventError, EventErrorReason, ObjectEvent, display_value

JOB_NAME_MAX_LENGTH: Final = 57
"""Longest Job name produced (see the module docstring for the budget)."""

_HASH_CHARS: Final = 20
_PREFIX_CHARS: Final = JOB_NAME_MAX_LENGTH - 1 - _HASH_CHARS
# Bumping the domain changes every name: only with a migration plan for in-flight Jobs.
_HASH_DOMAIN: Final = b"bucketrun/job-name/v1"
_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9]+")


def object_version(event: ObjectEvent) -> str:
    """The identity of the object version an event is about, stable across redeliveries of the event.

    ``<versionId>:<eTag>:<sequencer>``, each part empty when absent (``versionId`` ``"null"``, AWS's name
    for the unversioned version, counts as absent), ``%`` and ``:`` inside a part percent-escaped so the
    string is unambiguous. Why all three rather than ``versionId`` alone:

    - MinIO before bucket versioning (2020) sent the placeholder ``versionId: "1"`` for every object (see
      the 2017-2019 samples in ../shared/fixtures/minio-events); alone it would give every re-upload of a
      key the same identity, and the second upload would never run;
    - the sequencer is MinIO's hex of the object's modification time in nanoseconds, so it tells apart
      re-uploads of identical content (same eTag) in unversioned buckets; the eTag guards against two
      versions sharing a timestamp. All three are identical in every redelivery of one event.

    An event with neither a usable ``versionId`` nor a sequencer cannot be told apart from the next upload
    of the same key, so exactly-once cannot be guaranteed for it: ``EventError`` ``no-version``, a
    permanent error that dead-letters the message rather than risk a duplicate or a lost job. (Removal
    events and 2016-era records lack the eTag but keep the sequencer, so they are identified.)
    """
    version_id = event.version_id if event.version_id != "null" else None
    if not version_id and not event.sequencer:
        raise EventError(
            EventErrorReason.NO_VERSION,
            f"{event.event_name} {display_value(f'{event.bucket}/{event.key}')} has no versionId and no"
            " sequencer, so its object version cannot be identified",
        )
    return ":".join(_escape_part(part or "") for part in (version_id, event.etag, event.sequencer))


def job_name(service: str, bucket: str, key: str, version: str) -> str:
    """The deterministic Kubernetes Job name for one service run on one object version.

    A DNS-1123 label of at most ``JOB_NAME_MAX_LENGTH`` characters; equal inputs give equal names in every
    process (no ``hash()``), different inputs give different names.
    """
    digest = parts_digest((service, bucket, key, version), domain=_HASH_DOMAIN)
    suffix = base64.b32encode(digest).decode("ascii").lower()[:_HASH_CHARS]
    prefix = _NOT_LABEL_CHARS.sub("-", service.lower())[:_PREFIX_CHARS].strip("-") or "job"
    return f"{prefix}-{suffix}"


def parts_digest(parts: tuple[str, ...], *, domain: bytes = b"") -> bytes:
    """SHA-256 over *domain* and a length-prefixed encoding of *parts*: injective, so ("a/b", "c") and
    ("a", "b/c") differ; stable across processes (no ``hash()``)."""
    digest = hashlib.sha256(domain)
    for part in parts:
        # surrogatepass keeps the encoding total and injective for any str, even unpaired surrogates.
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.digest()


def _escape_part(part: str) -> str:
    # Real versionIds, eTags and sequencers never hold these; escaping keeps the join injective anyway.
    return part.replace("%", "%25").replace(":", "%3A")
