"""What every command group shares: exit codes, the handler a command sets, and loading the settings.

Each command group module (``services``, ``render``, ``run``, ``jobs``, ``events``) adds its parsers in
``add_commands`` and sets ``handler`` on each leaf command. A handler returns ``(text to print, exit
code)`` and prints nothing itself, so tests can call it and ``main`` alone picks stdout or stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Final, TypeAlias

from dispatcher.runtime.settings import Settings, SettingsError

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
