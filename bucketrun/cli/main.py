"""The `bucketrun` command line: the parser assembled from one module per command group, and `main`.

The groups are ``services`` (validate, apply, list, delete), ``render``, ``run`` (dispatcher,
watcher, serve, poll, demo), ``jobs`` (list, show, logs, delete), ``events`` (inspect), ``stack``
(run, up, down: the local stack, a developer tool) and ``api`` (the OSCAR-compatible API). Each adds
its own parsers and sets a handler on each command (``bucketrun.cli.common``); a new command goes
into the group it belongs to, or a new module added to ``build_parser``. The groups never import this module.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bucketrun.cli import api, events, jobs, render, run, services, stack
from bucketrun.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, Handler, UsageError
from dispatcher import __version__
from dispatcher.domain.events import EventError
from dispatcher.fdl import ServiceDefinitionError
from dispatcher.rendering.context import RenderError

DESCRIPTION = """\
bucketrun turns uploads to MinIO/S3 buckets into Kubernetes Jobs that run an OSCAR service's script
on the uploaded file. These commands help set it up and debug it; the dry runs contact no server."""

EPILOG = """\
examples:
  bucketrun services validate services/            check every FDL file in a directory
  bucketrun render --fdl svc.yaml --service upper --bucket photos --key in/cat.jpg
  mc event ... | bucketrun events inspect - --fdl services/
  BUCKETRUN_SERVICES__PATHS=services/ bucketrun dispatcher

exit codes: 0 ok, 1 invalid input (the message names the file, service and field), 2 usage error.
Documentation: README.md; template variables: job_templates/README.md.
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; the groups are added in the order ``bucketrun --help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="bucketrun",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bucketrun {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (services, render, run, jobs, events, stack, api):
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    try:
        text, code = handler(args) if handler is not None else (parser.format_help(), EXIT_OK)
    except UsageError as error:
        text, code = str(error), EXIT_USAGE
    except ServiceDefinitionError as error:
        text, code = "\n".join(f"error: {problem}" for problem in error.problems), EXIT_INVALID
    except (RenderError, EventError, KeyError, OSError) as error:
        text, code = f"error: {error.args[0] if isinstance(error, KeyError) else error}", EXIT_INVALID
    stream = sys.stdout if code == 0 else sys.stderr
    if text:
        print(text, file=stream)
    return code


if __name__ == "__main__":
    sys.exit(main())
