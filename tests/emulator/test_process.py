"""The emulator process: readiness, failure reporting, and a clean stop (no process, no port left)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - these tests drive the API directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from tests.backends import port_open
from tests.backends.kubernetes import api_client_for
from tests.emulator.helpers import job_body, job_pods, wait_for
from tests.k8s_emulator import run_emulator
from tests.k8s_emulator.config import build_parser
from tests.k8s_emulator.process import processes_under

pytestmark = pytest.mark.integration


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


async def test_stopping_the_emulator_leaves_no_process_and_frees_its_port(tmp_path):
    with run_emulator(tmp_path) as emulator:
        pgid, port, state_dir = emulator.pid, emulator.port, emulator.state_dir
        assert port_open("127.0.0.1", port)
        assert emulator.kubeconfig.read_text().count(emulator.url) == 1
        async with await api_client_for(emulator.kubeconfig) as api:
            await client.BatchV1Api(api).create_namespaced_job("default", job_body("lingering", "sleep 60"))

            async def running() -> bool | None:
                pods = await job_pods(api, "default", "lingering")
                return True if pods and pods[0]["status"]["phase"] == "Running" else None

            await wait_for(running, what="the pod to run")
        assert processes_under(state_dir)
        assert pgid in _group_members(pgid)
    assert _group_members(pgid) == []
    assert not port_open("127.0.0.1", port)
    assert processes_under(state_dir) == []


def test_an_emulator_that_cannot_start_reports_its_output(tmp_path):
    with (
        pytest.raises(RuntimeError, match="history_window must be at least 1"),
        run_emulator(tmp_path, history_window=0),
    ):
        pass


def test_unknown_knobs_are_refused_before_starting(tmp_path):
    with pytest.raises(TypeError, match="kubelet_mode"), run_emulator(tmp_path, kubelet_mode="run"):
        pass


async def test_the_command_line_starts_with_the_given_knobs_and_reset_returns_to_them(tmp_path):
    with run_emulator(tmp_path, kubelet="off", max_running_pods=3, history_window=50, seed=4) as emulator:
        state = emulator.control.state()
        assert state["kubelet"]["mode"] == "off"
        assert state["kubelet"]["max_running_pods"] == 3
        assert state["history_window"] == 50
        assert state["faults"]["seed"] == 4
        emulator.control.set_faults(error_rates={503: 1.0}, seed=5)
        emulator.control.set_kubelet("instant", max_running_pods=7)
        async with await api_client_for(emulator.kubeconfig) as api:
            with pytest.raises(ApiException) as unavailable:
                await client.CoreV1Api(api).list_namespaced_config_map("default")
            assert unavailable.value.status == 503
        emulator.control.reset()
        state = emulator.control.state()
        assert (state["kubelet"]["mode"], state["kubelet"]["max_running_pods"]) == ("off", 3)
        assert (state["faults"]["rules"], state["faults"]["seed"]) == ([], 4)


def test_the_command_line_help_names_every_knob(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--kubelet", "--max-running-pods", "--history-window", "--seed", "--port", "--state-dir"):
        assert flag in text
    assert "exit-code annotation" in text  # what instant mode does
