"""``function_config.yaml``: the service definition as OSCAR stores it beside the script.

OSCAR's create handler fills in its defaults, clears the script and secret values, and writes the
service as YAML under this name in the service's ConfigMap (grycap/oscar ``pkg/backends/k8s.go``
``createServiceConfigMap``, ``pkg/handlers/create.go`` ``checkValues``); the pod sees it at
``/oscar/config/function_config.yaml``, where OSCAR's FaaS Supervisor reads ``log_level``,
``file_stage_in``, ``input``, ``output`` and ``storage_providers`` from it (faas-supervisor
``faassupervisor/utils.py`` ``ConfigUtils``). Scripts may read it too.

bucketrun writes the same keys, in OSCAR's order, for what it implements (``cpu`` and ``memory`` only
when the service sets them, where OSCAR writes its defaults too). It never writes a credential:
secret values are empty strings (as OSCAR leaves them), and every storage provider's keys read
``hidden``, which OSCAR writes for its own MinIO only. OSCAR's service token is left out. A pure function
of the service and the deployment's defaults, so the ConfigMap stays named by content.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import yaml

from dispatcher.domain import constants as c
from dispatcher.fdl import InputPath, OutputPath, ServiceDefinition
from dispatcher.fdl.model import DEFAULT_LOG_LEVEL

HIDDEN: Final = "hidden"
"""What OSCAR writes in place of its MinIO's keys (``pkg/handlers/create.go``); bucketrun, of every key."""


def function_config(service: ServiceDefinition) -> str:
    """The YAML text of ``function_config.yaml`` for ``service``."""
    document: dict[str, Any] = {"name": service.name}
    if service.cluster_id:
        document["cluster_id"] = service.cluster_id
    # Only as the service sets them: the ConfigMap is named by the service's content, so nothing that
    # depends on the deployment's settings (the default cpu and memory) may go into it.
    if service.memory:
        document["memory"] = service.memory
    if service.cpu:
        document["cpu"] = service.cpu
    if service.ephemeral_storage_request:
        document["ephemeral_storage_request"] = service.ephemeral_storage_request
    document["enable_gpu"] = service.enable_gpu
    document["log_level"] = service.log_level or DEFAULT_LOG_LEVEL
    document["image"] = service.image
    document["file_stage_in"] = service.file_stage_in
    document["input"] = [_io(path) for path in service.inputs]
    document["output"] = [_io(path) for path in service.outputs]
    if service.image_pull_secrets:
        document["image_pull_secrets"] = list(service.image_pull_secrets)
    document["environment"] = {
        "variables": dict(service.variables),
        "secrets": dict.fromkeys(sorted(service.secrets), ""),
    }
    document["annotations"] = dict(service.annotations)
    # OSCAR's create handler adds its service label to the service's own (the Jobs carry it too).
    document["labels"] = {**service.labels, c.LABEL_OSCAR_SERVICE: service.name}
    providers = _providers(service)
    if providers:
        document["storage_providers"] = providers
    if service.mount is not None:
        document["mount"] = {"storage_provider": service.mount.provider, "path": service.mount.path}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _io(path: InputPath | OutputPath) -> dict[str, Any]:
    entry: dict[str, Any] = {"storage_provider": path.provider, "path": path.path}
    if path.suffix:
        entry["suffix"] = list(path.suffix)
    if path.prefix:
        entry["prefix"] = list(path.prefix)
    return entry


def _providers(service: ServiceDefinition) -> Mapping[str, dict[str, dict[str, Any]]]:
    grouped: dict[str, dict[str, dict[str, Any]]] = {}
    for provider in service.storage_providers.values():
        entry: dict[str, Any] = {}
        if provider.endpoint:
            entry["endpoint"] = provider.endpoint
        entry["verify"] = provider.verify
        entry["access_key"] = HIDDEN
        entry["secret_key"] = HIDDEN
        if provider.region:
            entry["region"] = provider.region
        grouped.setdefault(provider.kind, {})[provider.id] = entry
    return grouped
