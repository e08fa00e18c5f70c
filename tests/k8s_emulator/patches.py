"""PATCH bodies applied to an object: JSON merge patch and strategic merge patch (pure).

Strategic merge is reduced to what bucketrun's objects need: merge patch semantics, except that the
lists Kubernetes declares with a patch merge key (containers by name, conditions by type, …) are merged
element by element, `$patch: delete` removes an element, and `finalizers` merge as a set.
"""

from __future__ import annotations

from typing import Any

from tests.k8s_emulator.errors import ApiError

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# patchMergeKey of the list fields bucketrun's objects carry (from the Kubernetes API types).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of scalars with patchStrategy "merge": the patch's items are added to the set.
_SET_LISTS = frozenset({"finalizers"})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Kubernetes' strategic merge patch, for the list fields named in this module's docstring."""
    if not isinstance(patch, dict):
        return patch
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # directives such as $setElementOrder only fix ordering, which we keep as is
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif key in _MERGE_KEYS and isinstance(value, list) and isinstance(current, list):
            result[key] = _merge_keyed_list(current, value, _MERGE_KEYS[key])
        elif key in _SET_LISTS and isinstance(value, list) and isinstance(current, list):
            result[key] = current + [item for item in value if item not in current]
        else:
            result[key] = strategic_merge_patch(current, value)
    return result


def _merge_keyed_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    if not all(isinstance(item, dict) and merge_key in item for item in patch):
        return patch  # not keyed: the list is replaced, as for an atomic list
    merged = list(current)
    for item in patch:
        positions = [
            i
            for i, old in enumerate(merged)
            if isinstance(old, dict) and old.get(merge_key) == item[merge_key]
        ]
        if item.get("$patch") == "delete":
            merged = [old for i, old in enumerate(merged) if i not in positions]
        elif positions:
            merged[positions[0]] = strategic_merge_patch(merged[positions[0]], item)
        else:
            merged.append({k: v for k, v in item.items() if k != "$patch"})
    return merged


def apply_patch(content_type: str, target: Any, patch: Any) -> Any:
    """Apply *patch* to *target* per the request's Content-Type; 415 for types the emulator lacks."""
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    if media == MERGE_PATCH:
        return merge_patch(target, patch)
    if media == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(target, patch)
    raise ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{MERGE_PATCH}, {STRATEGIC_MERGE_PATCH} (got {media!r}; JSON patch ({JSON_PATCH}) and server-side "
        f"apply ({APPLY_PATCH}) are not emulated)",
    )
