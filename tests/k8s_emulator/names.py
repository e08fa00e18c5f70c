"""Kubernetes' name and label rules (DNS-1123, qualified names) and generateName suffixes."""

from __future__ import annotations

import re
import secrets

# Kubernetes' alphabet for random name suffixes: no vowels (no accidental words), no 0/1/3 (look-alikes).
SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 5
MAX_GENERATE_NAME_PREFIX = 63 - SUFFIX_LENGTH

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")

LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
)
SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com')"
)


def random_suffix() -> str:
    """Five characters from Kubernetes' generateName alphabet."""
    return "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def generate_name(prefix: str) -> str:
    """The name the apiserver makes from generateName *prefix* (the prefix is cut to leave room)."""
    return prefix[:MAX_GENERATE_NAME_PREFIX] + random_suffix()


def dns1123_label_errors(value: str) -> list[str]:
    """Why *value* is not a DNS-1123 label (namespaces, Job names, container names); [] when it is."""
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.fullmatch(value):
        errors.append(LABEL_MESSAGE)
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Why *value* is not a DNS-1123 subdomain (most object names); [] when it is."""
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errors.append(SUBDOMAIN_MESSAGE)
    return errors


def label_key_errors(key: str) -> list[str]:
    """Why *key* is not a valid label/annotation key (`[prefix/]name`); [] when it is."""
    prefix, _, name = key.rpartition("/")
    errors = []
    if "/" in key and not prefix:
        errors.append("prefix part must be non-empty")
    if prefix:
        errors.extend(f"prefix part {e}" for e in dns1123_subdomain_errors(prefix))
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.fullmatch(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    """Why *value* is not a valid label value; [] when it is (the empty string is valid)."""
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if value and not _QUALIFIED_NAME.fullmatch(value):
        errors.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return errors


def config_key_errors(key: str) -> list[str]:
    """Why *key* is not a valid ConfigMap/Secret data key; [] when it is."""
    if len(key) > 253:
        return ["must be no more than 253 characters"]
    if not _CONFIG_KEY.fullmatch(key) or key in {".", ".."}:
        return ["a valid config key must consist of alphanumeric characters, '-', '_' or '.'"]
    return []
