"""Metric labels stay bounded: no object key, Job name or other per-event value in any label."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry

BOUNDED_LABELS = frozenset(
    {"service", "reason", "kind", "outcome", "result", "queue", "part", "component", "version", "python"}
    | {"le"}  # a histogram's bucket bounds
)
"""Every label name bucketrun's metrics may carry; each takes values from a fixed or configured set."""


def unbounded_labels(registry: CollectorRegistry, per_event: Iterable[str]) -> list[str]:
    """Each sample label that is not one of ``BOUNDED_LABELS`` or whose value is one of *per_event*
    (keys, Job names, UIDs seen in the test), as ``metric{label="value"}``; empty when all is well."""
    forbidden = {value for value in per_event if value}
    found = []
    for metric in registry.collect():
        for sample in metric.samples:
            for label, value in sample.labels.items():
                if label not in BOUNDED_LABELS or value in forbidden:
                    found.append(f'{sample.name}{{{label}="{value}"}}')
    return found
