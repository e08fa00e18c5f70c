"""What the apiserver rejects with 422 Invalid: names, labels and the rules of Jobs, Pods and config (pure).

Each check returns causes (`field`, `reason`, `message`) in the apiserver's words; an empty list means valid.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from tests.k8s_emulator import names
from tests.k8s_emulator.resources import CONFIG_MAPS, JOBS, LEASES, NAMESPACES, PODS, SECRETS, Resource

Cause = dict[str, str]

_JOB_RESTART_POLICIES = ("OnFailure", "Never")
_POD_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_FAILURE_ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")
_MAX_ANNOTATIONS_BYTES = 256 * 1024


def _quote(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def invalid(field: str, value: Any, message: str) -> Cause:
    """A FieldValueInvalid cause."""
    return {
        "reason": "FieldValueInvalid",
        "field": field,
        "message": f"Invalid value: {_quote(value)}: {message}",
    }


def required(field: str, message: str = "") -> Cause:
    """A FieldValueRequired cause."""
    return {
        "reason": "FieldValueRequired",
        "field": field,
        "message": f"Required value{': ' + message if message else ''}",
    }


def unsupported(field: str, value: Any, allowed: tuple[str, ...]) -> Cause:
    """A FieldValueNotSupported cause listing the allowed values."""
    listed = ", ".join(json.dumps(a) for a in allowed)
    return {
        "reason": "FieldValueNotSupported",
        "field": field,
        "message": f"Unsupported value: {_quote(value)}: supported values: {listed}",
    }


def forbidden(field: str, message: str) -> Cause:
    """A FieldValueForbidden cause."""
    return {"reason": "FieldValueForbidden", "field": field, "message": f"Forbidden: {message}"}


def _name_rule(resource: Resource) -> Callable[[str], list[str]]:
    return names.dns1123_label_errors if resource is NAMESPACES else names.dns1123_subdomain_errors


def validate_name(resource: Resource, name: Any) -> list[Cause]:
    """The object name rule of *resource* (namespaces: DNS-1123 label; others: DNS-1123 subdomain)."""
    if not name:
        return [required("metadata.name", "name or generateName is required")]
    if not isinstance(name, str):
        return [invalid("metadata.name", name, "must be a string")]
    return [invalid("metadata.name", name, error) for error in _name_rule(resource)(name)]


def validate_labels(label_map: Any, field: str) -> list[Cause]:
    """Label keys and values (qualified names, ≤ 63 characters)."""
    if label_map is None:
        return []
    if not isinstance(label_map, dict):
        return [invalid(field, label_map, "must be a map of strings")]
    causes = []
    for key, value in label_map.items():
        causes += [invalid(field, key, error) for error in names.label_key_errors(str(key))]
        if not isinstance(value, str):
            causes.append(invalid(f"{field}[{key}]", value, "must be a string"))
        else:
            causes += [invalid(f"{field}[{key}]", value, error) for error in names.label_value_errors(value)]
    return causes


def validate_annotations(annotations: Any, field: str) -> list[Cause]:
    """Annotation keys (qualified names), string values, and the 256 KiB total."""
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [invalid(field, annotations, "must be a map of strings")]
    causes = []
    for key, value in annotations.items():
        causes += [invalid(field, key, error) for error in names.label_key_errors(str(key))]
        if not isinstance(value, str):
            causes.append(invalid(f"{field}[{key}]", value, "must be a string"))
    size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
    if size > _MAX_ANNOTATIONS_BYTES:
        causes.append(
            {
                "reason": "FieldValueTooLong",
                "field": field,
                "message": f"Too long: must have at most {_MAX_ANNOTATIONS_BYTES} bytes",
            }
        )
    return causes


def validate_metadata(resource: Resource, meta: dict[str, Any]) -> list[Cause]:
    """Name, labels and annotations of an object about to be stored."""
    return (
        validate_name(resource, meta.get("name"))
        + validate_labels(meta.get("labels"), "metadata.labels")
        + validate_annotations(meta.get("annotations"), "metadata.annotations")
    )


def _non_negative(spec: dict[str, Any], key: str, field: str, *, positive: bool = False) -> list[Cause]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool):
        return [invalid(f"{field}.{key}", value, "must be an integer")]
    if positive and value <= 0:
        return [invalid(f"{field}.{key}", value, "must be greater than zero")]
    if value < 0:
        return [invalid(f"{field}.{key}", value, "must be greater than or equal to 0")]
    return []


def validate_pod_spec(
    spec: Any, field: str, *, restart_policies: tuple[str, ...] = _POD_RESTART_POLICIES
) -> list[Cause]:
    """Containers (non-empty, named, with an image, names unique) and the restart policy."""
    if not isinstance(spec, dict):
        return [required(field)]
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        causes.append(required(f"{field}.containers"))
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        items = spec.get(key) or []
        if not isinstance(items, list):
            causes.append(invalid(f"{field}.{key}", items, "must be a list"))
            continue
        for index, container in enumerate(items):
            where = f"{field}.{key}[{index}]"
            if not isinstance(container, dict):
                causes.append(invalid(where, container, "must be an object"))
                continue
            name = container.get("name")
            if not name:
                causes.append(required(f"{where}.name"))
            else:
                causes += [invalid(f"{where}.name", name, e) for e in names.dns1123_label_errors(str(name))]
                if name in seen:
                    causes.append(
                        {
                            "reason": "FieldValueDuplicate",
                            "field": f"{where}.name",
                            "message": f'Duplicate value: "{name}"',
                        }
                    )
                seen.add(str(name))
            if not container.get("image"):
                causes.append(required(f"{where}.image"))
    policy = spec.get("restartPolicy")
    if policy not in restart_policies:
        causes.append(unsupported(f"{field}.restartPolicy", policy, restart_policies))
    return causes


def validate_pod_failure_policy(policy: Any, field: str, restart_policy: Any) -> list[Cause]:
    """Rules with a known action and one of onExitCodes / onPodConditions; requires restartPolicy Never."""
    if policy is None:
        return []
    causes: list[Cause] = []
    if restart_policy != "Never":
        causes.append(
            invalid(
                "spec.template.spec.restartPolicy",
                restart_policy,
                'only "Never" is supported when podFailurePolicy is specified',
            )
        )
    rules = policy.get("rules") if isinstance(policy, dict) else None
    if not isinstance(rules, list):
        return [*causes, required(f"{field}.rules")]
    for index, rule in enumerate(rules):
        where = f"{field}.rules[{index}]"
        if not isinstance(rule, dict):
            causes.append(invalid(where, rule, "must be an object"))
            continue
        if rule.get("action") not in _FAILURE_ACTIONS:
            causes.append(unsupported(f"{where}.action", rule.get("action"), _FAILURE_ACTIONS))
        exit_codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (exit_codes is None) == (conditions is None):
            causes.append(invalid(where, "", "specifying one of OnExitCodes and OnPodConditions is required"))
        if isinstance(exit_codes, dict):
            operator = exit_codes.get("operator")
            if operator not in ("In", "NotIn"):
                causes.append(unsupported(f"{where}.onExitCodes.operator", operator, ("In", "NotIn")))
            values = exit_codes.get("values")
            if not isinstance(values, list) or not values or not all(isinstance(v, int) for v in values):
                causes.append(
                    invalid(f"{where}.onExitCodes.values", values, "must be a non-empty list of integers")
                )
            elif operator == "In" and 0 in values:
                causes.append(invalid(f"{where}.onExitCodes.values", 0, "must not be 0 for the In operator"))
    return causes


def validate_job(job: dict[str, Any]) -> list[Cause]:
    """A Job's spec: template (restartPolicy Never/OnFailure), counts, deadlines, pod failure policy."""
    spec = job.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    causes: list[Cause] = []
    template = spec.get("template")
    if not isinstance(template, dict):
        return [required("spec.template")]
    template_meta = template.get("metadata") or {}
    causes += validate_labels(template_meta.get("labels"), "spec.template.metadata.labels")
    causes += validate_annotations(template_meta.get("annotations"), "spec.template.metadata.annotations")
    causes += validate_pod_spec(
        template.get("spec"), "spec.template.spec", restart_policies=_JOB_RESTART_POLICIES
    )
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        causes += _non_negative(spec, key, "spec")
    causes += _non_negative(spec, "activeDeadlineSeconds", "spec", positive=True)
    restart_policy = (
        (template.get("spec") or {}).get("restartPolicy") if isinstance(template.get("spec"), dict) else None
    )
    causes += validate_pod_failure_policy(
        spec.get("podFailurePolicy"), "spec.podFailurePolicy", restart_policy
    )
    if spec.get("completionMode") not in (None, "NonIndexed"):
        causes.append(unsupported("spec.completionMode", spec.get("completionMode"), ("NonIndexed",)))
    return causes


