"""The directory where `bucketrun api` puts the FDL of each service it applied, for the dispatcher."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from bucketrun.api.services_source import DirectorySource
from bucketrun.api.settings import ApiSettings
from dispatcher.fdl import load_services

FDL = json.dumps(
    {"functions": {"oscar": [{"oscar": {"name": "upper", "image": "alpine", "script": "#!/bin/sh\ntrue\n"}}]}}
).encode()


async def test_a_written_service_is_an_owner_only_fdl_file_the_dispatcher_loads(tmp_path: Path) -> None:
    source = DirectorySource(tmp_path / "services")
    await source.write("upper", FDL)
    written = tmp_path / "services" / "upper.yaml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert [service.name for service in load_services([tmp_path / "services"]).services] == ["upper"]

    await source.write("upper", FDL.replace(b"alpine", b"busybox"))
    assert [path.name for path in (tmp_path / "services").iterdir()] == ["upper.yaml"]  # no temporary left
    (service,) = load_services([tmp_path / "services"]).services
    assert service.image == "busybox"


async def test_a_removed_service_leaves_a_directory_the_dispatcher_still_accepts(tmp_path: Path) -> None:
    source = DirectorySource(tmp_path)
    await source.write("upper", FDL)
    await source.remove("upper")
    await source.remove("upper")  # already gone: nothing to do
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []
    assert load_services([tmp_path], empty_dirs=True).services == ()


def test_the_settings_name_one_place_for_the_dispatcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKETRUN_API__USERNAME", "oscar")
    monkeypatch.setenv("BUCKETRUN_API__PASSWORD", "a-password")
    monkeypatch.setenv("BUCKETRUN_API__SERVICES_DIR", "/srv/bucketrun/api-services")
    monkeypatch.setenv("BUCKETRUN_API__SERVICES_SECRET", "bucketrun-api-services")
    with pytest.raises(ValidationError, match="not both"):
        ApiSettings()
    monkeypatch.setenv("BUCKETRUN_API__SERVICES_SECRET", "Not_A_Name")
    monkeypatch.delenv("BUCKETRUN_API__SERVICES_DIR")
    with pytest.raises(ValidationError, match="services_secret"):
        ApiSettings()
