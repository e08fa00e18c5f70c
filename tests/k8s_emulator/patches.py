"""PATCH bodies applied to an object: JSON merge patch, strategic merge patch, JSON patch (pure).

Strategic merge is reduced to what bucketrun's objects need: merge patch semantics, except that the
lists Kubernetes declares with a patch merge key (containers by name, conditions by type, …) are merged
element by element, `$patch: delete` removes an element, and `finalizers` merge as a set.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.k8s_emulator.errors import ApiError, bad_request

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


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"json patch path {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    current = doc
    for part in parts[:-1]:
        current = _child(current, part, path)
    return current


def _child(container: Any, part: str, path: str) -> Any:
    if isinstance(container, dict):
        if part not in container:
            raise ApiError(422, f"json patch: path {path!r} does not exist (missing {part!r})")
        return container[part]
    if isinstance(container, list):
        index = _index(container, part, path, allow_end=False)
        return container[index]
    raise ApiError(422, f"json patch: path {path!r} goes through a scalar at {part!r}")


def _index(container: list[Any], part: str, path: str, *, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(container)
    if not part.isdigit():
        raise ApiError(422, f"json patch: {part!r} in path {path!r} is not an array index")
    index = int(part)
    if index > len(container) or (index == len(container) and not allow_end):
        raise ApiError(422, f"json patch: index {index} in path {path!r} is out of range")
    return index


def _get(doc: Any, path: str) -> Any:
    current = doc
    for part in _pointer(path):
        current = _child(current, part, path)
    return current


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[parts[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, parts[-1], path, allow_end=True), value)
    else:
        raise ApiError(422, f"json patch: cannot add at {path!r}: parent is a scalar")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise ApiError(422, "json patch: cannot remove the whole document")
    parent = _parent(doc, parts, path)
    if isinstance(parent, dict):
        if parts[-1] not in parent:
            raise ApiError(422, f"json patch: cannot remove {path!r}: it does not exist")
        return doc, parent.pop(parts[-1])
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, parts[-1], path, allow_end=False))
    raise ApiError(422, f"json patch: cannot remove {path!r}: parent is a scalar")


def _op_add(doc: Any, operation: dict[str, Any]) -> Any:
    return _add(doc, operation["path"], copy.deepcopy(operation["value"]))


def _op_remove(doc: Any, operation: dict[str, Any]) -> Any:
    return _remove(doc, operation["path"])[0]


def _op_replace(doc: Any, operation: dict[str, Any]) -> Any:
    if _pointer(operation["path"]):
        doc = _remove(doc, operation["path"])[0]
    return _add(doc, operation["path"], copy.deepcopy(operation["value"]))


def _source(operation: dict[str, Any]) -> str:
    source = operation.get("from")
    if not isinstance(source, str):
        raise bad_request(f"json patch operation {operation['op']!r} at {operation['path']!r} needs a 'from'")
    return source


def _op_move(doc: Any, operation: dict[str, Any]) -> Any:
    doc, value = _remove(doc, _source(operation))
    return _add(doc, operation["path"], value)


def _op_copy(doc: Any, operation: dict[str, Any]) -> Any:
    return _add(doc, operation["path"], copy.deepcopy(_get(doc, _source(operation))))


def _op_test(doc: Any, operation: dict[str, Any]) -> Any:
    path, expected = operation["path"], operation["value"]
    if _get(doc, path) != expected:
        raise ApiError(422, f"json patch: test failed: the value at {path!r} is not {expected!r}")
    return doc


_OPERATIONS = {
    "add": _op_add,
    "remove": _op_remove,
    "replace": _op_replace,
    "move": _op_move,
    "copy": _op_copy,
    "test": _op_test,
}


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 (add, remove, replace, move, copy, test) on a copy of *target*."""
    if not isinstance(operations, list):
        raise bad_request("a json patch must be a JSON array of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"json patch operation {operation!r} needs 'op' and 'path'")
        apply = _OPERATIONS.get(operation["op"])
        if apply is None:
            raise bad_request(f"json patch: unknown operation {operation['op']!r}")
        if operation["op"] in {"add", "replace", "test"} and "value" not in operation:
            raise bad_request(
                f"json patch operation {operation['op']!r} at {operation['path']!r} needs a 'value'"
            )
        doc = apply(doc, operation)
    return doc


def apply_patch(content_type: str, target: Any, patch: Any) -> Any:
    """Apply *patch* to *target* per the request's Content-Type; 415 for types the emulator lacks."""
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    if media == MERGE_PATCH:
        return merge_patch(target, patch)
    if media == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(target, patch)
    if media == JSON_PATCH:
        return json_patch(target, patch)
    raise ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH} (got {media!r}; server-side apply "
        f"({APPLY_PATCH}) is not emulated)",
    )