def _validate_data_keys(obj: dict[str, Any], key: str) -> list[Cause]:
    data = obj.get(key)
    if data is None:
        return []
    if not isinstance(data, dict):
        return [invalid(key, data, "must be a map")]
    causes = []
    for data_key, value in data.items():
        causes += [invalid(key, data_key, e) for e in names.config_key_errors(str(data_key))]
        if not isinstance(value, str):
            causes.append(invalid(f"{key}[{data_key}]", value, "must be a string"))
    return causes


def validate_secret_data(secret: dict[str, Any]) -> list[Cause]:
    """Secret data keys, and values that are valid base64."""
    causes = _validate_data_keys(secret, "data")
    for data_key, value in (secret.get("data") or {}).items():
        if isinstance(value, str):
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                causes.append(invalid(f"data[{data_key}]", "<value>", "must be base64-encoded"))
    return causes


def validate_object(resource: Resource, obj: dict[str, Any]) -> list[Cause]:
    """Every rule for a new or updated object of *resource*."""
    causes = validate_metadata(resource, obj.get("metadata") or {})
    if resource is JOBS:
        causes += validate_job(obj)
    elif resource is PODS:
        causes += validate_pod_spec(obj.get("spec"), "spec")
    elif resource is CONFIG_MAPS:
        causes += _validate_data_keys(obj, "data") + _validate_data_keys(obj, "binaryData")
    elif resource is SECRETS:
        causes += validate_secret_data(obj)
    elif resource is LEASES:
        causes += _non_negative(obj.get("spec") or {}, "leaseDurationSeconds", "spec", positive=True)
    return causes


