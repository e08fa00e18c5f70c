"""The local pod runner with real processes: semantics, kill, cancellation, no process left behind."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from dispatcher.executors.local.runner import ContainerState, LocalPodRunner, PodSpecError, StaticPodRefs

GRACE = 0.5
TIMEOUT = 10.0


def make_pod(containers, *, init=(), volumes=(), restart_policy="Never", name="pod-1", **spec):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "jobs",
            "uid": "1f0c1d8e-uid",
            "labels": {"app": "demo", "job-name": "job-1"},
            "annotations": {"note": "hello world"},
        },
        "spec": {
            "restartPolicy": restart_policy,
            "nodeName": "node-a",
            "initContainers": list(init),
            "containers": list(containers),
            "volumes": list(volumes),
            **spec,
        },
    }


def sh(name, script, **extra):
    return {"name": name, "image": "ignored:latest", "command": ["sh", "-c", script], **extra}


OUT_VOLUME = {"name": "out", "emptyDir": {}}
OUT_MOUNT = {"name": "out", "mountPath": "/out"}


def runner(tmp_path, pod, **kwargs):
    kwargs.setdefault("grace_seconds", GRACE)
    return LocalPodRunner(pod, workdir=tmp_path / "pod", **kwargs)


def out_dir(tmp_path) -> Path:
    return tmp_path / "pod" / "volumes" / "out"


def alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie (a zombie has exited; only its reaping is pending)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


async def wait_for(condition):
    async with asyncio.timeout(TIMEOUT):
        while not condition():  # noqa: ASYNC110 - polling what another process writes; nothing to await
            await asyncio.sleep(0.01)


def pid_in(path):
    """The pid a container wrote to *path*, or None while it has not written it completely."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return int(text) if text.endswith("\n") else None


async def read_pid(path) -> int:
    await wait_for(lambda: pid_in(path) is not None)
    return pid_in(path)


def shell_wait(condition):
    """Shell code that waits (at most 5 s) until the shell test *condition* holds."""
    return f"i=0; until {condition} || [ $i -ge 500 ]; do sleep 0.01; i=$((i+1)); done"


def env_of(log: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in log.splitlines() if "=" in line)


async def test_init_container_output_reaches_main_container_and_logs_are_captured(tmp_path):
    pod = make_pod(
        [sh("main", "cat /out/greeting; echo to-stderr >&2", volumeMounts=[OUT_MOUNT])],
        init=[sh("prepare", "echo hello from init > /out/greeting", volumeMounts=[OUT_MOUNT])],
        volumes=[OUT_VOLUME],
    )
    pod_runner = runner(tmp_path, pod)

    outcome = await pod_runner.run()

    assert outcome.phase == "Succeeded"
    assert (outcome.reason, outcome.message) == (None, None)
    assert [(s.name, s.init, s.state, s.exit_code, s.reason) for s in outcome.init_containers] == [
        ("prepare", True, "terminated", 0, "Completed")
    ]
    [main] = outcome.containers
    assert (main.state, main.exit_code, main.reason, main.signal) == ("terminated", 0, "Completed", None)
    assert main.started_at is not None
    assert main.finished_at is not None
    assert main.started_at.utcoffset().total_seconds() == 0
    assert main.started_at <= main.finished_at
    assert outcome.init_containers[0].finished_at <= main.started_at
    assert pod_runner.log_path("main").read_text() == "hello from init\nto-stderr\n"
    assert pod_runner.log_path("prepare").read_text() == ""


async def test_failing_container_reports_its_exit_code_and_its_files_land_in_the_volume(tmp_path):
    pod = make_pod(
        [
            sh(
                "main",
                "echo hi > $OUT/x; exit 3",
                env=[{"name": "OUT", "value": "/out"}],
                volumeMounts=[OUT_MOUNT],
            )
        ],
        volumes=[OUT_VOLUME],
    )

    outcome = await runner(tmp_path, pod).run()

    assert outcome.phase == "Failed"
    assert outcome.reason is None
    assert outcome.message == "container main exited with code 3"
    [main] = outcome.containers
    assert (main.exit_code, main.reason, main.signal) == (3, "Error", None)
    assert (out_dir(tmp_path) / "x").read_text() == "hi\n"


