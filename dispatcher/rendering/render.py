"""Render bucketrun's Kubernetes objects from `job_templates/` and check what the schema cannot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

import job_templates
from dispatcher.events import ObjectEvent
from dispatcher.rendering.context import (
    RenderError,
    RenderSettings,
    StagingGrants,
    config_map_context,
    job_context,
)
from dispatcher.rendering.manifest_checks import check_manifest
from dispatcher.rendering.template_env import TemplateSafetyError, make_environment
from dispatcher.services import ServiceDefinition

DEFAULT_TEMPLATE_DIR = Path(job_templates.__file__).resolve().parent
JOB_TEMPLATE = "job.yaml.j2"
CONFIG_MAP_TEMPLATE = "configmap.yaml.j2"
WRAPPER = "run.sh"

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        problems = check_manifest(document)
        if problems:
            raise RenderError(f"template {template.name} rendered an invalid object: {'; '.join(problems)}")
        return document


def _first_existing(dirs: Sequence[Path], name: str) -> Path:
    for directory in dirs:
        if (path := directory / name).is_file():
            return path
    raise RenderError(f"{name} not found in {[str(d) for d in dirs]}")


__all__ = ["JobRenderer", "RenderError", "RenderSettings", "RenderedJob"]
