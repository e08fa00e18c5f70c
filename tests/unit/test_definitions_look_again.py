"""The dispatcher's definitions: looked at again when an event routes nowhere, paced and shared.

A service `bucketrun api` has just written must not lose its first upload to the dead letters because
the periodic reload has not come round yet; a flood of events that route nowhere must not rescan the
directory once each.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dispatcher.fdl.catalog import Catalog
from dispatcher.process import app
from dispatcher.runtime.settings import ServicesSettings

FDL = """
functions:
  oscar:
  - c:
      name: fresh
      image: busybox
      script: |
        true
      input: [{storage_provider: minio, path: uploads/in}]
"""


class Scans(list[int]):
    """Every scan of the definitions directory; ``second`` is set at the second (the first look's)."""

    second: asyncio.Event


class FakeDispatcher:
    def __init__(self) -> None:
        self.reloads: list[Catalog] = []

    async def reload(self, catalog: Catalog) -> None:
        self.reloads.append(catalog)


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Scans:
    """How many times the definitions directory was scanned."""
    counted = Scans()
    counted.second = asyncio.Event()
    scan = app._fingerprint

    def counting(paths: Any) -> Any:
        counted.append(1)
        if len(counted) == 2:
            counted.second.set()
        return scan(paths)

    monkeypatch.setattr(app, "_fingerprint", counting)
    monkeypatch.setattr(app, "LOOK_AGAIN_PACE", 0.05)
    return counted


def definitions(directory: Path) -> tuple[app._Definitions, FakeDispatcher]:
    dispatcher = FakeDispatcher()
    services = ServicesSettings(paths=(directory,), reload_interval=3600)
    return app._Definitions(dispatcher, services, ("records", "")), dispatcher  # type: ignore[arg-type]


async def test_many_events_asking_at_once_share_one_look_that_finds_the_new_service(
    tmp_path: Path, scans: list[int]
) -> None:
    watched, dispatcher = definitions(tmp_path)  # an empty directory: the API has applied nothing yet
    (tmp_path / "fresh.yaml").write_text(FDL)

    answers = await asyncio.gather(*(watched.look_again() for _ in range(20)))

    assert answers == [True] * 20
    assert len(scans) == 2  # at start, then one look for all twenty
    (catalog,) = dispatcher.reloads
    assert list(catalog.services) == ["fresh"]


async def test_nothing_new_loads_nothing_and_a_removed_service_leaves_an_empty_catalog(
    tmp_path: Path, scans: list[int]
) -> None:
    (tmp_path / "fresh.yaml").write_text(FDL)
    watched, dispatcher = definitions(tmp_path)
    assert await watched.look_again() is False
    assert dispatcher.reloads == []

    (tmp_path / "fresh.yaml").unlink()
    assert await watched.look_again() is True
    (catalog,) = dispatcher.reloads
    assert dict(catalog.services) == {}


async def test_a_look_asked_after_one_started_is_a_new_look(tmp_path: Path, scans: Scans) -> None:
    watched, dispatcher = definitions(tmp_path)
    first = asyncio.ensure_future(watched.look_again())
    await asyncio.wait_for(scans.second.wait(), 5)  # the first look has scanned (nothing there yet)
    (tmp_path / "fresh.yaml").write_text(FDL)
    assert await watched.look_again() is True  # written after the first look: a second one finds it
    assert await first is False
    assert len(scans) == 3
    assert [list(catalog.services) for catalog in dispatcher.reloads] == [["fresh"]]