async def test_failed_init_container_stops_the_pod_before_the_main_containers(tmp_path):
    pod = make_pod(
        [sh("main", "touch /out/main-ran", volumeMounts=[OUT_MOUNT])],
        init=[sh("first", "exit 2"), sh("second", "touch /out/second-ran", volumeMounts=[OUT_MOUNT])],
        volumes=[OUT_VOLUME],
    )

    outcome = await runner(tmp_path, pod).run()

    assert outcome.phase == "Failed"
    assert outcome.message == "init container first exited with code 2"
    first, second = outcome.init_containers
    assert (first.state, first.exit_code) == ("terminated", 2)
    assert (second.state, second.reason) == ("waiting", "PodInitializing")
    assert (outcome.containers[0].state, outcome.containers[0].reason) == ("waiting", "PodInitializing")
    assert list(out_dir(tmp_path).iterdir()) == []


async def test_command_args_and_env_values_expand_variables_like_kubernetes(tmp_path):
    main = {
        "name": "main",
        "command": ["sh", "-c", 'printf "%s|" "$@"; echo; echo "COMBINED=$COMBINED"', "$(NAME)"],
        "args": ["$(NAME)-x", "$$(NAME)", "$(UNDEFINED)", "$$", "cost $5", "$(LATER)"],
        "env": [
            {"name": "NAME", "value": "alpha"},
            {"name": "COMBINED", "value": "$(NAME)/$(LATER)/$$(NAME)"},
            {"name": "LATER", "value": "omega"},
        ],
    }

    pod_runner = runner(tmp_path, make_pod([main]))
    outcome = await pod_runner.run()

    assert outcome.phase == "Succeeded"
    # "$(NAME)" after the script is $0 for sh, so the printed arguments are the args.
    assert pod_runner.log_path("main").read_text().splitlines() == [
        "alpha-x|$(NAME)|$(UNDEFINED)|$|cost $5|omega|",
        # An env value sees only variables defined before it.
        "COMBINED=alpha/$(LATER)/$(NAME)",
    ]


