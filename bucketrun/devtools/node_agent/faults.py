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

Set them with the CLI flags at start, with `NodeAgent.set_faults`, or over the agent's control
endpoint: `GET /faults` returns them as JSON, `PUT /faults` replaces the fields its JSON body names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


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

    def __post_init__(self) -> None:
        if not isinstance(self.unreachable, bool):
            raise ValueError(f"unreachable must be true or false, got {self.unreachable!r}")  # noqa: TRY004 - a bad value, reported as the JSON body's
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
