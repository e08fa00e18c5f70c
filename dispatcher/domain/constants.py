"""Names bucketrun writes into Kubernetes objects and pods, spelled once.

Labels carry what selectors need (bounded, valid label values); annotations carry raw values
(object keys may be up to 1 KiB of arbitrary UTF-8 and are never used as label values).
"""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "bucketrun.io"

# Labels: selectable, so bounded and valid label values.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "bucketrun"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_SERVICE: Final = f"{DOMAIN}/service"
LABEL_BUCKET: Final = f"{DOMAIN}/bucket"
LABEL_KEY_HASH: Final = f"{DOMAIN}/key-hash"
LABEL_SERVICE_HASH: Final = f"{DOMAIN}/service-hash"
LABEL_KUEUE_QUEUE: Final = "kueue.x-k8s.io/queue-name"
LABEL_OSCAR_SERVICE: Final = "oscar_service"
"""OSCAR's label naming a Job's service (grycap/oscar ``types.ServiceLabel``): tools that select OSCAR's
Jobs by it find bucketrun's too. Its value, the service name, is a DNS label and so a valid label value."""

# Annotations: the raw values.
ANNOTATION_BUCKET: Final = f"{DOMAIN}/bucket"
ANNOTATION_KEY: Final = f"{DOMAIN}/key"
ANNOTATION_VERSION: Final = f"{DOMAIN}/object-version"
ANNOTATION_EVENT_NAME: Final = f"{DOMAIN}/event-name"
ANNOTATION_EVENT_TIME: Final = f"{DOMAIN}/event-time"
ANNOTATION_SOURCE: Final = f"{DOMAIN}/source"
ANNOTATION_RECORDED: Final = f"{DOMAIN}/recorded"
"""Set by the watcher on a finished Job once its record is written and its completion event published;
the value is the Job's UID, so a re-created Job of the same name is not mistaken for a recorded one."""

# Kubernetes' own names bucketrun relies on
LABEL_JOB_CONTROLLER_UID: Final = "batch.kubernetes.io/controller-uid"
LABEL_JOB_NAME: Final = "batch.kubernetes.io/job-name"
LABEL_LEGACY_JOB_CONTROLLER_UID: Final = "controller-uid"
LABEL_LEGACY_JOB_NAME: Final = "job-name"
GPU_RESOURCE: Final = "nvidia.com/gpu"
BOOKMARK_INTERVAL: Final = 60.0
"""Seconds between the BOOKMARK events an API server sends on an idle watch that asked for them."""
DEFAULT_WATCH_READ_TIMEOUT: Final = 2 * BOOKMARK_INTERVAL + 10.0
"""Seconds a watch stream may stay silent before it is taken for a dead connection: two bookmarks missed."""

# OSCAR's defaults for a service that sets no `cpu`/`memory` (grycap/oscar, pkg/handlers/create.go,
# `checkValues`); OSCAR sets them as limits only, so Kubernetes makes the requests equal.
DEFAULT_CPU: Final = "0.2"
DEFAULT_MEMORY: Final = "256Mi"


# The keys of the per-service ConfigMap.
CONFIG_SCRIPT: Final = "script.sh"
CONFIG_WRAPPER: Final = "run.sh"
CONFIG_FUNCTION: Final = "function_config.yaml"
"""The service definition as OSCAR stores it beside the script (grycap/oscar ``types.FDLFileName``)."""
OSCAR_CONFIG_DIR: Final = "/oscar/config"
"""Where OSCAR mounts the service's ConfigMap (grycap/oscar ``types.ConfigPath``); bucketrun's pods too."""

LOCAL_RUN_START_TIMEOUT: Final = 60
"""The same bound under the local executor, which pulls nothing: its run container starts at once or never."""
DEFAULT_JOB_TIMEOUT: Final = 24 * 3600
"""``activeDeadlineSeconds`` of a Job whose service sets no ``bucketrun.timeout``: every Job ends."""
