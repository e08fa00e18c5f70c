"""Render bucketrun's Kubernetes objects from `job_templates/` and check what the schema cannot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

import job_templates
from dispatcher.domain.events import ObjectEvent
from dispatcher.fdl import ServiceDefinition
from dispatcher.rendering.context import (
    RenderError,
    RenderSettings,
    StagingGrants,
    config_map_context,
    job_context,
)
from dispatcher.rendering.manifest_checks import check_manifest
from dispatcher.rendering.skeleton import NotPlainError, Skeleton, build_skeleton, identical
from dispatcher.rendering.template_env import (
    SLOT_PREFIX,
    TemplateSafetyError,
    make_environment,
    recording_slots,
)
from dispatcher.runtime.settings import ClusterSettings

DEFAULT_TEMPLATE_DIR = Path(job_templates.__file__).resolve().parent
JOB_TEMPLATE = "job.yaml.j2"
CONFIG_MAP_TEMPLATE = "configmap.yaml.j2"
WRAPPER = "run.sh"

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_SKELETONS = 256
"""Parsed skeletons kept per renderer (one per template and shape: a few per service version)."""


@dataclass(frozen=True)
class RenderedJob:
    """The objects one event needs: the service's ConfigMap (shared, created once) and the Job."""

    config_map: dict[str, Any]
    job: dict[str, Any]


class JobRenderer:
    """Turns (service, event) into checked manifests. Templates are compiled once and reused."""

    def __init__(self, settings: RenderSettings | None = None, template_dirs: Sequence[Path] = ()) -> None:
        self.settings = settings or RenderSettings()
        dirs = [*template_dirs, DEFAULT_TEMPLATE_DIR]
        env = make_environment(dirs)
        try:
            self._job = env.get_template(JOB_TEMPLATE)
            self._config_map = env.get_template(CONFIG_MAP_TEMPLATE)
        except jinja2.TemplateError as exc:
            raise RenderError(f"cannot load templates from {[str(d) for d in dirs]}: {exc}") from exc
        self._wrapper = _first_existing(dirs, WRAPPER).read_text(encoding="utf-8")
        # (template name, slot-mode text) -> its parsed skeleton, or None when it cannot stand in for a
        # parse (then that shape is always rendered the ordinary way).
        self._skeletons: dict[tuple[str | None, str], Skeleton | None] = {}

    def render_config_map(self, service: ServiceDefinition) -> dict[str, Any]:
        """The per-service ConfigMap (script + wrapper), named by content hash."""
        return self._render(self._config_map, config_map_context(service, self._wrapper, self.settings))

    def render_job(
        self, service: ServiceDefinition, event: ObjectEvent, grants: StagingGrants
    ) -> dict[str, Any]:
        """The Job that runs *service* on the object of *event*."""
        return self._render(self._job, job_context(service, event, grants, self.settings))

    def render(self, service: ServiceDefinition, event: ObjectEvent, grants: StagingGrants) -> RenderedJob:
        """Both objects for one event."""
        return RenderedJob(self.render_config_map(service), self.render_job(service, event, grants))

    def _render(self, template: jinja2.Template, variables: dict[str, Any]) -> dict[str, Any]:
        """Render, parse and check one object.

        The parse is done once per template shape (`dispatcher.rendering.skeleton`): a slot-mode render
        gives the text with placeholders for the values, and its cached skeleton, filled with this
        render's values, is the document. The first time a shape is seen it is also rendered and parsed
        the ordinary way, and the skeleton is only kept if both documents are identical.
        """
        try:
            with recording_slots() as values:
                text = template.render(variables)
        except (TemplateSafetyError, jinja2.TemplateError) as exc:
            raise RenderError(f"template {template.name}: {exc}") from exc
        key = (template.name, text)
        if key not in self._skeletons:
            return self._learn(key, template, variables, values)
        skeleton = self._skeletons[key]
        if skeleton is None:
            return self._render_and_parse(template, variables)
        try:
            document = skeleton.fill(values)
        except NotPlainError:
            return self._render_and_parse(template, variables)
        return _checked(template, document)

    def _learn(
        self,
        key: tuple[str | None, str],
        template: jinja2.Template,
        variables: dict[str, Any],
        values: list[Any],
    ) -> dict[str, Any]:
        """First render of a shape: parse it the ordinary way, and keep its skeleton if it agrees."""
        document = self._render_and_parse(template, variables)
        skeleton: Skeleton | None = None
        try:
            parsed = yaml.load(key[1], Loader=_Loader)  # noqa: S506 - a safe loader (C or pure Python)
        except yaml.YAMLError:
            parsed = None
        candidate = build_skeleton(parsed, SLOT_PREFIX, len(values))
        if candidate is not None:
            try:
                if identical(candidate.fill(values), document):
                    skeleton = candidate
            except NotPlainError:
                # Not this shape's fault: this render's values were not plain; learn from a later one.
                return document
        if len(self._skeletons) >= _MAX_SKELETONS:
            self._skeletons.clear()
        self._skeletons[key] = skeleton
        return document

    def _render_and_parse(self, template: jinja2.Template, variables: dict[str, Any]) -> dict[str, Any]:
        """The ordinary way: render the text with every value in it, parse it, check it."""
        try:
            text = template.render(variables)
        except (TemplateSafetyError, jinja2.TemplateError) as exc:
            raise RenderError(f"template {template.name}: {exc}") from exc
        try:
            document = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader (C or pure Python)
        except yaml.YAMLError as exc:
            raise RenderError(f"template {template.name} rendered invalid YAML: {exc}") from exc
        if not isinstance(document, dict):
            raise RenderError(
                f"template {template.name} must render one mapping, got {type(document).__name__}"
            )
        return _checked(template, document)


def _checked(template: jinja2.Template, document: dict[str, Any]) -> dict[str, Any]:
    problems = check_manifest(document)
    if problems:
        raise RenderError(f"template {template.name} rendered an invalid object: {'; '.join(problems)}")
    return document


def _first_existing(dirs: Sequence[Path], name: str) -> Path:
    for directory in dirs:
        if (path := directory / name).is_file():
            return path
    raise RenderError(f"{name} not found in {[str(d) for d in dirs]}")


def renderer_from_settings(cluster: ClusterSettings) -> JobRenderer:
    """The renderer configured by ``BUCKETRUN_CLUSTER__*``: the one place both the dispatcher and
    ``bucketrun services apply`` build it, so the ConfigMaps apply creates are byte for byte the ones the
    dispatcher renders (same namespace, stager image and template directory) and it never re-creates them;
    the run container's default resources, the default deadline and the run start bound come from there
    too."""
    render = RenderSettings(
        namespace=cluster.namespace,
        stager_image=cluster.stager_image,
        default_cpu=cluster.default_cpu,
        default_memory=cluster.default_memory,
        default_timeout=cluster.default_timeout,
        run_start_timeout=cluster.run_start_bound(),
        service_base_path=cluster.service_base_path,
    )
    return JobRenderer(render, (cluster.template_dir,) if cluster.template_dir else ())


__all__ = ["JobRenderer", "RenderError", "RenderSettings", "RenderedJob", "renderer_from_settings"]
