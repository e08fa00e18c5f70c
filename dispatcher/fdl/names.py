"""Checks of the names a service definition carries into Kubernetes objects, S3 requests and shells.

Each ``check_*`` returns its argument unchanged or raises ``ValueError`` quoting the value, so it can
serve directly as a pydantic ``AfterValidator``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from dispatcher.fdl.errors import shown

_DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_DNS_LABEL_MAX: Final = 63
_DNS_SUBDOMAIN_MAX: Final = 253
# OSCAR's API binds service names with max=39: it derives longer object names from them, and so does
# bucketrun (ConfigMap, Job and Secret names carry the service name plus a suffix).
SERVICE_NAME_MAX: Final = 39

_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_NAME: Final = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_NAME_MAX: Final = 63
_LABEL_NAME_RULE: Final = "63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
_PROVIDER_ID: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")

# The distribution (Docker) reference grammar: [domain[:port]/]path[:tag][@digest].
_IMAGE_DOMAIN: Final = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?)"
)
_IMAGE_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE: Final = re.compile(
    rf"(?:{_IMAGE_DOMAIN}/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
_IMAGE_MAX: Final = 1024


def check_dns_label(name: str, *, max_length: int = _DNS_LABEL_MAX) -> str:
    """A DNS-1123 label: lower-case letters, digits and ``-``, alphanumeric at both ends, short enough."""
    if len(name) > max_length:
        raise ValueError(f"{shown(name)} is longer than {max_length} characters")
    if not _DNS_LABEL.fullmatch(name):
        raise ValueError(
            f"{shown(name)} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return name


def check_service_name(name: str) -> str:
    """A service name: a DNS-1123 label of at most ``SERVICE_NAME_MAX`` characters (OSCAR's rule)."""
    return check_dns_label(name, max_length=SERVICE_NAME_MAX)


def check_dns_subdomain(name: str) -> str:
    """A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters in all."""
    if len(name) > _DNS_SUBDOMAIN_MAX or not all(_DNS_LABEL.fullmatch(part) for part in name.split(".")):
        raise ValueError(f"{shown(name)} is not a DNS-1123 subdomain")
    return name


def check_bucket_name(name: str) -> str:
    """An S3 bucket name as both AWS and MinIO accept it (3-63 lower-case letters, digits, ``.``, ``-``)."""
    if not _BUCKET.fullmatch(name):
        raise ValueError(
            f"invalid bucket name {shown(name)}: 3-63 lower-case letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        raise ValueError(f"invalid bucket name {shown(name)}: '..', '.-' and '-.' are not allowed")
    if name.startswith("xn--") or name.endswith("-s3alias"):
        raise ValueError(f"invalid bucket name {shown(name)}: reserved prefix or suffix")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name
    raise ValueError(f"invalid bucket name {shown(name)}: looks like an IP address")


def check_env_name(name: str) -> str:
    """An environment variable name a POSIX shell can read: a C identifier."""
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(
            f"invalid variable name {shown(name)}: must be a C identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )
    return name


def _is_label_name(text: str) -> bool:
    return len(text) <= _LABEL_NAME_MAX and _LABEL_NAME.fullmatch(text) is not None


def check_label_key(key: str) -> str:
    """A Kubernetes label or annotation key: ``[DNS-subdomain prefix/]name``, name at most 63 characters."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        try:
            check_dns_subdomain(prefix)
        except ValueError:
            raise ValueError(
                f"invalid key {shown(key)}: prefix {shown(prefix)} is not a DNS subdomain"
            ) from None
    if not _is_label_name(name):
        raise ValueError(f"invalid key {shown(key)}: the name part must be 1-{_LABEL_NAME_RULE}")
    return key


def check_label_value(value: str) -> str:
    """A Kubernetes label value: empty, or up to 63 of ``[A-Za-z0-9-_.]`` with alphanumeric ends."""
    if value and not _is_label_name(value):
        raise ValueError(f"invalid label value {shown(value)}: must be empty or 1-{_LABEL_NAME_RULE}")
    return value


def check_provider_id(identifier: str) -> str:
    """The ``<id>`` of a storage provider reference such as ``minio.<id>``."""
    if not _PROVIDER_ID.fullmatch(identifier):
        raise ValueError(
            f"invalid storage provider id {shown(identifier)}: up to 63 letters, digits, '-' or '_'"
        )
    return identifier


def check_image(image: str) -> str:
    """A container image reference ``[registry[:port]/]path[:tag][@digest]`` (no URL scheme)."""
    if len(image) > _IMAGE_MAX or not _IMAGE.fullmatch(image):
        hint = ""
        if "://" in image:
            hint = (
                " (no URL scheme: 'docker://' is a Singularity/InterLink convention, not a Kubernetes image)"
            )
        raise ValueError(f"invalid image reference {shown(image)}{hint}")
    return image
