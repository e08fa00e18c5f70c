"""``bucketrun dispatcher|watcher|serve|poll|demo``: the commands that run processes until stopped.

Each process is a composition root below this package (``dispatcher.process``, ``watcher``,
``bucketrun.serve``, ``dispatcher.poller``); this module only loads the settings, sets up logging and
turns SIGTERM/SIGINT into the process's stop event. A process that does not drain within its bound
is ended by a backstop, so an orchestrator's kill never finds it hanging.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Final

from bucketrun.cli.common import EXIT_INVALID, EXIT_OK, Commands, load_settings
from bucketrun.devtools.demo import DemoError, DemoOptions, KubeChoice, S3Choice, run_demo
from bucketrun.serve import run_serve
from dispatcher.domain.errors import BucketrunError, StartupError
from dispatcher.poller.app import run_poller
from dispatcher.process.app import run_dispatcher
from dispatcher.runtime.gc_tuning import tune_garbage_collector
from dispatcher.runtime.logs import configure_logging
from dispatcher.runtime.settings import Settings, SettingsError, describe_lines, environment_reference
from dispatcher.runtime.tls_buffers import limit_tls_read_buffers
from watcher.app import run_watcher

Process = Callable[[Settings, asyncio.Event], Awaitable[None]]

PROCESSES: Final[dict[str, Process]] = {
    "dispatcher": run_dispatcher,
    "watcher": run_watcher,
    "serve": run_serve,
    "poll": run_poller,
}

# The exit code of a process the drain backstop ends (see _until_signalled).
EXIT_DRAIN_HUNG: Final = 70


def add_commands(commands: Commands) -> None:
    """Add ``dispatcher``, ``watcher``, ``serve``, ``poll`` and ``demo``, in that order."""
    _add_dispatcher(commands)
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
        _add_print_settings(runner)
        runner.set_defaults(handler=_run_process, process=name)
    _add_poll(commands)
    _add_demo(commands)


def _add_dispatcher(commands: Commands) -> None:
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
    _add_print_settings(dispatcher)
    dispatcher.set_defaults(handler=_run_process, process="dispatcher")


def _add_print_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--print-settings", action="store_true", help="print the effective settings (secrets masked) and exit"
    )


def _add_poll(commands: Commands) -> None:
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
    _add_print_settings(poll)
    poll.set_defaults(handler=_run_process, process="poll")


def _add_demo(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="run everything locally on sample files: RabbitMQ, MinIO (or moto), Kubernetes (or the local "
        "executor), dispatcher, watcher",
        description="Start (or reuse) RabbitMQ and an S3 server, run the dispatcher and watcher, upload "
        "sample files to a sample service and show each job's progress (queued, running, done, failed). "
        "The S3 server (--s3 auto): BUCKETRUN_STORAGE__ENDPOINT when set, with the bucket poller; else the "
        "MinIO that `make servers` builds, emptied each run, with the service applied as `services apply` "
        "does: uploads reach the dispatcher as MinIO's bucket notifications, and its console (URL and "
        "demo-only login printed) takes uploads from a browser; else a moto server with the bucket poller. "
        "Where the Jobs run (--kube auto): with the built MinIO and the control plane `make servers` "
        "builds, a real Kubernetes started for the demo (etcd, kube-apiserver, kube-controller-manager, "
        "kube-scheduler, and a node agent that runs pods as local processes), empty each run, its Jobs in "
        "namespace bucketrun: the demo prints the `KUBECONFIG=... kubectl get jobs -n bucketrun` line to "
        "watch them; else the local executor (state files). Files go to ./.bucketrun-demo/ (MinIO's data "
        "and log to minio/, the cluster's to kube/). Everything it started is stopped when it exits. Runs "
        "until Ctrl-C.",
    )
    demo.add_argument(
        "--once", action="store_true", help="exit once every sample's outputs exist and every Job is recorded"
    )
    demo.add_argument(
        "--timeout", type=float, default=180.0, help="seconds --once waits (default %(default)s)"
    )
    demo.add_argument("--name", default="bucketrun-demo", help="prefix of its buckets (default %(default)s)")
    demo.add_argument(
        "--s3",
        type=S3Choice,
        choices=list(S3Choice),
        default=S3Choice.AUTO,
        help="S3 server: auto (as above), minio (the built MinIO, an error without it) or moto (moto and "
        "the poller even where MinIO is built) (default %(default)s)",
    )
    demo.add_argument(
        "--kube",
        type=KubeChoice,
        choices=list(KubeChoice),
        default=KubeChoice.AUTO,
        help="where the Jobs run: auto (as above), cluster (the built control plane, an error without it, "
        "whatever the S3 server) or local (the local executor even where the control plane is built) "
        "(default %(default)s)",
    )
    demo.set_defaults(handler=_run_demo)


def _environment_help() -> str:
    lines = ["settings (environment variables; nested keys of the BUCKETRUN_CONFIG YAML file likewise):"]
    lines += [f"  {name:<40} {doc}" for name, doc in environment_reference()]
    return "\n".join(lines)


def _run_process(args: argparse.Namespace) -> tuple[str, int]:
    settings = load_settings()
    if args.print_settings:
        return "\n".join(describe_lines(settings.describe())), EXIT_OK
    configure_logging(
        level=settings.log.level, json=settings.log.json_lines, secrets=settings.secret_values()
    )
    limit_tls_read_buffers()  # before the first connection: each pooled TLS connection's buffer
    tune_garbage_collector()  # after the imports and settings: they are frozen, never walked again
    try:
        asyncio.run(_until_signalled(settings, PROCESSES[args.process]))
    except StartupError as error:
        return f"error: cannot start the {args.process}:\n{error}", EXIT_INVALID
    return "", EXIT_OK


async def _until_signalled(settings: Settings, process: Process) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        stop.set()
        # Backstop: if draining hangs past its bound, leave anyway (the broker redelivers what is unsettled).
        loop.call_later(settings.dispatch.drain_timeout + 15, os._exit, EXIT_DRAIN_HUNG)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop)
    await process(settings, stop)


def _run_demo(args: argparse.Namespace) -> tuple[str, int]:
    configure_logging(level="WARNING")
    options = DemoOptions(s3=args.s3, kube=args.kube, once=args.once, timeout=args.timeout, name=args.name)
    try:
        return "", asyncio.run(_demo(options))
    except (DemoError, StartupError, SettingsError, BucketrunError) as error:
        return f"error: {error}", EXIT_INVALID


async def _demo(options: DemoOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await run_demo(options, stop)
