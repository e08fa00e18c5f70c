"""The local runner's pure rules: expansion, quantities, downward API, env, mounts, spec checks, outcome."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.domain.quantity import divide_up, parse_quantity
from dispatcher.executors.local.pod.environment import ContainerConfigError, PodSources, declared_environment
from dispatcher.executors.local.pod.expansion import expand_with
from dispatcher.executors.local.pod.fields import NodeCapacity, Resources, field_value, resource_value
from dispatcher.executors.local.pod.outcome import pod_outcome
from dispatcher.executors.local.pod.processes import exit_status
from dispatcher.executors.local.pod.spec import parse_pod
from dispatcher.executors.local.pod.volumes import PathRewriter
from dispatcher.executors.local.runner import ContainerState, PodSpecError, StaticPodRefs

NODE = NodeCapacity(cpu=Fraction(8), memory=Fraction(16 * 2**30), ephemeral_storage=Fraction(100 * 10**9))


def pod(containers=None, *, init=(), volumes=(), **spec):
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"b": "2", "a": 'say "hi"'}},
        "spec": {
            "containers": [{"name": "main", "command": ["true"]}] if containers is None else containers,
            "initContainers": list(init),
            "volumes": list(volumes),
            **spec,
        },
    }


# --- $(VAR) expansion -------------------------------------------------------------------------


VARS = {"VAR_A": "A", "VAR_B": "B", "EMPTY": "", "DOLLAR": "$"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-$(VAR_B)", "A-B"),
        ("$(VAR_A)$(VAR_B)", "AB"),
        ("$(EMPTY)x", "x"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$(VAR_A", "$(VAR_A"),  # unclosed reference stays
        ("$$(VAR_A)", "$(VAR_A)"),  # escaped reference
        ("$$$(VAR_A)", "$A"),
        ("$$$$(VAR_A)", "$$(VAR_A)"),
        ("$$", "$"),
        ("$", "$"),
        ("x$", "x$"),
        ("$VAR_A", "$VAR_A"),  # shell syntax is not Kubernetes syntax
        ("${VAR_A}", "${VAR_A}"),
        ("$()", "$()"),
        ("$(DOLLAR)(VAR_A)", "$(VAR_A)"),  # expanded values are not expanded again
        ("(VAR_A)$", "(VAR_A)$"),
    ],
)
def test_expansion_follows_kubernetes_rules(text, expected):
    assert expand_with(text, VARS) == expected


@given(st.text())
def test_doubling_every_dollar_escapes_any_text(text):
    assert expand_with(text.replace("$", "$$"), VARS) == text


@given(st.text().filter(lambda text: "$" not in text))
def test_text_without_references_is_unchanged(text):
    assert expand_with(text, VARS) == text


# --- quantities and the downward API --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("1", Fraction(1)),
        ("1.5", Fraction(3, 2)),
        (".5", Fraction(1, 2)),
        ("64Mi", Fraction(64 * 2**20)),
        ("1Gi", Fraction(2**30)),
        ("2k", Fraction(2000)),
        ("2e3", Fraction(2000)),
        ("1E-3", Fraction(1, 1000)),
        ("100n", Fraction(1, 10**7)),
        (2, Fraction(2)),
        (0.5, Fraction(1, 2)),
        ("0", Fraction(0)),
    ],
)
def test_quantities_parse_exactly(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "Ki", "1KB", "1e", "1e999999999", "9" * 65])
def test_invalid_quantities_are_named(text):
    with pytest.raises(ValueError, match="quantit"):
        parse_quantity(text)


def test_resources_divide_and_round_up():
    resources = Resources(limits={"cpu": Fraction(1, 4)}, requests={"cpu": Fraction(1, 4)})

    assert resource_value(resources, NODE, "limits.cpu", Fraction(1)) == "1"
    assert resource_value(resources, NODE, "requests.cpu", Fraction(1, 1000)) == "250"
    # Unset limits report the node's capacity, unset requests zero.
    assert resource_value(resources, NODE, "limits.memory", Fraction(2**20)) == str(16 * 1024)
    assert resource_value(resources, NODE, "requests.memory", Fraction(1)) == "0"
    assert divide_up(Fraction(3), Fraction(2)) == 2
    with pytest.raises(ValueError, match="divisor must be positive"):
        divide_up(Fraction(1), Fraction(0))


def test_requests_default_to_limits_as_the_api_server_defaults_them():
    plan = parse_pod(
        pod([{"name": "main", "command": ["x"], "resources": {"limits": {"memory": "1Gi", "cpu": 2}}}])
    )

    assert plan.containers[0].resources.requests == {"memory": Fraction(2**30), "cpu": Fraction(2)}


def test_field_values_and_label_files():
    fields = parse_pod(pod()).fields

    assert field_value(fields, "metadata.labels['b']") == "2"
    assert field_value(fields, "metadata.annotations['absent']") == ""
    assert field_value(fields, "metadata.labels") == 'a="say \\"hi\\""\nb="2"'
    assert field_value(fields, "spec.serviceAccountName") == "default"


# --- declared environment ------------------------------------------------------------------------


def sources(refs):
    plan = parse_pod(pod())
    return PodSources(refs=refs, pod=plan.fields, resources={"main": Resources({}, {})}, node=NODE)


def env_container(env=(), env_from=()):
    return parse_pod(
        pod([{"name": "main", "command": ["x"], "env": list(env), "envFrom": list(env_from)}])
    ).containers[0]


def test_env_entries_override_env_from_and_later_sources_override_earlier_ones():
    refs = StaticPodRefs(
        config_maps={"one": {"A": "1", "B": "1", "bad=key": "x"}, "two": {"B": "2"}},
        secrets={"s": {"TOKEN": b"\xff\xfe raw"}},
    )
    container = env_container(
        env=[{"name": "A", "value": "env-$(B)"}],
        env_from=[
            {"configMapRef": {"name": "one"}},
            {"configMapRef": {"name": "two"}},
            {"secretRef": {"name": "s"}, "prefix": "S_"},
        ],
    )

    env = declared_environment(container, sources(refs))

    assert env == {"A": "env-2", "B": "2", "S_TOKEN": "\udcff\udcfe raw"}
    assert (
        env["S_TOKEN"].encode("utf-8", "surrogateescape") == b"\xff\xfe raw"
    )  # bytes survive to the process


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"configMapKeyRef": {"name": "absent", "key": "k"}}, "env V: configmap 'absent' not found"),
        ({"configMapKeyRef": {"name": "cm", "key": "nope"}}, "env V: key 'nope' not found in configmap 'cm'"),
        ({"secretKeyRef": {"name": "absent", "key": "k"}}, "env V: secret 'absent' not found"),
    ],
)
def test_missing_required_refs_are_container_config_errors(entry, message):
    container = env_container(env=[{"name": "V", "valueFrom": entry}])

    with pytest.raises(ContainerConfigError, match=f"^{message}$"):
        declared_environment(container, sources(StaticPodRefs(config_maps={"cm": {"k": "v"}})))


def test_optional_refs_that_are_missing_leave_the_variable_unset():
    container = env_container(
        env=[
            {"name": "V", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": True}}}
        ],
        env_from=[{"secretRef": {"name": "absent", "optional": True}}],
    )

    assert declared_environment(container, sources(StaticPodRefs(config_maps={"cm": {}}))) == {}


# --- mountPath rewriting -------------------------------------------------------------------------


REWRITE = PathRewriter(
    {"/out": Path("/host/vol/out"), "/data": Path("/host/d"), "/data/in": Path("/host/in")}
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/out", "/host/vol/out"),
        ("/out/", "/host/vol/out/"),
        ("/out/x/y", "/host/vol/out/x/y"),
        ("OUT=/out", "OUT=/host/vol/out"),
        ("a:/out:/data/in/f", "a:/host/vol/out:/host/in/f"),
        ("cat /out/x > /data/y", "cat /host/vol/out/x > /host/d/y"),
        ('{"path": "/out/k"}', '{"path": "/host/vol/out/k"}'),
        ("/outdir", "/outdir"),
        ("/out.txt", "/out.txt"),
        ("/out-2", "/out-2"),
        ("/data/out", "/host/d/out"),  # under /data; one pass, so the /out inside is left alone
        ("s3://bucket/out", "s3://bucket/out"),
        ("./out", "./out"),
        ("/in/data", "/in/data"),
        ("out", "out"),
        ("/data/input", "/host/d/input"),  # under /data, not /data/in
    ],
)
def test_mount_paths_are_replaced_only_as_whole_paths(text, expected):
    assert REWRITE(text) == expected


@given(st.text().filter(lambda text: "/" not in text))
def test_text_without_a_slash_is_never_rewritten(text):
    assert REWRITE(text) == text


def test_a_rewriter_without_mounts_changes_nothing():
    assert PathRewriter({})("/out/x") == "/out/x"


# --- pod spec checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"metadata": {}, "spec": {"containers": []}}, "metadata.name must be a non-empty string"),
        (pod([]), "spec.containers must list at least one container"),
        (pod([{"name": "Main", "command": ["x"]}]), r"spec.containers\[0\].name must be a DNS-1123 label"),
        (pod([{"name": "../x", "command": ["x"]}]), "must be a DNS-1123 label"),
        (
            pod([{"name": "a", "command": ["x"]}], init=[{"name": "a", "command": ["x"]}]),
            "container names must be unique in the pod, repeated: a",
        ),
        (
            pod([{"name": "a", "command": ["x"], "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]),
            r"volumeMounts\[0\].name 'v' is not a volume of this pod",
        ),
        (
            pod(
                [{"name": "a", "command": ["x"], "volumeMounts": [{"name": "v", "mountPath": "/"}]}],
                volumes=[{"name": "v", "emptyDir": {}}],
            ),
            "mountPath must be an absolute path other than '/'",
        ),
        (
            pod(
                [
                    {
                        "name": "a",
                        "command": ["x"],
                        "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "../up"}],
                    }
                ],
                volumes=[{"name": "v", "emptyDir": {}}],
            ),
            r"subPath must be a relative path without '..', got '../up'",
        ),
        (
            pod(
                volumes=[
                    {"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "/etc/passwd"}]}}
                ]
            ),
            r"spec.volumes\[0\].configMap.items\[0\].path must be a relative path",
        ),
        (
            pod(
                [
                    {
                        "name": "a",
                        "command": ["x"],
                        "env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "spec.x"}}}],
                    }
                ]
            ),
            "unsupported fieldPath 'spec.x'",
        ),
        (
            pod(
                [
                    {
                        "name": "a",
                        "command": ["x"],
                        "env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}],
                    }
                ]
            ),
            "unsupported fieldPath 'metadata.labels'",  # whole maps only in downwardAPI volumes
        ),
        (
            pod([{"name": "a", "command": ["x"], "env": [{"name": "V", "value": 3}]}]),
            r"env\[0\].value must be a string, got 3",
        ),
        (
            pod([{"name": "a", "command": ["x"], "resources": {"limits": {"cpu": "lots"}}}]),
            "invalid quantity 'lots'",
        ),
        (
            pod([{"name": "a", "command": ["x"], "restartPolicy": "Always"}]),
            "may only be 'Always', on an init container",
        ),
        (pod(restartPolicy="Sometimes"), "spec.restartPolicy must be Never, OnFailure or Always"),
        (pod(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds must be a positive number"),
    ],
)
def test_malformed_pods_are_rejected_with_the_offending_field(manifest, message):
    with pytest.raises(PodSpecError, match=message):
        parse_pod(manifest)


def test_a_pod_without_command_is_valid_it_just_cannot_run_locally():
    plan = parse_pod(pod([{"name": "main", "image": "busybox"}]))

    assert plan.containers[0].command is None


# --- outcome ---------------------------------------------------------------------------------------------


def terminated(name, exit_code, *, init=False, reason=None, signal=None):
    reason = reason or ("Completed" if exit_code == 0 else "Error")
    return ContainerState(
        name, init, "terminated", exit_code=exit_code, reason=reason, signal=signal, message="m"
    )


SIDECAR_POD = parse_pod(
    pod(
        [{"name": "main", "command": ["x"]}, {"name": "second", "command": ["x"]}],
        init=[
            {"name": "side", "command": ["x"], "restartPolicy": "Always"},
            {"name": "setup", "command": ["x"]},
        ],
    )
)


def test_sidecar_exit_status_does_not_decide_the_phase():
    states = {
        "side": terminated("side", 143, init=True, signal=15),
        "setup": terminated("setup", 0, init=True),
        "main": terminated("main", 0),
        "second": terminated("second", 0),
    }

    outcome = pod_outcome(SIDECAR_POD, states, None)

    assert (outcome.phase, outcome.reason, outcome.message) == ("Succeeded", None, None)
    assert [state.name for state in outcome.init_containers] == ["side", "setup"]


def test_failures_are_summarised_and_a_kill_overrides_everything():
    states = {
        "side": terminated("side", 0, init=True),
        "setup": terminated("setup", 0, init=True),
        "main": terminated("main", 137, signal=9),
        "second": terminated("second", 127, reason="ContainerCannotRun"),
    }

    failed = pod_outcome(SIDECAR_POD, states, None)
    killed = pod_outcome(SIDECAR_POD, {**states, "main": terminated("main", 0)}, ("DeadlineExceeded", "late"))

    assert failed.phase == "Failed"
    assert (
        failed.message
        == "container main was killed by signal 9 (exit code 137); container second cannot run: m"
    )
    assert (killed.phase, killed.reason, killed.message) == ("Failed", "DeadlineExceeded", "late")


def test_a_sidecar_that_cannot_start_fails_the_pod():
    waiting = ContainerState("main", False, "waiting")
    states = {
        "side": terminated("side", 128, init=True, reason="ContainerCannotRun"),
        "setup": ContainerState("setup", True, "waiting"),
        "main": waiting,
        "second": waiting,
    }

    outcome = pod_outcome(SIDECAR_POD, states, None)

    assert outcome.message == "sidecar container side cannot run: m"


@pytest.mark.parametrize(
    ("returncode", "status"), [(0, (0, None)), (3, (3, None)), (-9, (137, 9)), (-15, (143, 15))]
)
def test_exit_status_maps_signals_to_128_plus_n(returncode, status):
    assert exit_status(returncode) == status
