"""Read-only mapping fields for frozen pydantic models.

A frozen model only stops attribute assignment; a plain ``dict`` field could still be changed in place
and silently alter a definition other components already hashed or rendered. These fields hold a
``MappingProxyType`` instead, and serialise back to a ``dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, PlainSerializer, SecretStr

from dispatcher.fdl.names import check_env_name, check_label_key, check_label_value

V = TypeVar("V")


def freeze(mapping: Mapping[str, V]) -> Mapping[str, V]:
    """A read-only copy of ``mapping``, its keys in sorted order (so equal mappings print alike)."""
    return MappingProxyType({key: mapping[key] for key in sorted(mapping)})


def empty() -> Mapping[str, Any]:
    """A fresh empty read-only mapping (a default factory: pydantic would try to copy a shared default)."""
    return MappingProxyType({})


def _as_dict(mapping: Mapping[str, V]) -> dict[str, V]:
    return dict(mapping)


LabelKey = Annotated[str, AfterValidator(check_label_key)]
LabelValue = Annotated[str, AfterValidator(check_label_value)]
EnvName = Annotated[str, AfterValidator(check_env_name)]

Labels = Annotated[Mapping[LabelKey, LabelValue], AfterValidator(freeze), PlainSerializer(_as_dict)]
"""Kubernetes labels (or a node selector): validated keys and values."""

Annotations = Annotated[Mapping[LabelKey, str], AfterValidator(freeze), PlainSerializer(_as_dict)]
"""Kubernetes annotations: validated keys, free-text values."""

Variables = Annotated[Mapping[EnvName, str], AfterValidator(freeze), PlainSerializer(_as_dict)]
"""Environment variables: C-identifier names, string values."""

Secrets = Annotated[Mapping[EnvName, SecretStr], AfterValidator(freeze), PlainSerializer(_as_dict)]
"""Secret environment variables: C-identifier names, values that never print."""
