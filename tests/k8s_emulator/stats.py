"""Request counts by verb, resource, subresource, namespace and HTTP status (what the control API reports)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestKey:
    """The dimensions one API request is counted under."""

    verb: str
    resource: str
    subresource: str
    namespace: str
    code: int


class RequestStats:
    """Counters of API requests (control requests are not counted)."""

    def __init__(self) -> None:
        self._counts: Counter[RequestKey] = Counter()

    def record(self, verb: str, resource: str, subresource: str, namespace: str, code: int) -> None:
        """Count one request."""
        self._counts[RequestKey(verb, resource, subresource, namespace, code)] += 1

    def reset(self) -> None:
        """Forget every count."""
        self._counts.clear()

    def to_json(self) -> list[dict[str, Any]]:
        """One row per distinct key with its count, in a stable order."""
        return [
            {
                "verb": key.verb,
                "resource": key.resource,
                "subresource": key.subresource,
                "namespace": key.namespace,
                "code": key.code,
                "count": count,
            }
            for key, count in sorted(self._counts.items(), key=lambda item: tuple(vars(item[0]).values()))
        ]
