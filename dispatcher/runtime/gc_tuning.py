"""How often the process's cyclic garbage collector runs.

CPython starts a young collection every 700 net allocations of container objects (dicts, lists, ...).
The dispatcher holds a few hundred such objects per create in flight (the rendered Job, its request and
its answer), so at saturation young collections ran every few events and moved live documents up the
generations until full collections walked the whole heap, startup objects included: 0.13 to 0.19 ms
of pauses per event at saturation on the real stack, each one stopping the event loop (bench/README.md,
"The collector runs rarely"). Nearly all of those objects are freed by reference counting the moment
their event is done; the collector is only needed for reference cycles, which are rare here.

So, once at start: ``gc.freeze()`` moves everything alive so far (modules, settings, templates) out of
the collector's sight for good, and the young generation's threshold rises to ``GEN0_THRESHOLD``. The
cycles left behind meanwhile are at most that many objects (a few MiB), freed at the next collection.

Process-wide, so it is set by the process entry point (``bucketrun dispatcher|watcher|serve|poll``).
"""

from __future__ import annotations

import gc
from typing import Final

GEN0_THRESHOLD: Final = 50_000
"""Net container allocations between young collections (CPython's default is 700)."""
OLDER_THRESHOLDS: Final = (20, 20)
"""Young collections per middle one, middle ones per full one (CPython's defaults are 10 and 10)."""


def tune_garbage_collector(gen0: int = GEN0_THRESHOLD) -> tuple[int, int, int]:
    """Freeze what is alive now and collect young objects every *gen0* net allocations; the thresholds
    before (for a caller that restores them)."""
    if gen0 <= 0:
        raise ValueError(f"the young generation's threshold must be positive, got {gen0}")
    previous = gc.get_threshold()
    gc.collect()  # what is garbage already is not worth freezing
    gc.freeze()
    gc.set_threshold(gen0, *OLDER_THRESHOLDS)
    return previous
