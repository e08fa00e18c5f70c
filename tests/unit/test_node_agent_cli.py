"""The node agent's command line and its reading of a kubeconfig."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import yaml

from bucketrun.devtools.kube_pki import ClusterPki
from bucketrun.devtools.node_agent.__main__ import main, parse_args
from bucketrun.devtools.node_agent.api import KubeconfigError, load_kubeconfig
from bucketrun.devtools.node_agent.faults import Faults

REQUIRED = ["--kubeconfig", "k", "--tls-cert", "c", "--tls-key", "key", "--workdir", "w"]


def test_flags_become_options_with_faults() -> None:
    options = parse_args(
        [*REQUIRED, "--node-name", "n1", "--port", "0", "--pods", "20", "--fail-image", "bad/*",
         "--fail-image", "worse/*", "--config-error", "ns/p-*", "--oom", "ns/hog", "--unreachable",
         "--control-port", "0", "--max-grace-seconds", "2"]
    )  # fmt: skip

    assert (options.node_name, options.port, options.pods, options.control_port) == ("n1", 0, 20, 0)
    assert options.max_grace_seconds == 2.0
    assert options.faults == Faults(
        unreachable=True, failing_images=("bad/*", "worse/*"), config_errors=("ns/p-*",), oom=("ns/hog",)
    )
    assert options.kubeconfig == Path("k")


def test_help_explains_faults_and_a_negative_port_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("--kubelet-certificate-authority", "PUT", "ImagePullBackOff", "OOMKilled", "NotReady"):
        assert phrase in text

    with pytest.raises(SystemExit):
        parse_args([*REQUIRED, "--port", "-1"])
    assert "--port must not be negative, got -1" in capsys.readouterr().err


def test_an_unreadable_kubeconfig_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.kubeconfig"
    assert main([*REQUIRED[2:], "--kubeconfig", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_kubeconfig_with_inline_certificates_gives_a_client_tls_context(tmp_path: Path) -> None:
    pki = ClusterPki(tmp_path / "pki")
    client = pki.issue_client_cert("system:node:n1", ["system:nodes"])
    path = pki.write_kubeconfig(
        tmp_path / "node.kubeconfig", "https://127.0.0.1:6443", "system:node:n1", client
    )

    credentials = load_kubeconfig(path)

    assert credentials.server == "https://127.0.0.1:6443"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_kubeconfig_with_a_token_and_errors_naming_the_entry(tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:8080/"}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))

    credentials = load_kubeconfig(path)
    assert credentials.server == "http://127.0.0.1:8080"
    assert credentials.headers == {"Authorization": "Bearer abc"}

    with pytest.raises(KubeconfigError, match="no context named 'other'"):
        load_kubeconfig(path, "other")
    config["clusters"] = [
        {"name": "k", "cluster": {"certificate-authority-data": base64.b64encode(b"x").decode()}}
    ]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeconfigError, match="cluster 'k' has no server"):
        load_kubeconfig(path)
