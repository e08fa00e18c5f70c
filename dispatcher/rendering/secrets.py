"""A service's Secret: the one object that holds the values of its ``environment.secrets``.

Its Jobs reference it by name (``secretKeyRef``, and only when the service has secrets) and never carry
a value. Who writes it: ``bucketrun services apply`` in a cluster (the running components have no
access to Secrets), the dispatcher itself for the local executor (``Executor.provide_secrets``).

The invariant to keep: a value stays a ``SecretStr`` until the call that writes it, so no repr, log
line, plan or record can show it; ``plain_values`` is that one call's way out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from dispatcher.domain import constants as c
from dispatcher.fdl import ServiceDefinition


def secret_name(service: str) -> str:
    """Name of the Secret holding service *service*'s ``environment.secrets``."""
    return f"bucketrun-{service}-secrets"


@dataclass(frozen=True, slots=True)
class ServiceSecret:
    """The Secret one service's Jobs reference: its service, and values that never print."""

    service: str
    values: Mapping[str, SecretStr]

    @classmethod
    def of(cls, service: ServiceDefinition) -> ServiceSecret | None:
        """The service's Secret, or None when it has no ``environment.secrets`` (its Jobs reference none)."""
        return cls(service.name, service.secrets) if service.secrets else None

    @property
    def name(self) -> str:
        """The Secret's name (``bucketrun-<service>-secrets``)."""
        return secret_name(self.service)

    @property
    def labels(self) -> dict[str, str]:
        """Labels that say it is bucketrun's and whose (``services delete`` removes only such Secrets)."""
        return {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_SERVICE: self.service}

    def plain_values(self) -> dict[str, str]:
        """The values in clear, for the one call that writes them; never log or print the result."""
        return {key: value.get_secret_value() for key, value in self.values.items()}

    def same_values(self, data: Mapping[str, bytes]) -> bool:
        """Whether *data* (a Secret's decoded ``data``) holds exactly these keys and values."""
        return {key: value.encode() for key, value in self.plain_values().items()} == dict(data)


def service_secrets(services: Iterable[ServiceDefinition]) -> tuple[ServiceSecret, ...]:
    """The Secrets of those *services* that have secrets, in the order given."""
    return tuple(secret for service in services if (secret := ServiceSecret.of(service)) is not None)