async def test_downward_api_env_exposes_pod_fields_and_resources(tmp_path):
    def field(path):
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    def resource(name, divisor=None):
        ref = {"resource": name, **({"divisor": divisor} if divisor else {})}
        return {"valueFrom": {"resourceFieldRef": ref}}

    main = sh(
        "main",
        "env",
        env=[
            {"name": "POD_NAME", **field("metadata.name")},
            {"name": "POD_NAMESPACE", **field("metadata.namespace")},
            {"name": "POD_UID", **field("metadata.uid")},
            {"name": "APP", **field("metadata.labels['app']")},
            {"name": "NOTE", **field("metadata.annotations['note']")},
            {"name": "MISSING_LABEL", **field("metadata.labels['nope']")},
            {"name": "NODE", **field("spec.nodeName")},
            {"name": "POD_IP", **field("status.podIP")},
            {"name": "SA", **field("spec.serviceAccountName")},
            {"name": "CPU_LIMIT", **resource("limits.cpu")},
            {"name": "CPU_REQUEST_MILLI", **resource("requests.cpu", "1m")},
            {"name": "MEMORY_LIMIT_MI", **resource("limits.memory", "1Mi")},
        ],
        resources={"limits": {"cpu": "1500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}},
    )

    pod_runner = runner(tmp_path, make_pod([main]))
    await pod_runner.run()

    env = env_of(pod_runner.log_path("main").read_text())
    assert {key: env[key] for key in ("POD_NAME", "POD_NAMESPACE", "POD_UID", "APP", "NOTE", "NODE")} == {
        "POD_NAME": "pod-1",
        "POD_NAMESPACE": "jobs",
        "POD_UID": "1f0c1d8e-uid",
        "APP": "demo",
        "NOTE": "hello world",
        "NODE": "node-a",
    }
    assert env["MISSING_LABEL"] == ""
    assert env["POD_IP"] == "127.0.0.1"
    assert env["SA"] == "default"
    assert (env["CPU_LIMIT"], env["CPU_REQUEST_MILLI"], env["MEMORY_LIMIT_MI"]) == ("2", "250", "64")


async def test_config_maps_and_secrets_feed_volumes_and_env(tmp_path):
    refs = StaticPodRefs(
        config_maps={"settings": {"mode": "fast", "level": "3"}},
        secrets={"creds": {"token": b"s3cr3t", "user": b"alice"}},
    )
    main = sh(
        "main",
        "cat /etc/app/conf/mode.txt; echo; ls /etc/app/conf; env; "
        "test -w /etc/app/conf/mode.txt || echo read-only",
        env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
            {"name": "ABSENT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}}},
        ],
        envFrom=[{"secretRef": {"name": "creds"}, "prefix": "CREDS_"}],
        volumeMounts=[{"name": "conf", "mountPath": "/etc/app/conf", "readOnly": True}],
    )
    volumes = [
        {"name": "conf", "configMap": {"name": "settings", "items": [{"key": "mode", "path": "mode.txt"}]}}
    ]

    pod_runner = runner(tmp_path, make_pod([main], volumes=volumes), refs=refs)
    outcome = await pod_runner.run()

    assert outcome.phase == "Succeeded", outcome.message
    log = pod_runner.log_path("main").read_text()
    lines = log.splitlines()
    assert lines[:2] == ["fast", "mode.txt"]  # only the listed item, under its path
    env = env_of(log)
    assert (env["TOKEN"], env["LEVEL"], env["CREDS_token"], env["CREDS_user"]) == (
        "s3cr3t",
        "3",
        "s3cr3t",
        "alice",
    )
    assert "ABSENT" not in env
    if os.geteuid() != 0:  # root writes through any mode
        assert lines[-1] == "read-only"


async def test_a_missing_config_map_or_secret_makes_the_container_unable_to_run(tmp_path):
    volumes = [{"name": "conf", "configMap": {"name": "absent"}}]
    pod = make_pod(
        [
            sh("uses-volume", "true", volumeMounts=[{"name": "conf", "mountPath": "/conf"}]),
            sh(
                "uses-secret",
                "true",
                env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            ),
            sh("fine", "true"),
        ],
        volumes=volumes,
    )

    outcome = await runner(tmp_path, pod).run()

    assert outcome.phase == "Failed"
    by_name = {state.name: state for state in outcome.containers}
    assert by_name["uses-volume"].reason == "ContainerCannotRun"
    assert "configmap 'absent' not found" in by_name["uses-volume"].message
    assert by_name["uses-secret"].reason == "ContainerCannotRun"
    assert "secret 's' not found" in by_name["uses-secret"].message
    assert (by_name["fine"].state, by_name["fine"].exit_code) == ("terminated", 0)
    assert "uses-volume cannot run" in outcome.message


SECRET_ENV = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]


async def test_a_kubelet_keeps_a_container_with_a_missing_secret_waiting_until_the_secret_appears(tmp_path):
    # The emulator's kubelet (wait_when_unstartable): CreateContainerConfigError, tried again until the
    # Secret exists, as on a node; the container beside it runs meanwhile.
    secrets: dict[str, dict[str, bytes]] = {}
    pod = make_pod([sh("uses-secret", 'echo "$T"', env=SECRET_ENV), sh("fine", "true")])
    events: list[ContainerState] = []
    pod_runner = runner(
        tmp_path,
        pod,
        refs=StaticPodRefs(secrets=secrets),
        on_change=events.append,
        wait_when_unstartable=True,
        retry_seconds=0.05,
    )
    task = asyncio.create_task(pod_runner.run())
    await wait_for(lambda: any(e.name == "fine" and e.state == "terminated" for e in events))
    waiting = [e for e in events if e.name == "uses-secret" and e.reason == "CreateContainerConfigError"]
    assert len(waiting) == 1  # reported once, not at every try
    assert waiting[0].state == "waiting"
    assert "secret 's' not found" in (waiting[0].message or "")
    assert not task.done()

    secrets["s"] = {"k": b"found"}
    outcome = await asyncio.wait_for(task, TIMEOUT)

    assert outcome.phase == "Succeeded"
    assert (tmp_path / "pod" / "logs" / "uses-secret.log").read_text() == "found\n"


async def test_a_kubelet_mounts_a_volume_once_its_config_map_appears(tmp_path):
    # A kubelet retries a failed mount (ContainerCreating) until the ConfigMap exists; so does the runner.
    config_maps: dict[str, dict[str, str]] = {}
    volume = {"name": "conf", "configMap": {"name": "late"}}
    main = sh("main", "cat /conf/k", volumeMounts=[{"name": "conf", "mountPath": "/conf"}])
    events: list[ContainerState] = []
    pod_runner = runner(
        tmp_path,
        make_pod([main], volumes=[volume]),
        refs=StaticPodRefs(config_maps=config_maps),
        on_change=events.append,
        wait_when_unstartable=True,
        retry_seconds=0.05,
    )
    task = asyncio.create_task(pod_runner.run())
    await wait_for(lambda: any(e.reason == "ContainerCreating" and e.message for e in events))
    assert not task.done()

    config_maps["late"] = {"k": "mounted"}
    outcome = await asyncio.wait_for(task, TIMEOUT)

    assert outcome.phase == "Succeeded"
    assert pod_runner.log_path("main").read_text() == "mounted"


async def test_a_kill_ends_a_container_waiting_for_its_image_or_configuration(tmp_path):
    pod = make_pod(
        [
            sh("pulls", "true", image="registry.invalid/nope:1"),
            sh("uses-secret", "true", env=SECRET_ENV),
        ]
    )
    events: list[ContainerState] = []

    def pull(image: str) -> str | None:
        return "not found" if image.startswith("registry.invalid/") else None

    pod_runner = runner(
        tmp_path,
        pod,
        on_change=events.append,
        wait_when_unstartable=True,
        retry_seconds=0.05,
        pull_image=pull,
    )
    task = asyncio.create_task(pod_runner.run())
    await wait_for(lambda: any(e.reason == "ImagePullBackOff" for e in events))
    await pod_runner.kill("DeadlineExceeded", "too long")
    outcome = await asyncio.wait_for(task, TIMEOUT)

    assert (outcome.phase, outcome.reason) == ("Failed", "DeadlineExceeded")
    pulls, uses_secret = outcome.containers
    assert (pulls.state, pulls.reason, pulls.message) == (
        "waiting",
        "ImagePullBackOff",
        'Back-off pulling image "registry.invalid/nope:1"',
    )
    assert [e.reason for e in events if e.name == "pulls"][1:3] == ["ErrImagePull", "ImagePullBackOff"]
    assert (uses_secret.state, uses_secret.reason) == ("waiting", "CreateContainerConfigError")


async def test_without_waiting_a_refused_image_cannot_run(tmp_path):
    pod = make_pod([sh("pulls", "true", image="registry.invalid/nope:1")])

    outcome = await runner(tmp_path, pod, pull_image=lambda image: "not found").run()

    [pulls] = outcome.containers
    assert (outcome.phase, pulls.reason, pulls.exit_code, pulls.message) == (
        "Failed",
        "ContainerCannotRun",
        128,
        "not found",
    )


async def test_host_environment_does_not_leak_into_containers(tmp_path, monkeypatch):
    monkeypatch.setenv("BUCKETRUN_TEST_FAKE_SECRET", "do-not-leak")
    script = "import json, os, sys; print(sys.prefix); print(json.dumps(dict(os.environ)))"
    pod = make_pod([{"name": "main", "command": ["python3", "-c", script]}])

    pod_runner = runner(tmp_path, pod, base_env={"EXTRA": "given"})
    outcome = await pod_runner.run()

    assert outcome.phase == "Succeeded", pod_runner.log_path("main").read_text()
    prefix, environ = pod_runner.log_path("main").read_text().splitlines()
    assert prefix == sys.prefix  # `python3` is the interpreter running the runner
    env = json.loads(environ)
    assert "BUCKETRUN_TEST_FAKE_SECRET" not in env
    assert set(env) == {"PATH", "HOME", "HOSTNAME", "LANG", "EXTRA"}
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert (env["HOSTNAME"], env["LANG"], env["EXTRA"]) == ("pod-1", "C.UTF-8", "given")
    assert env["HOME"] == str(tmp_path / "pod" / "home")


async def test_native_sidecar_runs_alongside_and_is_stopped_after_the_main_containers(tmp_path):
    sidecar = sh(
        "proxy",
        "echo up > /out/proxy-ready; exec sleep 300",
        restartPolicy="Always",
        volumeMounts=[OUT_MOUNT],
    )
    main = sh(
        "main",
        shell_wait("[ -f /out/proxy-ready ]") + "; cat /out/proxy-ready",
        volumeMounts=[OUT_MOUNT],
    )
    events: list[ContainerState] = []
    pod_runner = runner(
        tmp_path, make_pod([main], init=[sidecar], volumes=[OUT_VOLUME]), on_change=events.append
    )

    outcome = await pod_runner.run()

    assert outcome.phase == "Succeeded"
    assert pod_runner.log_path("main").read_text() == "up\n"
    [proxy] = outcome.init_containers
    # Stopped with SIGTERM: its own exit status does not decide the phase.
    assert (proxy.state, proxy.exit_code, proxy.signal, proxy.reason) == ("terminated", 143, 15, "Error")
    order = [(state.name, state.state) for state in events if state.state != "waiting"]
    assert order.index(("proxy", "running")) < order.index(("main", "running"))
    assert order.index(("main", "terminated")) < order.index(("proxy", "terminated"))


async def test_kill_stops_running_containers_with_their_children_and_leaves_the_rest_waiting(tmp_path):
    pod = make_pod(
        [sh("main", "true")],
        init=[
            sh("busy", "sleep 300 & echo $! > /out/child; wait", volumeMounts=[OUT_MOUNT]),
            sh("never", "true"),
        ],
        volumes=[OUT_VOLUME],
    )
    pod_runner = runner(tmp_path, pod)
    run = asyncio.create_task(pod_runner.run())
    child = await read_pid(out_dir(tmp_path) / "child")
    assert alive(child)

    await pod_runner.kill(message="too slow")
    outcome = await run

    assert (outcome.phase, outcome.reason, outcome.message) == ("Failed", "DeadlineExceeded", "too slow")
    busy, never = outcome.init_containers
    assert (busy.state, busy.signal, busy.exit_code) == ("terminated", 15, 143)
    assert (never.state, outcome.containers[0].state) == ("waiting", "waiting")
    assert not alive(child)


async def test_kill_escalates_to_sigkill_after_the_grace_period(tmp_path):
    script = "trap '' TERM; sleep 300 & echo $! > /out/child; while :; do wait; done"
    pod = make_pod([sh("stubborn", script, volumeMounts=[OUT_MOUNT])], volumes=[OUT_VOLUME])
    pod_runner = runner(tmp_path, pod, grace_seconds=0.2)
    run = asyncio.create_task(pod_runner.run())
    child = await read_pid(out_dir(tmp_path) / "child")

    await pod_runner.kill("Evicted")
    outcome = await run

    assert (outcome.reason, outcome.message) == ("Evicted", "pod killed: Evicted")
    [stubborn] = outcome.containers
    assert (stubborn.exit_code, stubborn.signal, stubborn.reason) == (137, 9, "Error")
    assert not alive(child)


async def test_kill_with_its_own_grace_escalates_after_that_grace_not_the_runners(tmp_path):
    script = "trap '' TERM; echo $$$$ > /out/up; while :; do sleep 0.05; done"
    pod = make_pod([sh("stubborn", script, volumeMounts=[OUT_MOUNT])], volumes=[OUT_VOLUME])
    pod_runner = runner(tmp_path, pod, grace_seconds=300)
    run = asyncio.create_task(pod_runner.run())
    leader = await read_pid(out_dir(tmp_path) / "up")
    assert pod_runner.process_ids() == {"stubborn": leader}

    async with asyncio.timeout(TIMEOUT):
        await pod_runner.kill("Deleted", grace_seconds=0.2)
    outcome = await run

    [stubborn] = outcome.containers
    assert (stubborn.exit_code, stubborn.signal) == (137, 9)
    assert pod_runner.process_ids() == {}
    with pytest.raises(ValueError, match="-1"):
        await pod_runner.kill(grace_seconds=-1)


async def test_kill_before_run_after_run_and_twice_is_safe(tmp_path):
    early = runner(tmp_path / "early", make_pod([sh("main", "touch ran")]))
    await early.kill()
    await early.kill("Other")
    outcome = await early.run()
    assert (outcome.phase, outcome.reason) == ("Failed", "DeadlineExceeded")
    assert outcome.containers[0].state == "waiting"

    late = runner(tmp_path / "late", make_pod([sh("main", "true")]))
    outcome = await late.run()
    await late.kill()
    await late.kill()
    assert (outcome.phase, outcome.reason) == ("Succeeded", None)


async def test_processes_left_behind_by_a_finished_container_are_killed(tmp_path):
    # A background child, and one moved to a process group of its own (so only the session still holds it).
    regroup = "import subprocess; print(subprocess.Popen(['sleep', '300'], process_group=0).pid)"
    script = f'sleep 300 & echo $! > /out/plain; python3 -c "{regroup}" > /out/grouped; exit 0'
    pod = make_pod([sh("main", script, volumeMounts=[OUT_MOUNT])], volumes=[OUT_VOLUME])

    outcome = await runner(tmp_path, pod).run()

    assert outcome.phase == "Succeeded"
    for name in ("plain", "grouped"):
        assert not alive(int((out_dir(tmp_path) / name).read_text())), name


async def test_cancelling_run_kills_every_process(tmp_path):
    pod = make_pod(
        [
            sh("main", "sleep 300 & echo $! > /out/child; wait", volumeMounts=[OUT_MOUNT]),
            sh("other", "echo $$$$ > /out/other; exec sleep 300", volumeMounts=[OUT_MOUNT]),
        ],
        init=[
            sh(
                "sidecar",
                "echo $$$$ > /out/sidecar; exec sleep 300",
                restartPolicy="Always",
                volumeMounts=[OUT_MOUNT],
            )
        ],
        volumes=[OUT_VOLUME],
    )
    pod_runner = runner(tmp_path, pod, grace_seconds=30)  # cancellation must not wait for a grace period
    run = asyncio.create_task(pod_runner.run())
    pids = [await read_pid(out_dir(tmp_path) / name) for name in ("child", "other", "sidecar")]
    assert all(alive(pid) for pid in pids)

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    assert [pid for pid in pids if alive(pid)] == []


async def test_on_change_reports_every_transition_in_order(tmp_path):
    events: list[ContainerState] = []
    pod = make_pod([sh("main", "exit 1")], init=[sh("setup", "true")])

    outcome = await runner(tmp_path, pod, on_change=events.append).run()

    assert [(s.name, s.state, s.reason, s.exit_code) for s in events] == [
        ("setup", "waiting", "PodInitializing", None),
        ("main", "waiting", "PodInitializing", None),
        ("setup", "running", None, None),
        ("setup", "terminated", "Completed", 0),
        ("main", "running", None, None),
        ("main", "terminated", "Error", 1),
    ]
    assert events[-1] == outcome.containers[0]


async def test_container_without_command_cannot_run(tmp_path):
    pod = make_pod([{"name": "main", "image": "busybox"}])

    outcome = await runner(tmp_path, pod).run()

    assert outcome.phase == "Failed"
    [main] = outcome.containers
    assert (main.state, main.reason, main.exit_code) == ("terminated", "ContainerCannotRun", 128)
    assert "'main' has no command" in main.message
    assert outcome.message.startswith("container main cannot run:")


async def test_command_not_found_cannot_run(tmp_path):
    pod = make_pod([{"name": "main", "command": ["/nonexistent/tool", "x"]}])

    [main] = (await runner(tmp_path, pod).run()).containers

    assert (main.reason, main.exit_code) == ("ContainerCannotRun", 127)
    assert "/nonexistent/tool" in main.message


async def test_restart_policy_on_failure_restarts_in_place_until_success(tmp_path):
    script = "n=$(cat /out/n 2>/dev/null || echo 0); echo $((n+1)) > /out/n; [ $n -ge 2 ]"
    pod = make_pod(
        [sh("main", script, volumeMounts=[OUT_MOUNT])], volumes=[OUT_VOLUME], restart_policy="OnFailure"
    )
    events: list[ContainerState] = []

    outcome = await runner(tmp_path, pod, on_change=events.append).run()

    assert outcome.phase == "Succeeded"
    assert (outcome.containers[0].exit_code, outcome.containers[0].restart_count) == (0, 2)
    assert [(s.state, s.restart_count) for s in events[1:]] == [
        ("running", 0),
        ("waiting", 1),
        ("running", 1),
        ("waiting", 2),
        ("running", 2),
        ("terminated", 2),
    ]
    assert events[2].reason == "CrashLoopBackOff"
    last = events[2].last_terminated
    assert last is not None
    assert (last.state, last.exit_code, last.restart_count) == ("terminated", 1, 0)


async def test_restart_policy_on_failure_gives_up_after_max_restarts(tmp_path):
    pod = make_pod([sh("main", "exit 4")], restart_policy="OnFailure")

    outcome = await runner(tmp_path, pod, max_restarts=2).run()

    assert outcome.phase == "Failed"
    assert (outcome.containers[0].exit_code, outcome.containers[0].restart_count) == (4, 2)


async def test_active_deadline_seconds_kills_the_pod(tmp_path):
    pod = make_pod([sh("main", "exec sleep 300")], activeDeadlineSeconds=0.2)

    outcome = await runner(tmp_path, pod).run()

    assert (outcome.phase, outcome.reason) == ("Failed", "DeadlineExceeded")
    assert outcome.containers[0].signal == 15


async def test_exit_by_signal_is_reported_as_128_plus_the_signal(tmp_path):
    # "$$$$" is the shell's "$$" once Kubernetes has unescaped it.
    pod = make_pod([sh("main", "kill -TERM $$$$")])

    [main] = (await runner(tmp_path, pod).run()).containers

    assert (main.exit_code, main.signal, main.reason) == (143, 15, "Error")


async def test_mount_paths_are_rewritten_in_working_dir_sub_paths_and_nested_mounts(tmp_path):
    main = sh(
        "main",
        "pwd; echo data > /work/in/file; echo $DATA_DIR",
        workingDir="/work/in",
        env=[{"name": "DATA_DIR", "value": "/work/in/sub"}],
        volumeMounts=[
            {"name": "out", "mountPath": "/work"},
            {"name": "out", "mountPath": "/work/in", "subPath": "inputs"},
        ],
    )

    pod_runner = runner(tmp_path, make_pod([main], volumes=[OUT_VOLUME]))
    outcome = await pod_runner.run()

    assert outcome.phase == "Succeeded", pod_runner.log_path("main").read_text()
    inputs = out_dir(tmp_path) / "inputs"
    assert pod_runner.log_path("main").read_text().splitlines() == [str(inputs), f"{inputs}/sub"]
    assert (inputs / "file").read_text() == "data\n"


async def test_downward_api_volume_writes_labels_and_fields(tmp_path):
    volume = {
        "name": "info",
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}},
            ]
        },
    }
    main = sh(
        "main",
        "cat /info/labels; echo; cat /info/meta/name",
        volumeMounts=[{"name": "info", "mountPath": "/info"}],
    )

    pod_runner = runner(tmp_path, make_pod([main], volumes=[volume]))
    await pod_runner.run()

    assert pod_runner.log_path("main").read_text().splitlines() == ['app="demo"', 'job-name="job-1"', "pod-1"]


