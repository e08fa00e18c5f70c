"""``bucketrun render``: the ConfigMap and Job an upload would create, as YAML. No server is contacted."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import yaml

from bucketrun.admin.validation import sample_upload
from bucketrun.cli.common import EXIT_OK, Commands, add_cluster_option, chosen_cluster
from dispatcher.domain.routing import Router
from dispatcher.fdl import load_services
from dispatcher.rendering.context import RenderSettings, placeholder_grants
from dispatcher.rendering.render import JobRenderer


def add_commands(commands: Commands) -> None:
    """Add ``render``."""
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
    add_cluster_option(render)
    render.set_defaults(handler=_render)


def _render(args: argparse.Namespace) -> tuple[str, int]:
    return render_manifests(
        args.fdl,
        args.service,
        args.bucket,
        args.key,
        version_id=args.version_id,
        settings=RenderSettings(namespace=args.namespace, stager_image=args.stager_image),
        template_dirs=args.template_dir,
        cluster=chosen_cluster(args.cluster),
    )


def render_manifests(
    paths: Sequence[Path],
    service_name: str,
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    settings: RenderSettings | None = None,
    template_dirs: Sequence[Path] = (),
    cluster: str | None = None,
) -> tuple[str, int]:
    """The ConfigMap and Job an upload of bucket/key would create for *service_name*, as YAML; *cluster*
    chooses among a service's definitions for several OSCAR clusters."""
    loaded = load_services(paths, cluster=cluster)
    service = loaded.by_name(service_name)
    event = sample_upload(bucket, key, version_id=version_id)
    routes = Router(loaded.services).route(event)
    notes = []
    if all(route.service.name != service.name for route in routes):
        notes.append(
            f"# note: an upload of {bucket}/{key} would not trigger {service.name!r} (rendered anyway)"
        )
    renderer = JobRenderer(settings, template_dirs)
    rendered = renderer.render(service, event, placeholder_grants(service, event))
    notes.append("# presigned URLs are placeholders; the dispatcher signs real ones per Job")
    body = yaml.safe_dump_all([rendered.config_map, rendered.job], sort_keys=False, allow_unicode=True)
    return "\n".join([*notes, body]), EXIT_OK
