"""The poller's durable memory of the object versions it has announced: a small SQLite file.

SQLite (standard library) gives atomic, fsynced commits and lookups that do not need every identity in
memory. Identities are added in batches, one transaction each, and only after the broker confirmed
their events: a crash between the confirmation and the commit re-announces that batch after the restart
(at least once), which the dispatcher's idempotent Job names make harmless.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS seen (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    PRIMARY KEY (bucket, key, etag, last_modified)
) WITHOUT ROWID
"""


@dataclass(frozen=True, slots=True)
class ObjectIdentity:
    """One version of an object as a listing shows it; a re-upload changes its eTag or LastModified."""

    bucket: str
    key: str
    etag: str
    last_modified: str
    """ISO 8601 UTC timestamp, as the listing reported it."""


class SeenObjects:
    """The set of identities already announced, kept in the SQLite file at ``path``.

    Use as a context manager (or ``close()`` it). Not shared between processes: one poller per file.
    """

    def __init__(self, path: Path) -> None:
        """Open (creating it and its directory if needed) the state file at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            # FULL: each commit is fsynced, so what a commit recorded survives a power loss.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise OSError(f"cannot use {str(path)!r} as the poller's state file: {error}") from error
        self.path = path
        """Where the state is kept."""

    def __contains__(self, identity: object) -> bool:
        """Whether ``identity`` was recorded."""
        if not isinstance(identity, ObjectIdentity):
            return False
        found = self._db.execute(
            "SELECT 1 FROM seen WHERE bucket = ? AND key = ? AND etag = ? AND last_modified = ?",
            (identity.bucket, identity.key, identity.etag, identity.last_modified),
        ).fetchone()
        return found is not None

    def __len__(self) -> int:
        """Number of identities recorded."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM seen").fetchone()
        return int(count)

    def add_all(self, identities: Iterable[ObjectIdentity]) -> None:
        """Record ``identities`` in one durable transaction (all or none)."""
        rows = [(i.bucket, i.key, i.etag, i.last_modified) for i in identities]
        if not rows:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?)", rows)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __enter__(self) -> Self:
        """Use as a context manager."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Close the file."""
        self.close()