class TokenRefs(StaticPodRefs):
    """Refs that can request ServiceAccount tokens, as the node agent's."""

    def service_account_token(self, audience: str, expiration_seconds: int) -> bytes | None:
        return f"token-for-{audience or 'api'}-{expiration_seconds}".encode()


async def test_projected_service_account_token_comes_from_refs_that_can_request_one(tmp_path):
    volume = {
        "name": "api",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            ]
        },
    }
    main = sh(
        "main", "cat /api/token; echo; cat /api/ca.crt", volumeMounts=[{"name": "api", "mountPath": "/api"}]
    )
    refs = TokenRefs(config_maps={"kube-root-ca.crt": {"ca.crt": "PEM"}})

    with_token = runner(tmp_path / "a", make_pod([main], volumes=[volume]), refs=refs)
    assert (await with_token.run()).phase == "Succeeded"
    assert with_token.log_path("main").read_text().splitlines() == ["token-for-api-3607", "PEM"]

    plain = runner(tmp_path / "b", make_pod([main], volumes=[volume]), refs=StaticPodRefs(refs.config_maps))
    [state] = (await plain.run()).containers
    assert "projected serviceAccountToken sources are not supported" in (state.message or "")


async def test_malformed_pod_is_rejected_up_front(tmp_path):
    with pytest.raises(
        PodSpecError, match=r"spec\.containers\[0\] \(main\)\.command must be a list, got str"
    ):
        runner(tmp_path, make_pod([{"name": "main", "command": "echo hi"}]))


