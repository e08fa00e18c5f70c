"""The process's collector: startup objects frozen, young collections every GEN0_THRESHOLD allocations."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator

import pytest

from dispatcher.runtime.gc_tuning import GEN0_THRESHOLD, OLDER_THRESHOLDS, tune_garbage_collector


@pytest.fixture(autouse=True)
def collector_default() -> Iterator[tuple[int, int, int]]:
    """Put the collector back after each test (the setting is process-wide)."""
    default = gc.get_threshold()
    yield default
    gc.unfreeze()
    gc.set_threshold(*default)


class Node:
    """A container that can be part of a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def young_collections_while(work: Callable[[], object]) -> int:
    """Generation-0 collections started while *work* () runs."""
    started: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            started.append(1)

    gc.callbacks.append(note)
    try:
        work()
    finally:
        gc.callbacks.remove(note)
    return len(started)


def hold_many() -> list[dict[str, int]]:
    """10,000 live dicts: what a few dozen creates in flight hold."""
    return [{"n": n} for n in range(10_000)]


def test_tuning_sets_the_thresholds_and_returns_the_ones_before(collector_default):
    assert tune_garbage_collector() == collector_default
    assert gc.get_threshold() == (GEN0_THRESHOLD, *OLDER_THRESHOLDS)


def test_what_is_alive_at_tuning_is_frozen_and_what_comes_later_is_not():
    before = Node()
    tune_garbage_collector()
    after = Node()
    assert gc.get_freeze_count() > 0
    tracked = {id(item) for item in gc.get_objects()}
    assert id(after) in tracked
    assert id(before) not in tracked  # in the permanent generation: no collection walks it again


def test_live_allocations_below_the_threshold_start_no_young_collection():
    assert young_collections_while(hold_many) > 0  # CPython's 700: several while 10,000 stay alive
    tune_garbage_collector()
    assert young_collections_while(hold_many) == 0


def test_cycles_made_after_tuning_are_still_collected():
    tune_garbage_collector()
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    assert gone() is not None  # a cycle: reference counting alone does not free it
    gc.collect()
    assert gone() is None


def test_a_threshold_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="positive, got 0"):
        tune_garbage_collector(0)
    assert gc.get_freeze_count() == 0
