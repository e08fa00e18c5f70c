"""``bucketrun services validate|apply|list|delete``: check OSCAR service definitions, and wire them.

``validate`` is a dry run that contacts no server. ``apply``, ``list`` and ``delete`` contact the
configured store and cluster; their work is ``bucketrun.admin``'s, this module only parses arguments.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bucketrun.admin.commands import apply_services, delete_services, list_services
from bucketrun.admin.validation import validate_services
from bucketrun.cli.common import (
    Commands,
    add_cluster_option,
    chosen_cluster,
    load_settings,
    with_cluster,
)
from dispatcher.runtime.logs import configure_logging

EXIT_CODES = """\
exit codes: 0 done, 1 invalid FDL or service name, 2 usage or settings error (nothing was contacted for
either), 3 applied except bucket notifications, which the store refused (moto and AWS S3 refuse MinIO
ARNs: feed events with `bucketrun poll`), 4 the store or the cluster failed (the lines before the
error were applied).
Configured like the dispatcher (`bucketrun dispatcher --help`): BUCKETRUN_STORAGE__* for the store,
BUCKETRUN_CLUSTER__EXECUTOR=kubernetes (+ namespace, kubeconfig) for ConfigMaps,
BUCKETRUN_STORAGE__NOTIFY_ARN for MinIO's AMQP target."""


def add_commands(commands: Commands) -> None:
    """Add ``services`` and its four subcommands."""
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
    add_cluster_option(validate)
    validate.set_defaults(handler=_validate)
    _add_apply(services_commands)
    _add_list(services_commands)
    _add_delete(services_commands)


def _add_apply(commands: Commands) -> None:
    apply = commands.add_parser(
        "apply",
        help="create buckets, folder markers, ConfigMaps and Secrets, and wire MinIO notifications, for FDL "
        "services",
        description="Make the store and the cluster ready for the services in FDL: create missing buckets "
        "(inputs, outputs, records) and folder markers (empty 'folder/' objects), create each service's "
        "ConfigMap exactly as the dispatcher would and its Secret bucketrun-<service>-secrets from "
        "environment.secrets, rewritten only when a value changed (kubernetes executor only), and "
        "subscribe each input path to MinIO's AMQP target (BUCKETRUN_STORAGE__NOTIFY_ARN) with its "
        "prefix/suffix filters and events. Notification entries of others on the same bucket are kept: "
        "bucketrun's carry the Id bucketrun-<service>-<n>. Idempotent: a second run reports 'no changes'. "
        "Prints one line per item.",
        epilog="examples:\n"
        "  bucketrun services apply services/                  apply every FDL file of a directory\n"
        "  bucketrun services apply --dry-run svc.yaml         show the plan, change nothing\n"
        "  bucketrun services apply --skip-notifications svc.yaml   for a store fed by `bucketrun poll`\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply.add_argument("paths", nargs="+", type=Path, metavar="FDL", help="FDL file or directory")
    apply.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    apply.add_argument(
        "--skip-notifications",
        action="store_true",
        help="leave bucket notifications alone (stores without MinIO notifications, fed by `bucketrun poll`)",
    )
    add_cluster_option(apply)
    apply.set_defaults(handler=_apply)


def _add_list(commands: Commands) -> None:
    listing = commands.add_parser(
        "list",
        help="list the services wired in the store and the cluster; with FDL, show drift",
        description="List the services that have bucketrun notification entries (Id bucketrun-<service>-<n>) "
        "on any bucket or a bucketrun ConfigMap, with their buckets. Given FDL files, compare each "
        "defined service with them: notifications wired/drifted/missing, ConfigMap present/outdated/"
        "missing, Secret present/drifted/missing, and what `services apply` would change. Changes nothing.",
        epilog="examples:\n"
        "  bucketrun services list\n"
        "  bucketrun services list services/ --json\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("paths", nargs="*", type=Path, metavar="FDL", help="FDL file or directory")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_cluster_option(listing)
    listing.set_defaults(handler=_list)


def _add_delete(commands: Commands) -> None:
    delete = commands.add_parser(
        "delete",
        help="remove services' notification entries, ConfigMaps and Secrets (never buckets or objects)",
        description="Remove the bucket notification entries (Id bucketrun-<service>-<n>, on every bucket) "
        "and the ConfigMaps and Secrets of the named services (only bucketrun-labelled ones). Other "
        "notification entries are kept. Buckets, folder markers and objects are NEVER deleted: remove "
        "them yourself if you want them gone.",
        epilog="examples:\n"
        "  bucketrun services delete upper grayify\n"
        "  bucketrun services delete --fdl old-services/ --dry-run\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    delete.add_argument("names", nargs="*", metavar="NAME", help="service name")
    delete.add_argument(
        "--fdl", nargs="+", type=Path, default=[], help="also delete every service these FDL files define"
    )
    delete.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")
    add_cluster_option(delete)
    delete.set_defaults(handler=_delete)


def _validate(args: argparse.Namespace) -> tuple[str, int]:
    return validate_services(args.paths, strict=args.strict, cluster=chosen_cluster(args.cluster))


def _apply(args: argparse.Namespace) -> tuple[str, int]:
    settings = with_cluster(load_settings(), args.cluster)
    configure_logging(level="WARNING")
    return asyncio.run(
        apply_services(settings, args.paths, dry_run=args.dry_run, skip_notifications=args.skip_notifications)
    )


def _list(args: argparse.Namespace) -> tuple[str, int]:
    settings = with_cluster(load_settings(), args.cluster)
    configure_logging(level="WARNING")
    return asyncio.run(list_services(settings, args.paths, as_json=args.json))


def _delete(args: argparse.Namespace) -> tuple[str, int]:
    settings = with_cluster(load_settings(), args.cluster)
    configure_logging(level="WARNING")
    return asyncio.run(delete_services(settings, args.names, args.fdl, dry_run=args.dry_run))