async def test_log_path_names_unknown_containers(tmp_path):
    pod_runner = runner(tmp_path, make_pod([sh("main", "true")]))

    with pytest.raises(ValueError, match="pod 'pod-1' has no container 'other'"):
        pod_runner.log_path("other")


async def test_run_may_be_called_only_once(tmp_path):
    pod_runner = runner(tmp_path, make_pod([sh("main", "true")]))
    await pod_runner.run()

    with pytest.raises(RuntimeError, match="already called"):
        await pod_runner.run()


async def test_native_sidecar_that_exits_is_restarted_while_the_main_containers_run(tmp_path):
    # The sidecar exits at once the first time and stays up the second time.
    sidecar = sh(
        "helper",
        "n=$(cat /out/n 2>/dev/null || echo 0); echo $((n+1)) > /out/n; [ $n -ge 1 ] && exec sleep 300",
        restartPolicy="Always",
        volumeMounts=[OUT_MOUNT],
    )
    main = sh(
        "main",
        shell_wait('[ "$(cat /out/n 2>/dev/null)" = 2 ]') + "; cat /out/n",
        volumeMounts=[OUT_MOUNT],
    )
    events: list[ContainerState] = []

    pod_runner = runner(
        tmp_path, make_pod([main], init=[sidecar], volumes=[OUT_VOLUME]), on_change=events.append
    )
    outcome = await pod_runner.run()

    assert outcome.phase == "Succeeded"
    assert pod_runner.log_path("main").read_text() == "2\n"
    [helper] = outcome.init_containers
    assert (helper.state, helper.restart_count, helper.signal) == ("terminated", 1, 15)
    assert ("waiting", "CrashLoopBackOff", 1) in [
        (s.state, s.reason, s.restart_count) for s in events if s.init
    ]


