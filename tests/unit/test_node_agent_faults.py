"""The node agent's faults, its memory watchdog and its log endpoint, without a cluster."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bucketrun.devtools.kube_pki import ClusterPki
from bucketrun.devtools.node_agent.faults import Faults
from bucketrun.devtools.node_agent.leftovers import kill_leftovers
from bucketrun.devtools.node_agent.logs import LogSource, format_log, log_app, server_ssl_context
from bucketrun.devtools.node_agent.memory import MemoryWatchdog, memory_limits, session_rss

TIMEOUT = 20.0


def test_faults_match_images_and_pods_by_pattern() -> None:
    faults = Faults(failing_images=("registry.invalid/*",), config_errors=("ns/job-*",), oom=("ns/hog",))

    assert faults.pull_error("registry.invalid/app:1") is not None
    assert faults.pull_error("busybox") is None
    assert faults.config_error("ns", "job-abc")
    assert not faults.config_error("other", "job-abc")
    assert faults.oom_kill("ns", "hog")
    assert not faults.oom_kill("ns", "hog-2")


def test_faults_update_by_field_and_refuse_bad_input_naming_it() -> None:
    faults = Faults().updated({"unreachable": True, "failing_images": ["x/*"]})
    assert faults.as_json() == {
        "unreachable": True,
        "failing_images": ["x/*"],
        "config_errors": [],
        "oom": [],
        "hold": False,
        "instant": False,
        "max_running": 0,
    }
    assert faults.updated({"failing_images": []}).failing_images == ()

    with pytest.raises(ValueError, match=r"unknown fault field.*bogus"):
        faults.updated({"bogus": 1})
    with pytest.raises(ValueError, match="unreachable must be true or false, got 'yes'"):
        faults.updated({"unreachable": "yes"})
    with pytest.raises(ValueError, match=r"oom must be a list of non-empty patterns"):
        faults.updated({"oom": [""]})
    with pytest.raises(ValueError, match=r"max_running must be a whole number >= 0 \(0: no limit\), got -1"):
        faults.updated({"max_running": -1})
    with pytest.raises(ValueError, match="hold must be true or false, got 1"):
        faults.updated({"hold": 1})


def test_the_knobs_decide_whether_a_pod_may_start() -> None:
    assert Faults().admits(running=100)
    assert not Faults(hold=True).admits(running=0)
    assert Faults(max_running=2).admits(running=1)
    assert not Faults(max_running=2).admits(running=2)


def test_memory_limits_are_read_in_bytes() -> None:
    pod = {
        "spec": {
            "initContainers": [{"name": "init", "resources": {"limits": {"memory": "1Mi"}}}],
            "containers": [{"name": "a", "resources": {"limits": {"memory": "100M"}}}, {"name": "b"}],
        }
    }
    assert memory_limits(pod) == {"init": 1048576, "a": 100_000_000}


def test_the_watchdog_kills_a_session_over_its_limit_and_remembers_it() -> None:
    hog = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; data = b'x' * (64 * 2**20); print('up', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert hog.stdout is not None
        assert hog.stdout.readline() == "up\n"
        assert session_rss(hog.pid) > 64 * 2**20
        watchdog = MemoryWatchdog(
            lambda: {"main": hog.pid, "other": hog.pid}, lambda: {"main": 32 * 2**20}, 0.1
        )

        assert watchdog.sample() == ["main"]
        assert hog.wait(timeout=TIMEOUT) == -9
        assert watchdog.take_oom("main")
        assert not watchdog.take_oom("main")
        assert not watchdog.take_oom("other")
    finally:
        hog.kill()
        hog.wait()
        if hog.stdout is not None:
            hog.stdout.close()


STAMP = datetime(2026, 12, 4, 7, 0, 1, 250000, tzinfo=UTC)


def test_format_log_applies_tail_then_timestamps_then_limit() -> None:
    data = b"one\ntwo\nthree\n"
    assert format_log(data, tail_lines=2, limit_bytes=None, stamp=None) == b"two\nthree\n"
    assert format_log(data, tail_lines=0, limit_bytes=None, stamp=None) == b""
    assert format_log(data, tail_lines=9, limit_bytes=None, stamp=None) == data
    assert format_log(data, tail_lines=None, limit_bytes=5, stamp=None) == b"one\nt"
    assert (
        format_log(data, tail_lines=1, limit_bytes=None, stamp=STAMP)
        == b"2026-12-04T07:00:01.250000000Z three\n"
    )


async def _serve(app: web.Application, context: ssl.SSLContext | None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, int(port)


async def test_the_log_endpoint_answers_over_tls_only_to_clients_the_ca_signed(tmp_path: Path) -> None:
    pki = ClusterPki(tmp_path / "pki")
    serving = pki.issue_serving_cert("node", ["127.0.0.1"])
    client = pki.issue_client_cert("kube-apiserver-kubelet-client", ["system:masters"])
    log = tmp_path / "main.log"
    log.write_text("a\nb\nc\n")

    def lookup(namespace: str, pod: str, container: str) -> LogSource | str:
        if (namespace, pod) != ("ns", "p"):
            return f'pod "{namespace}/{pod}" not found'
        if container == "waiting":
            return LogSource(log, "CreateContainerConfigError", lambda: False)
        return LogSource(log, None, lambda: True)

    runner, port = await _serve(
        log_app(lookup, lambda: True), server_ssl_context(serving.cert, serving.key, pki.ca.cert)
    )
    base = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(pki.ca.cert))
    with_cert = ssl.create_default_context(cafile=str(pki.ca.cert))
    with_cert.load_cert_chain(client.cert, client.key)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"{base}/healthz", ssl=trusted) as response:
                    await response.read()
            async with session.get(f"{base}/healthz", ssl=with_cert) as response:
                assert (response.status, await response.text()) == (200, "ok")
            query = {"tailLines": "2", "limitBytes": "3"}
            async with session.get(
                f"{base}/containerLogs/ns/p/main", params=query, ssl=with_cert
            ) as response:
                assert (response.status, await response.text()) == (200, "b\nc")
            async with session.get(f"{base}/containerLogs/ns/p/waiting", ssl=with_cert) as response:
                assert response.status == 400
                assert await response.text() == (
                    'container "waiting" in pod "p" is waiting to start: CreateContainerConfigError'
                )
            async with session.get(f"{base}/containerLogs/ns/gone/main", ssl=with_cert) as response:
                assert (response.status, await response.text()) == (404, 'pod "ns/gone" not found')
            async with session.get(f"{base}/containerLogs/ns/p/main?tailLines=x", ssl=with_cert) as response:
                assert (response.status, await response.text()) == (400, "tailLines='x' is not an integer")
    finally:
        await runner.cleanup()


async def test_follow_streams_until_the_container_terminates(tmp_path: Path) -> None:
    log = tmp_path / "main.log"
    log.write_text("first\n")
    done = asyncio.Event()

    def lookup(namespace: str, pod: str, container: str) -> LogSource:
        return LogSource(log, None, done.is_set)

    runner, port = await _serve(log_app(lookup, lambda: True), None)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            url = f"http://127.0.0.1:{port}/containerLogs/ns/p/main?follow=true"
            async with session.get(url) as response:
                assert await response.content.readline() == b"first\n"
                with log.open("a") as handle:
                    handle.write("second\n")
                assert await response.content.readline() == b"second\n"
                done.set()
                assert await response.content.read() == b""
    finally:
        await runner.cleanup()


def test_leftover_containers_of_a_killed_agent_are_found_by_their_home_and_killed(tmp_path: Path) -> None:
    home = tmp_path / "pods" / "ns_p_uid" / "home"
    home.mkdir(parents=True)
    script = "import os, time; os.chdir('/'); print('up', flush=True); time.sleep(60)"
    leftover = subprocess.Popen(
        [sys.executable, "-c", script],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    bystander = subprocess.Popen(
        [sys.executable, "-c", script],
        env={"HOME": str(tmp_path / "elsewhere"), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for process in (leftover, bystander):
            assert process.stdout is not None
            assert process.stdout.readline() == "up\n"

        assert kill_leftovers(tmp_path) == [leftover.pid]
        assert leftover.wait(timeout=TIMEOUT) == -9
        assert bystander.poll() is None
    finally:
        for process in (leftover, bystander):
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
