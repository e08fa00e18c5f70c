"""The files the local stack writes, without starting a server: stack.env as a shell reads it, the
certificates of the control plane's CA, and the error for a binary `make servers` has not built."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bucketrun.devtools.control_plane import ServersNotBuiltError, find_binaries
from bucketrun.devtools.kube_pki import ClusterPki
from bucketrun.devtools.stack import read_env, write_env

AWKWARD = {
    "PLAIN": "amqp://guest:guest@127.0.0.1:5672/",
    "SPACES": "a value with spaces",
    "QUOTES": 'it\'s "quoted" $HOME `date` \\',
    "EMPTY": "",
}


def test_stack_env_is_read_by_a_shell_as_written(tmp_path: Path) -> None:
    path = tmp_path / "stack.env"
    write_env(path, AWKWARD)
    script = f'set -a; . "{path}"; set +a; ' + "; ".join(f'printf "%s\\0" "${key}"' for key in AWKWARD)
    shell = subprocess.run(["bash", "-c", script], capture_output=True, check=True, timeout=30, env={})
    assert shell.stdout.decode().split("\0")[:-1] == list(AWKWARD.values())
    assert read_env(path) == AWKWARD
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_missing_binary_is_named_with_make_servers(tmp_path: Path) -> None:
    with pytest.raises(ServersNotBuiltError) as raised:
        find_binaries(tmp_path)
    assert f"etcd is not built: no executable {tmp_path / 'etcd'}" in str(raised.value)
    assert "make servers" in str(raised.value)


def test_a_binary_without_its_version_stamp_counts_as_missing(tmp_path: Path) -> None:
    for name in ("etcd", "etcdctl"):
        binary = tmp_path / name
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
        (tmp_path / f"{name}.version").write_text("v3.6.17\n")
    (tmp_path / "kube-apiserver").write_text("#!/bin/sh\n")
    (tmp_path / "kube-apiserver").chmod(0o755)
    with pytest.raises(ServersNotBuiltError, match=r"kube-apiserver is not built: .*kube-apiserver\.version"):
        find_binaries(tmp_path)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_client_certificate_names_user_and_groups_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    pki = ClusterPki(tmp_path)
    pair = pki.issue_client_cert("system:node:n1", ["system:nodes"])
    cert = load(pair.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:nodes"
    ]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(load(pki.ca.cert))
    assert pair.key.stat().st_mode & 0o777 == 0o600


def test_serving_certificate_carries_its_addresses(tmp_path: Path) -> None:
    pki = ClusterPki(tmp_path)
    pair = pki.issue_serving_cert("node-agent", ["127.0.0.1", "10.96.0.1"], ["localhost"])
    names = load(pair.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.96.0.1"),
    ]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    load(pair.cert).verify_directly_issued_by(load(pki.ca.cert))


def test_the_ca_is_kept_across_starts_and_kubeconfigs_embed_it(tmp_path: Path) -> None:
    first = ClusterPki(tmp_path).ca.cert.read_bytes()
    pki = ClusterPki(tmp_path)
    assert pki.ca.cert.read_bytes() == first
    kubeconfig = pki.write_token_kubeconfig(tmp_path / "k", "https://127.0.0.1:6443", "u", "tok", "ns")
    document = yaml.safe_load(kubeconfig.read_text())
    assert document["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert document["users"][0]["user"] == {"token": "tok"}
    assert document["contexts"][0]["context"]["namespace"] == "ns"
