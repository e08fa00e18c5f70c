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
    """Counters of API requests (control requests are not counted), and the most requests of one kind
    (verb, resource, subresource) that were in progress at once: what shows a client's concurrency."""

    def __init__(self) -> None:
        self._counts: Counter[RequestKey] = Counter()
        self._in_flight: Counter[tuple[str, str, str]] = Counter()
        self._peaks: Counter[tuple[str, str, str]] = Counter()

    def record(self, verb: str, resource: str, subresource: str, namespace: str, code: int) -> None:
        """Count one request."""
        self._counts[RequestKey(verb, resource, subresource, namespace, code)] += 1

    def started(self, verb: str, resource: str, subresource: str) -> None:
        """A request of this kind is now in progress (injected latency included)."""
        kind = (verb, resource, subresource)
        self._in_flight[kind] += 1
        self._peaks[kind] = max(self._peaks[kind], self._in_flight[kind])

    def finished(self, verb: str, resource: str, subresource: str) -> None:
        """A request that ``started`` has been answered or abandoned."""
        self._in_flight[(verb, resource, subresource)] -= 1

    def reset(self) -> None:
        """Forget every count and peak (requests in progress stay counted as in progress)."""
        self._counts.clear()
        self._peaks = Counter(+self._in_flight)

    def peaks_to_json(self) -> list[dict[str, Any]]:
        """One row per kind of request: the most that were in progress at once since the last reset."""
        return [
            {"verb": verb, "resource": resource, "subresource": subresource, "peak": peak}
            for (verb, resource, subresource), peak in sorted(self._peaks.items())
        ]

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
