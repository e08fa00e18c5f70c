"""Test backends: each fixture picks a real server (container, configured, or local) and says which.

The choice is recorded here so that the pytest summary lists what a run really tested against.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import warnings
from dataclasses import dataclass
from typing import Any

from bucketrun.devtools.moto_server import free_port, port_open

__all__ = [
    "BackendChoice",
    "chosen_backends",
    "docker_available",
    "free_port",
    "import_quietly",
    "port_open",
    "record_backend",
]

_chosen: dict[str, BackendChoice] = {}


@dataclass(frozen=True)
class BackendChoice:
    """Which server a backend fixture picked, and where it is."""

    kind: str  # "rabbitmq", "rabbitmq-private", "s3", "kubernetes"
    name: str  # e.g. "testcontainers", "env", "local", "moto", "emulator"
    detail: str  # endpoint or other human-readable location (never credentials)


def record_backend(kind: str, name: str, detail: str) -> BackendChoice:
    """Remember (and print) the backend chosen for *kind*; shown again in the terminal summary."""
    choice = BackendChoice(kind, name, detail)
    _chosen[kind] = choice
    print(f"\n[backend] {kind}: {name} ({detail})")
    return choice


def chosen_backends() -> list[BackendChoice]:
    """Every backend chosen so far in this session, in choice order."""
    return list(_chosen.values())


def docker_available() -> bool:
    """True only when a Docker engine answers (the client alone is not enough)."""
    if os.environ.get("BUCKETRUN_TEST_NO_DOCKER"):
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def import_quietly(module: str) -> Any:
    """Import a testcontainers module, silencing the DeprecationWarnings it raises at import time
    (its own decorators warn; with `filterwarnings = error` they would fail the fixture)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(module)
