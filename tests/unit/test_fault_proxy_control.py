"""FaultProxyControl refuses bad values before they reach the proxy, naming them, and refuses to be
called in the proxy's own event loop (it would wait for itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bucketrun.devtools.kube_pki import ClusterPki
from tests.backends.fault_proxy import FaultProxy, FaultProxyControl, Upstream, write_kubeconfig


class _NoProxy:
    """Stands in for the proxy: no call may reach it."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the control reached the proxy ({name}) with a value it should have refused")


@pytest.fixture
def control() -> Iterator[FaultProxyControl]:
    loop = asyncio.new_event_loop()
    yield FaultProxyControl(_NoProxy(), loop)  # type: ignore[arg-type]
    loop.close()


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"bookmark_interval": 0}, "bookmark_interval must be positive, got 0"),
        ({"bookmark_interval": -1.5}, "bookmark_interval must be positive, got -1.5"),
        ({"drop_after_events": -1}, "drop_after_events must not be negative, got -1"),
        ({"drop_after_seconds": -0.5}, "drop_after_seconds must not be negative, got -0.5"),
    ],
)
def test_watch_knobs_are_checked(control, knobs, message):
    with pytest.raises(ValueError, match=message):
        control.set_watch_knobs(**knobs)


def test_bad_fault_plans_are_refused(control):
    with pytest.raises(ValueError, match=r"fault rate for HTTP 500 must be within \[0, 1\], got 1.5"):
        control.set_faults(error_rates={500: 1.5})
    with pytest.raises(ValueError, match="fault code must be an HTTP error status"):
        control.set_faults(error_rates={200: 0.5})
    with pytest.raises(ValueError, match="latency bounds"):
        control.set_faults(latency=(0.5, 0.1))


def test_expiry_count_and_compaction_are_checked(control):
    with pytest.raises(ValueError, match="count must not be negative, got -2"):
        control.expire_next_watch(-2)
    with pytest.raises(ValueError, match="current revision only; got revision=5"):
        control.compact(revision=5)
    with pytest.raises(RuntimeError, match="without a control plane"):
        control.compact()


def test_the_control_refuses_to_run_in_the_proxys_own_loop(tmp_path: Path):
    loop = asyncio.new_event_loop()
    proxy = FaultProxy(Upstream("https://127.0.0.1:1", *_self_signed(tmp_path)))
    control = FaultProxyControl(proxy, loop)

    async def inside() -> None:
        control.reset()

    try:
        with pytest.raises(RuntimeError, match="proxy's own event loop"):
            loop.run_until_complete(inside())
    finally:
        loop.close()


def test_kubeconfigs_carry_no_credentials_or_the_token(tmp_path: Path):
    plain = yaml.safe_load(write_kubeconfig(tmp_path / "a", "http://127.0.0.1:9", namespace="ns").read_text())
    assert plain["users"][0]["user"] == {}
    assert plain["clusters"][0]["cluster"] == {"server": "http://127.0.0.1:9"}
    assert plain["contexts"][0]["context"]["namespace"] == "ns"
    token = yaml.safe_load(write_kubeconfig(tmp_path / "b", "http://127.0.0.1:9", token="abc").read_text())
    assert token["users"][0]["user"] == {"token": "abc"}


def _self_signed(directory: Path) -> tuple[Path, Path, Path]:
    """(CA, cert, key) files good enough for ssl to load: one self-signed certificate."""
    pki = ClusterPki(directory / "pki")
    client = pki.issue_client_cert("tester", [])
    return pki.ca.cert, client.cert, client.key
