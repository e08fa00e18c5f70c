"""The certificates and keys of the local Kubernetes control plane (``control_plane.py``): one CA that
signs every serving and client certificate, the ServiceAccount token key pair, and kubeconfigs.

Every component trusts this one CA both ways: the API server checks client certificates against it
(``--client-ca-file``) and the kubelet's serving certificate against it
(``--kubelet-certificate-authority``), so a node agent must serve with a certificate from
``issue_serving_cert``. A client certificate's subject is how the API server names its user: the
common name is the user, each organization a group (``system:masters`` is the superuser group).

Keys are ECDSA P-256 (fast to generate; the API server signs ServiceAccount tokens with ES256).
Private keys are written mode 0600. Nothing here is for production: the CA key sits next to the
certificates it signs.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY: Final = datetime.timedelta(days=365)
"""How long every certificate is valid (from an hour before it was issued, for clock skew)."""

_SKEW: Final = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(pem)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def file_stem(user: str) -> str:
    """A file name for *user* (``system:node:a`` → ``system-node-a``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", user)


def _subject(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class ClusterPki:
    """The CA under *directory* (created on first use, reused after) and what it issues there."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = KeyPair(directory / "ca.crt", directory / "ca.key")
        if not (self.ca.cert.is_file() and self.ca.key.is_file()):
            self._create_ca()
        self._ca_key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        self._ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())

    def _create_ca(self) -> None:
        key = _new_key()
        name = _subject("bucketrun-local-ca")
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_key(key, self.ca.key)
        _write_cert(cert, self.ca.cert)

    def _issue(
        self,
        stem: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        alt_names: Sequence[x509.GeneralName] = (),
    ) -> KeyPair:
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        if not isinstance(self._ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"the CA key {self.ca.key} is not an ECDSA key")
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
        )
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        pair = KeyPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        _write_key(key, pair.key)
        _write_cert(builder.sign(self._ca_key, hashes.SHA256()), pair.cert)
        return pair

    def issue_client_cert(self, user: str, groups: Sequence[str] = ()) -> KeyPair:
        """A client certificate the API server reads as *user* in *groups*."""
        stem = f"client-{file_stem(user)}"
        return self._issue(stem, _subject(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH)

    def issue_serving_cert(self, name: str, ips: Sequence[str], dns_names: Sequence[str] = ()) -> KeyPair:
        """A TLS serving certificate for *name*, valid for the IP addresses *ips* and *dns_names*."""
        alt_names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        alt_names += [x509.DNSName(dns) for dns in dns_names]
        stem = f"serving-{file_stem(name)}"
        return self._issue(stem, _subject(name), ExtendedKeyUsageOID.SERVER_AUTH, alt_names)

    def service_account_keys(self) -> KeyPair:
        """The key pair that signs (private) and verifies (public, in ``cert``) ServiceAccount tokens."""
        pair = KeyPair(self.directory / "sa.pub", self.directory / "sa.key")
        if not (pair.cert.is_file() and pair.key.is_file()):
            key = _new_key()
            _write_key(key, pair.key)
            public = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            pair.cert.write_bytes(public)
        return pair

    def write_kubeconfig(self, path: Path, server: str, user: str, client: KeyPair) -> Path:
        """A self-contained kubeconfig at *path* (certificates embedded) for *user* at *server*."""
        credentials = {"client-certificate-data": _b64(client.cert), "client-key-data": _b64(client.key)}
        return self._kubeconfig(path, server, user, credentials)

    def write_token_kubeconfig(self, path: Path, server: str, user: str, token: str, namespace: str) -> Path:
        """A kubeconfig at *path* authenticating with the bearer *token* (a ServiceAccount's), its
        context in *namespace*."""
        return self._kubeconfig(path, server, user, {"token": token}, namespace)

    def _kubeconfig(
        self, path: Path, server: str, user: str, credentials: dict[str, str], namespace: str | None = None
    ) -> Path:
        cluster, context = "bucketrun-local", f"{user}@bucketrun-local"
        in_context = {"cluster": cluster, "user": user} | ({"namespace": namespace} if namespace else {})
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster,
                    "cluster": {"server": server, "certificate-authority-data": _b64(self.ca.cert)},
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": context, "context": in_context}],
            "current-context": context,
            "preferences": {},
        }
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")
