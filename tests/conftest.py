"""Shared pytest set-up: the real-server backends, and a summary of which ones this run used."""

from __future__ import annotations

import pytest

from tests.backends import chosen_backends

pytest_plugins = [
    "tests.backends.rabbitmq",
    "tests.backends.s3",
    "tests.backends.kubernetes",
]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the backends the run really used (the header of the closing summary)."""
    choices = chosen_backends()
    terminalreporter.section("backends")
    if not choices:
        terminalreporter.write_line("no server backend was needed by the selected tests")
    for choice in choices:
        terminalreporter.write_line(f"{choice.kind:<17} {choice.name:<22} {choice.detail}")
