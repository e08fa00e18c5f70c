"""One emulator for this package's tests (fast bookmarks); a namespace per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - these tests drive the API directly

from tests.backends.kubernetes import api_client_for, namespace_for
from tests.k8s_emulator import EmulatorControl, EmulatorHandle, run_emulator

BOOKMARK_INTERVAL = 0.3


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    """The emulator shared by this package's tests."""
    with run_emulator(tmp_path_factory.mktemp("emulator")) as handle:
        handle.control.set_watch_knobs(bookmark_interval=BOOKMARK_INTERVAL)
        yield handle


def _reset(control: EmulatorControl) -> None:
    control.reset()
    control.set_watch_knobs(bookmark_interval=BOOKMARK_INTERVAL)


@pytest.fixture
def control(emulator: EmulatorHandle) -> Iterator[EmulatorControl]:
    """The control client, with every knob at its start-up value (but fast bookmarks) before and after."""
    _reset(emulator.control)
    yield emulator.control
    _reset(emulator.control)


@pytest.fixture
async def api(emulator: EmulatorHandle) -> AsyncIterator[client.ApiClient]:
    """A kubernetes_asyncio client for the emulator."""
    async with await api_client_for(emulator.kubeconfig) as api_client:
        yield api_client


@pytest.fixture
async def namespace(
    api: client.ApiClient, control: EmulatorControl, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A namespace of the test's own, deleted (with everything in it) afterwards."""
    name = namespace_for(request.node.name)
    core = client.CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": name}})
    yield name
    _reset(control)
    await core.delete_namespace(name, propagation_policy="Background")
