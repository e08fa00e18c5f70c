"""Faults the node agent can inject, and their control surface.

- `unreachable`: the node stops renewing its Lease and posting its status, stops writing pod statuses
  and stops serving logs (the port is closed), so the node lifecycle controller marks it NotReady
  (Ready=Unknown) after its grace period. Clearing it resumes everything at once.
- `failing_images`: image patterns (fnmatch, e.g. `registry.invalid/*`) whose pull fails: a container
  with such an image waits with ErrImagePull, then ImagePullBackOff, until the fault is cleared.
- `config_errors`: pod patterns (`namespace/name`, fnmatch) whose containers wait with
  CreateContainerConfigError for as long as the fault stands (a config error that persists).
- `oom`: pod patterns (`namespace/name`) whose running containers are OOM-killed at once (reason
  OOMKilled, exit code 137), whatever their memory limit.

And knobs the test suite drives as it drives the emulator's kubelet (its modes off, instant, run):
- `hold`: pods bound to the node are not started; they stay Pending (ContainerCreating) until it is
  cleared. Pods already running go on.
- `instant`: pods are not run: each ends at once, its init containers with exit code 0 and its
  containers with the exit code in the annotation `emulator.bucketrun.io/exit-code` (default 0; the
  name the suite already writes), Succeeded or Failed. An image that `failing_images` names still
  holds the pod in ImagePullBackOff first.
- `max_running`: at most this many pods run at once (0: no limit); the others wait Pending for a slot.

Set them with the CLI flags at start, with `NodeAgent.set_faults`, or over the agent's control
endpoint: `GET /faults` returns them as JSON, `PUT /faults` replaces the fields its JSON body names,
and `GET /state` returns them with the counts of pods `running` and `pending` (held or waiting for a
slot).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

INSTANT_EXIT_CODE = "emulator.bucketrun.io/exit-code"
"""The pod annotation whose value an `instant` pod's containers end with (the suite's existing name)."""


@dataclass(frozen=True)
class Faults:
    """The faults in force (none by default)."""

    unreachable: bool = False
    """The node goes silent: no Lease, node status, pod status or log serving."""
    failing_images: tuple[str, ...] = ()
    """Image patterns whose pulls fail (ErrImagePull, then ImagePullBackOff)."""
    config_errors: tuple[str, ...] = ()
    """`namespace/name` pod patterns whose containers wait with CreateContainerConfigError."""
    oom: tuple[str, ...] = ()
    """`namespace/name` pod patterns whose running containers are OOM-killed."""
    hold: bool = False
    """Bound pods are not started (they stay Pending)."""
    instant: bool = False
    """Pods end at once without running, with the exit code of their INSTANT_EXIT_CODE annotation."""
    max_running: int = 0
    """Pods running at once (0: no limit)."""

    def __post_init__(self) -> None:
        for name in ("unreachable", "hold", "instant"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")  # noqa: TRY004 - a bad value, reported as the JSON body's
        if (
            isinstance(self.max_running, bool)
            or not isinstance(self.max_running, int)
            or self.max_running < 0
        ):
            raise ValueError(
                f"max_running must be a whole number >= 0 (0: no limit), got {self.max_running!r}"
            )
        for name in ("failing_images", "config_errors", "oom"):
            patterns = getattr(self, name)
            if not isinstance(patterns, tuple) or not all(isinstance(p, str) and p for p in patterns):
                raise ValueError(f"{name} must be a list of non-empty patterns, got {patterns!r}")

    def pull_error(self, image: str) -> str | None:
        """Why pulling *image* fails under the image-pull fault, or None."""
        if not _matches(image, self.failing_images):
            return None
        return (
            f'failed to pull and unpack image "{image}": not found (the node agent\'s failing_images fault)'
        )

    def config_error(self, namespace: str, name: str) -> bool:
        """True if the pod's containers must wait with CreateContainerConfigError."""
        return _matches(f"{namespace}/{name}", self.config_errors)

    def admits(self, running: int) -> bool:
        """True if a pod may start now, *running* pods running already."""
        return not self.hold and (self.max_running == 0 or running < self.max_running)

    def oom_kill(self, namespace: str, name: str) -> bool:
        """True if the pod's running containers are to be OOM-killed."""
        return _matches(f"{namespace}/{name}", self.oom)

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """These faults with the fields named in *changes* replaced; ValueError names an unknown field."""
        unknown = sorted(set(changes) - set(FAULT_FIELDS))
        if unknown:
            raise ValueError(f"unknown fault field(s) {', '.join(unknown)}; known: {', '.join(FAULT_FIELDS)}")
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in changes.items()
        }
        return replace(self, **values)

    def as_json(self) -> dict[str, Any]:
        """The faults as a JSON object (lists for patterns)."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }


def _matches(text: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns)


FAULT_FIELDS = tuple(field.name for field in fields(Faults))
"""The names a `PUT /faults` body may set."""
