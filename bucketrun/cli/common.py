"""What every command group shares: exit codes, the handler a command sets, and loading the settings.

Each command group module (``services``, ``render``, ``run``, ``jobs``, ``events``) adds its parsers in
``add_commands`` and sets ``handler`` on each leaf command. A handler returns ``(text to print, exit
code)`` and prints nothing itself, so tests can call it and ``main`` alone picks stdout or stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Final, TypeAlias

from dispatcher.runtime.settings import Settings, SettingsError, load_services_settings

EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2

Handler: TypeAlias = Callable[[argparse.Namespace], tuple[str, int]]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class UsageError(Exception):
    """Settings or arguments that cannot work: ``main`` prints the message and exits 2, nothing contacted."""


def load_settings() -> Settings:
    """The settings from the environment and ``BUCKETRUN_CONFIG``; a bad value is a :class:`UsageError`."""
    try:
        return Settings.load()
    except SettingsError as error:
        raise UsageError(f"error: {error}") from error


def add_cluster_option(parser: argparse.ArgumentParser) -> None:
    """``--cluster ID``, for every command that loads FDL files."""
    parser.add_argument(
        "--cluster",
        metavar="ID",
        help="the OSCAR cluster id whose definition is used where an FDL defines a service for several "
        "clusters (default: BUCKETRUN_SERVICES__CLUSTER; services defined once load whatever their "
        "cluster)",
    )


def chosen_cluster(option: str | None, settings: Settings | None = None) -> str | None:
    """The cluster ``--cluster`` names, else ``BUCKETRUN_SERVICES__CLUSTER`` (from ``settings`` when the
    command loaded them; else read alone, for commands that need no store). A bad value is a
    :class:`UsageError`."""
    if option is not None:
        if not option.strip():
            raise UsageError("error: --cluster needs a cluster id")
        return option
    if settings is not None:
        return settings.services.cluster
    try:
        return load_services_settings().cluster
    except SettingsError as error:
        raise UsageError(f"error: {error}") from error


def with_cluster(settings: Settings, option: str | None) -> Settings:
    """``settings`` with ``--cluster`` (when given) in place of ``BUCKETRUN_SERVICES__CLUSTER``."""
    cluster = chosen_cluster(option, settings)
    return settings.model_copy(update={"services": settings.services.model_copy(update={"cluster": cluster})})