async def test_kill_during_restart_back_off_ends_the_pod_at_once(tmp_path):
    events: list[ContainerState] = []
    pod = make_pod([sh("main", "exit 5")], restart_policy="OnFailure")
    pod_runner = runner(tmp_path, pod, on_change=events.append, max_restarts=100)
    run = asyncio.create_task(pod_runner.run())
    await wait_for(lambda: any(state.restart_count >= 3 for state in events))

    await pod_runner.kill()
    outcome = await run

    assert (outcome.phase, outcome.reason) == ("Failed", "DeadlineExceeded")
    [main] = outcome.containers
    assert (main.state, main.exit_code) == ("terminated", 5)
    assert main.restart_count < 100


async def test_an_on_change_error_propagates_after_every_process_is_stopped(tmp_path):
    class CallbackError(Exception):
        pass

    def on_change(state):
        if state.name == "watcher" and state.state == "terminated":
            raise CallbackError

    pod = make_pod(
        [
            sh(
                "sleeper",
                "echo $$$$ > /out/sleeper.tmp; mv /out/sleeper.tmp /out/sleeper; exec sleep 300",
                volumeMounts=[OUT_MOUNT],
            ),
            sh("watcher", shell_wait("[ -s /out/sleeper ]"), volumeMounts=[OUT_MOUNT]),
        ],
        volumes=[OUT_VOLUME],
    )
    pod_runner = runner(tmp_path, pod, on_change=on_change, grace_seconds=30)

    with pytest.raises(CallbackError):
        await pod_runner.run()

    assert not alive(pid_in(out_dir(tmp_path) / "sleeper"))
