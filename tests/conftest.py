"""Shared pytest set-up: the real-server backends, a summary of which ones this run used, a check that
the run left no process behind, and process-wide logging set-up put back after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from dispatcher.runtime.logs import LIBRARY_LOGGERS
from tests.backends import chosen_backends
from tests.backends.leaks import descendants

pytest_plugins = [
    "tests.backends.rabbitmq",
    "tests.backends.s3",
    "tests.backends.minio_server",
    "tests.backends.kubernetes",
]

_leftovers: dict[int, str] = {}


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A test that runs a CLI command in-process configures logging for the whole process (as the
    command must); put structlog and the stdlib loggers back so later tests see the defaults."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process started by a test or fixture outlived it (fixtures must clean up)."""
    _leftovers.update(descendants())
    if _leftovers and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the backends the run really used, and any process left behind."""
    choices = chosen_backends()
    terminalreporter.section("backends")
    if not choices:
        terminalreporter.write_line("no server backend was needed by the selected tests")
    for choice in choices:
        terminalreporter.write_line(f"{choice.kind:<17} {choice.name:<22} {choice.detail}")
    if _leftovers:
        terminalreporter.section("processes left behind", red=True)
        for pid, cmdline in sorted(_leftovers.items()):
            terminalreporter.write_line(f"{pid:>8} {cmdline[:160]}", red=True)
    else:
        terminalreporter.write_line("no process left behind")
