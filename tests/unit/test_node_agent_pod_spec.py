"""How the node agent reads a pod spec, pinned with values written out by hand from Kubernetes.

Sources (read, not run): the kubelet's makeEnvironmentVariables (pkg/kubelet/kubelet_pods.go) — envFrom
first, in order, each key with its prefix, no key skipped (the API server already refused keys that
are not names); then `env` in order, a `value` expanded against what is defined *so far*, a later
entry overriding an earlier one; an optional ref that is missing leaves the variable out; a required
one that is missing fails the container (CreateContainerConfigError). `command` and `args` are
expanded against the *whole* environment (kubecontainer.ExpandContainerCommandAndArgs), so they see
variables declared after any given one. Expansion rules (third_party/forked/golang/expansion):
`$(NAME)` becomes NAME's value when defined and stays as written otherwise, `$$` is one `$`, any other
`$` stays. Exit codes: 0 is Completed, non-zero is Error, killed by signal N is 128 + N.

Every pod runs through the agent's own path: its `FetchedRefs` (GETs against a fake API answering
with canned Secrets and ConfigMaps, base64 as the API returns Secret data) feeding `LocalPodRunner`,
and its `status` module turning states into the documents written to pods/status.
"""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from bucketrun.devtools.node_agent.refs import FetchedRefs, referenced
from bucketrun.devtools.node_agent.status import ContainerRecord, container_status
from dispatcher.executors.local.runner import ContainerState, LocalPodRunner
from tests.node_api_fake import ObjectsApi

TIMEOUT = 20.0
NAMESPACE = "pinned"


class CannedApi(ObjectsApi):
    """Answers the GETs FetchedRefs makes from canned objects; 404 for anything else."""

    def __init__(self, config_maps: dict[str, dict[str, str]], secrets: dict[str, dict[str, str]]) -> None:
        super().__init__()
        for name, data in config_maps.items():
            self.objects[f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}"] = {"data": data}
        for name, plain in secrets.items():
            encoded = {key: base64.b64encode(value.encode()).decode() for key, value in plain.items()}
            self.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}"] = {"data": encoded}


def pod(
    containers: list[dict[str, Any]], volumes: tuple[dict[str, Any], ...] = (), **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": NAMESPACE, "uid": "u-1", "labels": {"app": "x"}},
        "spec": {"restartPolicy": "Never", "containers": containers, "volumes": list(volumes), **spec},
    }


PRINT_ENV_AND_ARGS = (
    "import json, os, sys; "
    "print(json.dumps({'args': sys.argv[1:], 'env': {k: v for k, v in os.environ.items() if k in NAMES}}))"
)


def printer(env: list[dict[str, Any]], args: list[str], names: list[str], **extra: Any) -> dict[str, Any]:
    code = PRINT_ENV_AND_ARGS.replace("NAMES", repr(names))
    return {
        "name": "main",
        "image": "x",
        "command": [sys.executable, "-c", code],
        "args": args,
        "env": env,
        **extra,
    }


async def run(
    tmp_path: Path, manifest: dict[str, Any], api: CannedApi
) -> tuple[LocalPodRunner, list[ContainerState]]:
    refs = FetchedRefs(api, manifest)  # type: ignore[arg-type]
    await refs.refresh()
    states: list[ContainerState] = []
    runner = LocalPodRunner(
        manifest, workdir=tmp_path / "pod", refs=refs, on_change=states.append, grace_seconds=1
    )
    async with asyncio.timeout(TIMEOUT):
        await runner.run()
    return runner, states


def printed(runner: LocalPodRunner) -> dict[str, Any]:
    text = runner.log_path("main").read_text()
    result: dict[str, Any] = json.loads(text.splitlines()[-1])
    return result


async def test_dollar_expansion_in_env_values_and_in_args(tmp_path: Path) -> None:
    env = [
        {"name": "A", "value": "alpha"},
        {"name": "B", "value": "$(A)-b"},
        {"name": "ESCAPED", "value": "$$(A)"},
        {"name": "UNKNOWN", "value": "$(NOPE)"},
        {"name": "EARLY", "value": "$(LATE)"},
        {"name": "LATE", "value": "late"},
        {"name": "DOLLARS", "value": "$$ $$$$ $x $"},
        {"name": "UNCLOSED", "value": "$(A"},
    ]
    args = ["$(LATE)", "$(A)$(B)", "$$(A)", "$(NOPE)", "$(EARLY)", "$$$(A)"]
    names = [var["name"] for var in env]

    runner, _ = await run(tmp_path, pod([printer(env, args, names)]), CannedApi({}, {}))

    assert printed(runner) == {
        "args": ["late", "alphaalpha-b", "$(A)", "$(NOPE)", "$(LATE)", "$alpha"],
        "env": {
            "A": "alpha",
            "B": "alpha-b",
            "ESCAPED": "$(A)",
            "UNKNOWN": "$(NOPE)",
            "EARLY": "$(LATE)",  # LATE was not defined yet when EARLY was
            "LATE": "late",
            "DOLLARS": "$ $$ $x $",
            "UNCLOSED": "$(A",
        },
    }


