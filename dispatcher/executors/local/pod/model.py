"""The local runner's public value types: container states, the pod outcome, where refs come from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

ContainerPhase = Literal["waiting", "running", "terminated"]
PodPhase = Literal["Succeeded", "Failed"]

# Reasons as Kubernetes spells them in container statuses.
REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_CANNOT_RUN = "ContainerCannotRun"
REASON_POD_INITIALIZING = "PodInitializing"
REASON_CONTAINER_CREATING = "ContainerCreating"
REASON_BACK_OFF = "CrashLoopBackOff"
REASON_CREATE_CONFIG_ERROR = "CreateContainerConfigError"
REASON_ERR_IMAGE_PULL = "ErrImagePull"
REASON_IMAGE_PULL_BACK_OFF = "ImagePullBackOff"


class PodSpecError(ValueError):
    """The pod cannot be run at all: its manifest is malformed in a way the API server would reject.

    The message names the offending container, volume or field.
    """


@dataclass(frozen=True)
class ContainerState:
    """One container's state as Kubernetes reports it in `containerStatuses` / `initContainerStatuses`."""

    name: str
    init: bool
    """True for `spec.initContainers` (native sidecars included)."""
    state: ContainerPhase
    exit_code: int | None = None
    signal: int | None = None
    """The signal number when the process was killed by a signal (then exit_code is 128 + signal)."""
    reason: str | None = None
    """terminated: Completed | Error | ContainerCannotRun; waiting: PodInitializing | ContainerCreating |
    CrashLoopBackOff, and with ``wait_when_unstartable`` CreateContainerConfigError | ErrImagePull |
    ImagePullBackOff."""
    message: str | None = None
    started_at: datetime | None = None
    """Timezone-aware UTC."""
    finished_at: datetime | None = None
    """Timezone-aware UTC."""
    restart_count: int = 0
    last_terminated: ContainerState | None = None
    """On a CrashLoopBackOff waiting state: how the run before the restart ended (a status's lastState)."""


@dataclass(frozen=True)
class PodOutcome:
    """How one run of a pod ended."""

    phase: PodPhase
    reason: str | None
    """The kill reason (e.g. "DeadlineExceeded") when the pod was killed, None otherwise."""
    message: str | None
    """Human-readable summary of why the pod failed; None when it succeeded."""
    init_containers: tuple[ContainerState, ...]
    containers: tuple[ContainerState, ...]


class PodRefs(Protocol):
    """Where configMap/secret volumes and env refs come from (the emulator's store, or rendered objects).

    Refs that can also request ServiceAccount tokens (the node agent's) have a method
    `service_account_token(audience, expiration_seconds) -> bytes | None`; projected
    `serviceAccountToken` sources are written from it, and refused where it is missing.
    """

    def config_map(self, name: str) -> Mapping[str, str] | None:
        """The `data` of the ConfigMap called *name* in the pod's namespace, or None if there is none."""
        ...

    def secret(self, name: str) -> Mapping[str, bytes] | None:
        """The decoded `data` of the Secret called *name* in the pod's namespace, or None if there is none."""
        ...


@runtime_checkable
class ClaimRefs(Protocol):
    """Refs that can also read PersistentVolumeClaims and PersistentVolumes (the node agent's, and
    `StaticPodRefs`): what a persistentVolumeClaim volume needs. Others refuse such volumes."""

    def persistent_volume_claim(self, name: str) -> Mapping[str, Any] | None:
        """The PersistentVolumeClaim called *name* in the pod's namespace, or None if there is none."""
        ...

    def persistent_volume(self, name: str) -> Mapping[str, Any] | None:
        """The PersistentVolume called *name* (cluster-scoped), or None if there is none."""
        ...


@dataclass(frozen=True)
class StaticPodRefs:
    """A `PodRefs` and `ClaimRefs` backed by plain mappings: for the local executor's rendered objects
    and for tests."""

    config_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    claims: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """PersistentVolumeClaim documents by name."""
    persistent_volumes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """PersistentVolume documents by name."""

    def config_map(self, name: str) -> Mapping[str, str] | None:
        """The ConfigMap data called *name*, or None."""
        return self.config_maps.get(name)

    def secret(self, name: str) -> Mapping[str, bytes] | None:
        """The Secret data called *name*, or None."""
        return self.secrets.get(name)

    def persistent_volume_claim(self, name: str) -> Mapping[str, Any] | None:
        """The PersistentVolumeClaim called *name*, or None."""
        return self.claims.get(name)

    def persistent_volume(self, name: str) -> Mapping[str, Any] | None:
        """The PersistentVolume called *name*, or None."""
        return self.persistent_volumes.get(name)


class NoPodRefs:
    """A `PodRefs` that knows no ConfigMap or Secret (the default when the caller gives none)."""

    def config_map(self, name: str) -> Mapping[str, str] | None:
        """Always None."""
        return None

    def secret(self, name: str) -> Mapping[str, bytes] | None:
        """Always None."""
        return None