# Pod spec fields a client may change after creation (Kubernetes: images, deadline, tolerations).
_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations")


def _pod_spec_without_mutable(spec: dict[str, Any]) -> dict[str, Any]:
    stripped = {k: v for k, v in spec.items() if k not in _POD_MUTABLE}
    for key in ("initContainers", "containers"):
        if isinstance(stripped.get(key), list):
            stripped[key] = [
                {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                for c in stripped[key]
            ]
    return stripped


def validate_update(resource: Resource, old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Immutability rules of an update: Job selector/template/completions, Pod spec."""
    if resource is JOBS:
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        causes = []
        if old_spec.get("selector") != new_spec.get("selector"):
            causes.append(invalid("spec.selector", new_spec.get("selector"), "field is immutable"))
        if old_spec.get("completions") != new_spec.get("completions"):
            causes.append(invalid("spec.completions", new_spec.get("completions"), "field is immutable"))
        never_started = not (old.get("status") or {}).get("startTime")
        if old_spec.get("template") != new_spec.get("template") and not (
            old_spec.get("suspend") and never_started
        ):
            causes.append(invalid("spec.template", "", "field is immutable"))
        return causes
    if resource is PODS:
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        if _pod_spec_without_mutable(old_spec) != _pod_spec_without_mutable(new_spec):
            return [
                forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`, "
                    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations`",
                )
            ]
    return []