async def test_env_from_config_maps_and_secrets_with_prefixes_optional_refs_and_overrides(
    tmp_path: Path,
) -> None:
    api = CannedApi(
        config_maps={"settings": {"plain": "p", "1st": "one", "with.dot": "d", "with-dash": "h"}},
        secrets={"creds": {"password": "pw", "user": "u"}},
    )
    names = ["CM_plain", "CM_1st", "CM_with.dot", "CM_with-dash", "password", "user", "USER_REF", "KEY_REF"]
    names += ["GONE", "NO_KEY", "FROM_ENV_FROM", "optional"]
    container = printer(
        env=[
            {"name": "CM_plain", "value": "overridden"},
            {"name": "USER_REF", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
            {"name": "KEY_REF", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "1st"}}},
            {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
            {
                "name": "NO_KEY",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "no", "optional": True}},
            },
            {"name": "FROM_ENV_FROM", "value": "$(password)/$(CM_with.dot)"},
        ],
        args=[],
        names=names,
        envFrom=[
            {"prefix": "CM_", "configMapRef": {"name": "settings"}},
            {"secretRef": {"name": "creds"}},
            {"prefix": "optional", "configMapRef": {"name": "missing", "optional": True}},
        ],
    )

    runner, _ = await run(tmp_path, pod([container]), api)

    assert printed(runner)["env"] == {
        "CM_plain": "overridden",
        "CM_1st": "one",
        "CM_with.dot": "d",
        "CM_with-dash": "h",
        "password": "pw",
        "user": "u",
        "USER_REF": "u",
        "KEY_REF": "one",
        "FROM_ENV_FROM": "pw/d",
    }
    assert sorted(api.calls) == [
        f"/api/v1/namespaces/{NAMESPACE}/configmaps/missing",
        f"/api/v1/namespaces/{NAMESPACE}/configmaps/settings",
        f"/api/v1/namespaces/{NAMESPACE}/secrets/absent",
        f"/api/v1/namespaces/{NAMESPACE}/secrets/creds",
    ]


async def test_a_missing_required_secret_keeps_the_container_waiting_with_create_container_config_error(
    tmp_path: Path,
) -> None:
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "x"}}}]
    manifest = pod([printer(env, [], ["X"])])
    refs = FetchedRefs(CannedApi({}, {}), manifest)  # type: ignore[arg-type]
    await refs.refresh()
    config_error = asyncio.Event()

    def on_change(state: ContainerState) -> None:
        if state.reason == "CreateContainerConfigError":
            config_error.set()

    runner = LocalPodRunner(
        manifest,
        workdir=tmp_path / "pod",
        refs=refs,
        on_change=on_change,
        wait_when_unstartable=True,
        retry_seconds=0.05,
    )
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(TIMEOUT):
        await config_error.wait()
    await asyncio.sleep(0.3)  # several retries: it keeps waiting
    assert runner.container_states()[0].state == "waiting"
    assert runner.container_states()[0].reason == "CreateContainerConfigError"
    await runner.kill("Deleted")
    await task


async def test_volumes_from_secrets_config_maps_downward_api_and_empty_dir(tmp_path: Path) -> None:
    api = CannedApi(
        config_maps={"conf": {"app.ini": "[a]\n", "other": "o"}}, secrets={"tls": {"tls.key": "KEY"}}
    )
    volumes = (
        {"name": "conf", "configMap": {"name": "conf", "items": [{"key": "app.ini", "path": "sub/app.ini"}]}},
        {"name": "tls", "secret": {"secretName": "tls"}},
        {"name": "opt", "secret": {"secretName": "absent", "optional": True}},
        {
            "name": "info",
            "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]},
        },
        {"name": "scratch", "emptyDir": {}},
    )
    mounts = [
        {"name": "conf", "mountPath": "/etc/app"},
        {"name": "tls", "mountPath": "/tls"},
        {"name": "opt", "mountPath": "/opt-secret"},
        {"name": "info", "mountPath": "/info"},
        {"name": "scratch", "mountPath": "/scratch"},
    ]
    script = (
        "for f in /etc/app/sub/app.ini /tls/tls.key /info/name; do cat $f; echo; done; "
        "ls /opt-secret | wc -l; cat /scratch/from-init"
    )
    init = {"name": "init", "image": "x", "command": ["sh", "-c", "echo handed-over > /scratch/from-init"],
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}  # fmt: skip
    main = {"name": "main", "image": "x", "command": ["sh", "-c", script], "volumeMounts": mounts}

    runner, _ = await run(tmp_path, pod([main], volumes, initContainers=[init]), api)

    assert runner.log_path("main").read_text().split() == ["[a]", "KEY", "p", "0", "handed-over"]
    key_file = tmp_path / "pod" / "volumes" / "tls" / "tls.key"
    assert stat.S_IMODE(key_file.stat().st_mode) & 0o444 == 0o444
    assert referenced(pod([main], volumes)) == ({"conf"}, {"tls", "absent"})


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("exit 0", {"exitCode": 0, "reason": "Completed"}),
        ("exit 3", {"exitCode": 3, "reason": "Error"}),
        ("kill -TERM $$$$", {"exitCode": 143, "reason": "Error"}),
        ("kill -KILL $$$$", {"exitCode": 137, "reason": "Error"}),
    ],
)
async def test_exit_codes_and_reasons_in_the_status_written(
    tmp_path: Path, script: str, expected: dict[str, Any]
) -> None:
    main = {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}
    manifest = pod([main])

    _, states = await run(tmp_path, manifest, CannedApi({}, {}))

    document = container_status(main, ContainerRecord(states[-1]), "u-1")
    terminated = document["state"]["terminated"]
    assert {"exitCode": terminated["exitCode"], "reason": terminated["reason"]} == expected
    assert document["ready"] is False
    assert document["started"] is False
    assert document["image"] == "busybox:1.36"
    assert document["containerID"].startswith("local://")
    assert document["imageID"].startswith("busybox:1.36@sha256:")
