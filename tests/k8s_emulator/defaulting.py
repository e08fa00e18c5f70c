"""What the apiserver fills in on create: defaults for Jobs, Pods, Namespaces and Secrets (in place)."""

from __future__ import annotations

import base64
from typing import Any

from dispatcher.domain.constants import LABEL_JOB_CONTROLLER_UID
from tests.k8s_emulator import labels
from tests.k8s_emulator.resources import JOBS, NAMESPACES, PODS, SECRETS, Resource


def _image_pull_policy(image: str) -> str:
    # Kubernetes' rule: ":latest" or no tag means Always, any other tag or a digest means IfNotPresent.
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_pod_spec(spec: dict[str, Any], *, restart_policy: str = "Always") -> None:
    """Pod spec defaults (restartPolicy, grace period, DNS, scheduler, per-container fields)."""
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            if isinstance(container.get("image"), str):
                container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
            container.setdefault("resources", {})


def default_job(job: dict[str, Any]) -> None:
    """Job defaults, the controller-uid selector and the labels the Job controller's pods will carry."""
    meta = job["metadata"]
    spec = job.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", None)
    spec.setdefault(
        "podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    )
    if spec.get("manualSelector") is None:
        spec.pop("manualSelector")
    job_labels = labels.job_pod_labels(meta["name"], meta["uid"])
    spec.setdefault("selector", {"matchLabels": {LABEL_JOB_CONTROLLER_UID: meta["uid"]}})
    template = spec.get("template")
    if isinstance(template, dict):
        template_meta = template.setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), **job_labels}
        if isinstance(template.get("spec"), dict):
            default_pod_spec(template["spec"], restart_policy="Never")
    # A Job's status is the controller's; whatever the client sent is dropped, as the apiserver does.
    job["status"] = {}


def default_secret(secret: dict[str, Any]) -> None:
    """`stringData` folds into base64 `data`, type defaults to Opaque."""
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        data = dict(secret.get("data") or {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        secret["data"] = data
    secret.setdefault("type", "Opaque")


def apply_create_defaults(resource: Resource, obj: dict[str, Any]) -> None:
    """Fill in what the apiserver would for a new object of *resource* (metadata must be stamped first)."""
    if resource is JOBS:
        default_job(obj)
    elif resource is PODS:
        if isinstance(obj.get("spec"), dict):
            default_pod_spec(obj["spec"])
            obj["spec"].setdefault("serviceAccountName", "default")
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif resource is NAMESPACES:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif resource is SECRETS:
        default_secret(obj)


def apply_update_defaults(resource: Resource, obj: dict[str, Any]) -> None:
    """Defaults that also apply to updated objects (a PUT Secret may carry stringData too)."""
    if resource is SECRETS:
        default_secret(obj)
