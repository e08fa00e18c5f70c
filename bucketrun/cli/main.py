"""The `bucketrun` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bucketrun.admin.commands import apply_services, delete_services, list_services
from bucketrun.cli.dry_run import EXIT_INVALID, inspect_events, render_manifests, validate_services
from dispatcher import __version__
from dispatcher.domain.errors import BucketrunError, StartupError
from dispatcher.domain.events import EventError
from dispatcher.fdl import ServiceDefinitionError
from dispatcher.poller.app import run_poller
from dispatcher.process.app import run_dispatcher
from dispatcher.rendering.context import RenderError, RenderSettings
from dispatcher.runtime.logs import configure_logging
from dispatcher.runtime.settings import Settings, SettingsError, describe_lines, environment_reference

if TYPE_CHECKING:
    from bucketrun.devtools.demo import DemoOptions

DESCRIPTION = """\
bucketrun turns uploads to MinIO/S3 buckets into Kubernetes Jobs that run an OSCAR service's script
on the uploaded file. These commands help set it up and debug it; the dry runs contact no server."""

EXIT_USAGE = 2

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
    """The full argument parser (also used to generate the README's command reference)."""
    parser = argparse.ArgumentParser(
        prog="bucketrun",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bucketrun {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    services = commands.add_parser("services", help="work with OSCAR service definitions (FDL)")
    services_commands = services.add_subparsers(dest="services_command", metavar="SUBCOMMAND", required=True)
    validate = services_commands.add_parser(
        "validate",
        help="load FDL files or directories, report problems and warnings, and test-render each service",
        description="Load OSCAR FDL files (or directories of *.yaml/*.yml), report every problem with its "
        "file, service and field, list the fields bucketrun ignores, and render each service's Job "
        "for a sample upload. No server is contacted.",
    )
    validate.add_argument("paths", nargs="+", type=Path, metavar="FDL", help="FDL file or directory")
    validate.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    _add_services_admin(services_commands)

    render = commands.add_parser(
        "render",
        help="print the ConfigMap and Job an upload would create (YAML), without creating them",
        description="Render the Kubernetes objects bucketrun would create for an upload of BUCKET/KEY "
        "to SERVICE. Presigned URLs are placeholders. No server is contacted.",
    )
    render.add_argument("--fdl", required=True, nargs="+", type=Path, help="FDL file(s) or directories")
    render.add_argument("--service", required=True, help="service name as in the FDL")
    render.add_argument("--bucket", required=True, help="bucket of the uploaded object")
    render.add_argument("--key", required=True, help="object key (not URL-escaped), e.g. in/photo.jpg")
    render.add_argument("--version-id", help="object version id, if the bucket is versioned")
    render.add_argument(
        "--namespace", default=RenderSettings.namespace, help="namespace (default: %(default)s)"
    )
    render.add_argument(
        "--stager-image",
        default=RenderSettings.stager_image,
        help="stage-in/out image (default: %(default)s)",
    )
    render.add_argument(
        "--template-dir", type=Path, action="append", default=[], help="directory overriding job_templates/"
    )

    dispatcher = commands.add_parser(
        "dispatcher",
        help="run the dispatcher: consume MinIO events from RabbitMQ and create one Job per object version",
        description="Consume MinIO bucket notifications from RabbitMQ, route each to its services and create "
        "their Jobs (Kubernetes, or local processes with the local executor). Configured through "
        "environment variables (below) or a YAML file named by BUCKETRUN_CONFIG; SIGTERM drains in-flight "
        "work. /healthz and /readyz are served on the metrics port.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dispatcher.add_argument(
        "--print-settings", action="store_true", help="print the effective settings (secrets masked) and exit"
    )

    for name, text in (
        ("watcher", "run the watcher: record finished Jobs (status, logs) and publish completion events"),
        ("serve", "run the dispatcher and the watcher in one process (with the local executor: the demo)"),
    ):
        runner = commands.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}. Configured like the dispatcher (below); SIGTERM "
            "lets the Jobs in hand be recorded first.",
            epilog=_environment_help(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        runner.add_argument(
            "--print-settings", action="store_true", help="print the effective settings and exit"
        )

    poll = commands.add_parser(
        "poll",
        help="run the bucket poller: announce new objects of S3 stores that send no notifications",
        description="List every service input path every BUCKETRUN_POLLER__INTERVAL seconds and publish a "
        "MinIO-format s3:ObjectCreated:Put event (with publisher confirms) for each object version not "
        "seen before, remembered in BUCKETRUN_POLLER__STATE_FILE so a restart announces nothing twice. "
        "Configured like the dispatcher (below); SIGTERM stops it after the current batch.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    poll.add_argument("--print-settings", action="store_true", help="print the effective settings and exit")

    demo = commands.add_parser(
        "demo",
        help="run everything locally on sample files: RabbitMQ, an S3 server, dispatcher, watcher, poller",
        description="Start (or reuse) RabbitMQ and an S3 server (BUCKETRUN_STORAGE__ENDPOINT, else a moto "
        "server), run the dispatcher and watcher with the local executor and the bucket poller, upload "
        "sample files to a sample service and show each job's progress. Files go to ./.bucketrun-demo/. "
        "Runs until Ctrl-C.",
    )
    demo.add_argument("--once", action="store_true", help="exit once every sample's outputs exist")
    demo.add_argument(
        "--timeout", type=float, default=180.0, help="seconds --once waits (default %(default)s)"
    )
    demo.add_argument("--name", default="bucketrun-demo", help="prefix of its buckets (default %(default)s)")

    jobs = commands.add_parser(
        "jobs", help="list and inspect Jobs: from the cluster, then from the records location"
    )
    jobs_commands = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True)
    jobs_list = jobs_commands.add_parser("list", help="one line per Job: name, service, state, finish time")
    jobs_list.add_argument("--service", help="only this service's Jobs")
    jobs_show = jobs_commands.add_parser("show", help="a Job's record (JSON), even after the Job is deleted")
    jobs_show.add_argument("name", help="Job name")
    jobs_logs = jobs_commands.add_parser("logs", help="a Job's container logs (newest pod, or the record)")
    jobs_logs.add_argument("name", help="Job name")
    jobs_logs.add_argument("--container", help="only this container (stage-in, run, stage-out)")

    events = commands.add_parser("events", help="inspect MinIO event payloads")
    events_commands = events.add_subparsers(dest="events_command", metavar="SUBCOMMAND", required=True)
    inspect = events_commands.add_parser(
        "inspect",
        help="parse a MinIO notification as the dispatcher would and show where it routes",
        description="Parse a MinIO bucket notification (any envelope MinIO has used) and print, per "
        "record: event name, bucket, decoded key, object version and - with --fdl - the services it "
        "routes to and their Job names, or why it routes nowhere.",
    )
    inspect.add_argument("source", help="file with the message body, or - for standard input")
    inspect.add_argument("--fdl", nargs="+", type=Path, default=[], help="FDL file(s) to route against")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


SERVICES_EXIT_CODES = """\
exit codes: 0 done, 1 invalid FDL or service name, 2 usage or settings error (nothing was contacted for
either), 3 applied except bucket notifications, which the store refused (moto and AWS S3 refuse MinIO
ARNs: feed events with `bucketrun poll`), 4 the store or the cluster failed (the lines before the
error were applied).
Configured like the dispatcher (`bucketrun dispatcher --help`): BUCKETRUN_STORAGE__* for the store,
BUCKETRUN_CLUSTER__EXECUTOR=kubernetes (+ namespace, kubeconfig) for ConfigMaps,
BUCKETRUN_STORAGE__NOTIFY_ARN for MinIO's AMQP target."""


def _add_services_admin(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apply = commands.add_parser(
        "apply",
        help="create buckets, folder markers and ConfigMaps, and wire MinIO notifications, for FDL services",
        description="Make the store and the cluster ready for the services in FDL: create missing buckets "
        "(inputs, outputs, records) and folder markers (empty 'folder/' objects), create each service's "
        "ConfigMap exactly as the dispatcher would (kubernetes executor only), and subscribe each input "
        "path to MinIO's AMQP target (BUCKETRUN_STORAGE__NOTIFY_ARN) with its prefix/suffix filters and "
        "events. Notification entries of others on the same bucket are kept: bucketrun's carry the Id "
        "bucketrun-<service>-<n>. Idempotent: a second run reports 'no changes'. Prints one line per item.",
        epilog="examples:\n"
        "  bucketrun services apply services/                  apply every FDL file of a directory\n"
        "  bucketrun services apply --dry-run svc.yaml         show the plan, change nothing\n"
        "  bucketrun services apply --skip-notifications svc.yaml   for a store fed by `bucketrun poll`\n\n"
        + SERVICES_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply.add_argument("paths", nargs="+", type=Path, metavar="FDL", help="FDL file or directory")
    apply.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    apply.add_argument(
        "--skip-notifications",
        action="store_true",
        help="leave bucket notifications alone (stores without MinIO notifications, fed by `bucketrun poll`)",
    )

    listing = commands.add_parser(
        "list",
        help="list the services wired in the store and the cluster; with FDL, show drift",
        description="List the services that have bucketrun notification entries (Id bucketrun-<service>-<n>) "
        "on any bucket or a bucketrun ConfigMap, with their buckets. Given FDL files, compare each "
        "defined service with them: notifications wired/drifted/missing, ConfigMap present/outdated/"
        "missing, and what `services apply` would change. Changes nothing.",
        epilog="examples:\n"
        "  bucketrun services list\n"
        "  bucketrun services list services/ --json\n\n" + SERVICES_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("paths", nargs="*", type=Path, metavar="FDL", help="FDL file or directory")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")

    delete = commands.add_parser(
        "delete",
        help="remove services' notification entries and ConfigMaps (never buckets or objects)",
        description="Remove the bucket notification entries (Id bucketrun-<service>-<n>, on every bucket) "
        "and the ConfigMaps of the named services. Other notification entries are kept. Buckets, folder "
        "markers and objects are NEVER deleted: remove them yourself if you want them gone.",
        epilog="examples:\n"
        "  bucketrun services delete upper grayify\n"
        "  bucketrun services delete --fdl old-services/ --dry-run\n\n" + SERVICES_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    delete.add_argument("names", nargs="*", metavar="NAME", help="service name")
    delete.add_argument(
        "--fdl", nargs="+", type=Path, default=[], help="also delete every service these FDL files define"
    )
    delete.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")


def _environment_help() -> str:
    lines = ["settings (environment variables; nested keys of the BUCKETRUN_CONFIG YAML file likewise):"]
    lines += [f"  {name:<40} {doc}" for name, doc in environment_reference()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        text, code = _run(args, parser)
    except ServiceDefinitionError as error:
        text, code = "\n".join(f"error: {problem}" for problem in error.problems), EXIT_INVALID
    except (RenderError, EventError, KeyError, OSError) as error:
        text, code = f"error: {error.args[0] if isinstance(error, KeyError) else error}", EXIT_INVALID
    stream = sys.stdout if code == 0 else sys.stderr
    if text:
        print(text, file=stream)
    return code


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, int]:
    if args.command == "services":
        return _run_services(args)
    if args.command == "render":
        settings = RenderSettings(namespace=args.namespace, stager_image=args.stager_image)
        return render_manifests(
            args.fdl,
            args.service,
            args.bucket,
            args.key,
            version_id=args.version_id,
            settings=settings,
            template_dirs=args.template_dir,
        )
    if args.command in ("dispatcher", "watcher", "serve", "poll"):
        return _run_dispatcher(print_settings=args.print_settings, command=args.command)
    if args.command in ("jobs", "demo"):
        return _run_jobs(args) if args.command == "jobs" else _run_demo(args)
    if args.command == "events":
        body = sys.stdin.buffer.read() if args.source == "-" else Path(args.source).read_bytes()
        return inspect_events(body, args.fdl, as_json=args.json)
    return parser.format_help(), 0


def _run_dispatcher(*, print_settings: bool, command: str = "dispatcher") -> tuple[str, int]:
    try:
        settings = Settings.load()
    except SettingsError as error:
        return f"error: {error}", EXIT_USAGE
    if print_settings:
        return "\n".join(describe_lines(settings.describe())), 0
    configure_logging(
        level=settings.log.level, json=settings.log.json_lines, secrets=settings.secret_values()
    )
    try:
        asyncio.run(_serve(settings, command))
    except StartupError as error:
        return f"error: cannot start the {command}:\n{error}", EXIT_INVALID
    return "", 0


async def _serve(settings: Settings, command: str = "dispatcher") -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        stop.set()
        # Backstop: if draining hangs past its bound, leave anyway (the broker redelivers what is unsettled).
        loop.call_later(settings.dispatch.drain_timeout + 15, os._exit, 70)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop)
    if command == "watcher":
        # Imported here: the dispatcher package never imports the watcher at module level.
        from watcher.app import run_watcher  # noqa: PLC0415

        await run_watcher(settings, stop)
    elif command == "poll":
        await run_poller(settings, stop)
    elif command == "serve":
        from bucketrun.serve import run_serve  # noqa: PLC0415

        await run_serve(settings, stop)
    else:
        await run_dispatcher(settings, stop)


def _run_demo(args: argparse.Namespace) -> tuple[str, int]:
    from bucketrun.devtools.demo import DemoError, DemoOptions  # noqa: PLC0415 - see _serve

    configure_logging(level="WARNING")
    options = DemoOptions(once=args.once, timeout=args.timeout, name=args.name)
    try:
        return "", asyncio.run(_demo(options))
    except (DemoError, StartupError, SettingsError, BucketrunError) as error:
        return f"error: {error}", EXIT_INVALID


async def _demo(options: DemoOptions) -> int:
    from bucketrun.devtools.demo import run_demo  # noqa: PLC0415 - see _serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await run_demo(options, stop)


def _run_services(args: argparse.Namespace) -> tuple[str, int]:
    if args.services_command == "validate":
        return validate_services(args.paths, strict=args.strict)
    try:
        settings = Settings.load()
    except SettingsError as error:
        return f"error: {error}", EXIT_USAGE
    configure_logging(level="WARNING")
    if args.services_command == "apply":
        return asyncio.run(
            apply_services(
                settings, args.paths, dry_run=args.dry_run, skip_notifications=args.skip_notifications
            )
        )
    if args.services_command == "list":
        return asyncio.run(list_services(settings, args.paths, as_json=args.json))
    return asyncio.run(delete_services(settings, args.names, args.fdl, dry_run=args.dry_run))


def _run_jobs(args: argparse.Namespace) -> tuple[str, int]:
    from bucketrun.cli.jobs import job_logs, list_jobs, show_job  # noqa: PLC0415 - see _serve

    try:
        settings = Settings.load()
    except SettingsError as error:
        return f"error: {error}", EXIT_USAGE
    try:
        if args.jobs_command == "list":
            return asyncio.run(list_jobs(settings, args.service))
        if args.jobs_command == "show":
            return asyncio.run(show_job(settings, args.name))
        return asyncio.run(job_logs(settings, args.name, args.container))
    except BucketrunError as error:
        return f"error: {error}", EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
