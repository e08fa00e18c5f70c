"""The apiserver's verbs over the store: create, get, list, update, patch, delete, with their semantics.

HTTP handlers and the emulated controllers both go through here, so a Job's pods are created and
garbage-collected exactly as a client's objects are. Every method takes and returns plain JSON dicts.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import json
import uuid
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from typing import Any

from tests.k8s_emulator import errors, resources
from tests.k8s_emulator.clock import rfc3339
from tests.k8s_emulator.defaulting import apply_create_defaults, apply_update_defaults
from tests.k8s_emulator.names import generate_name
from tests.k8s_emulator.patches import apply_patch
from tests.k8s_emulator.resources import JOBS, NAMESPACES, Resource
from tests.k8s_emulator.selectors import Selection
from tests.k8s_emulator.store import Store
from tests.k8s_emulator.validation import invalid, validate_object, validate_update

_SERVER_SET_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
)
_GENERATE_NAME_ATTEMPTS = 8
BACKGROUND, FOREGROUND, ORPHAN = "Background", "Foreground", "Orphan"
PROPAGATION_POLICIES = (BACKGROUND, FOREGROUND, ORPHAN)
JOB_ORPHAN_WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background '
    'to remove them or set propagationPolicy=Orphan to suppress this warning"'
)


def clone(obj: Any) -> Any:
    """A deep copy of a JSON document (faster than copy.deepcopy for plain JSON)."""
    return json.loads(json.dumps(obj))


def _body_without_version(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


@dataclass
class DeleteResult:
    """What a delete answers: the object as deleted (or marked for deletion) and any Warning headers."""

    obj: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeleteOptions:
    """The parts of metav1.DeleteOptions the emulator honours."""

    propagation: str | None = None
    uid: str | None = None
    resource_version: str | None = None

    @classmethod
    def from_request(cls, query: dict[str, str], body: Any) -> DeleteOptions:
        """Options from the query string and/or a DeleteOptions body (the query wins, as in Kubernetes)."""
        body = body if isinstance(body, dict) else {}
        propagation = query.get("propagationPolicy") or body.get("propagationPolicy")
        if propagation is None and body.get("orphanDependents") is not None:
            propagation = ORPHAN if body["orphanDependents"] else BACKGROUND
        if propagation is not None and propagation not in PROPAGATION_POLICIES:
            raise errors.bad_request(
                f"propagationPolicy {propagation!r} is not one of {', '.join(PROPAGATION_POLICIES)}"
            )
        preconditions = body.get("preconditions") or {}
        return cls(propagation, preconditions.get("uid"), preconditions.get("resourceVersion"))


class Objects:
    """The verbs of the Kubernetes API over a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _namespace_key(resource: Resource, namespace: str | None) -> str:
        return (namespace or "") if resource.namespaced else ""

    def _require(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        current = self.store.get(resource.plural, self._namespace_key(resource, namespace), name)
        if current is None:
            raise errors.not_found(resource, name)
        return current

    @staticmethod
    def _check_type(resource: Resource, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise errors.bad_request(
                f"the body of the request must be a JSON object describing a {resource.kind}"
            )
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind not in (None, "", resource.kind):
            raise errors.bad_request(
                f"the kind in the body ({kind}) does not match the resource ({resource.kind})"
            )
        if api_version not in (None, "", resource.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({resource.api_version})"
            )
        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be a JSON object")
        return meta

    @staticmethod
    def _check_namespace(resource: Resource, meta: dict[str, Any], namespace: str | None) -> None:
        if not resource.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace

    @staticmethod
    def _raise_if_invalid(resource: Resource, obj: dict[str, Any], causes: list[dict[str, str]]) -> None:
        if causes:
            raise errors.invalid(resource, str(obj["metadata"].get("name") or ""), causes)

    # -- create / read -------------------------------------------------------------------------------

    def create(self, resource: Resource, namespace: str | None, body: Any) -> dict[str, Any]:
        """POST: stamp metadata, default, validate, resolve generateName, refuse duplicates (409)."""
        obj: dict[str, Any] = clone(body)
        meta = self._check_type(resource, obj)
        self._check_namespace(resource, meta, namespace)
        for key in _SERVER_SET_METADATA:
            meta.pop(key, None)
        prefix = meta.get("generateName")
        generated = bool(prefix) and not meta.get("name")
        if generated:
            if not isinstance(prefix, str):
                raise errors.invalid(
                    resource, "", [invalid("metadata.generateName", prefix, "must be a string")]
                )
            meta["name"] = generate_name(str(prefix))
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339()
        if resource.tracks_generation:
            meta["generation"] = 1
        if meta.get("name"):
            apply_create_defaults(resource, obj)
        self._raise_if_invalid(resource, obj, validate_object(resource, obj))
        ns_key = self._namespace_key(resource, namespace)
        # Like the apiserver, a generated name that happens to be taken is drawn again a few times.
        attempts = _GENERATE_NAME_ATTEMPTS if generated else 1
        for _ in range(attempts - 1):
            if self.store.get(resource.plural, ns_key, meta["name"]) is None:
                break
            self._rename(resource, obj, generate_name(str(prefix)))
        if self.store.get(resource.plural, ns_key, meta["name"]) is not None:
            raise errors.already_exists(resource, meta["name"])
        return self.store.put(resource.plural, obj)

    @staticmethod
    def _rename(resource: Resource, obj: dict[str, Any], name: str) -> None:
        obj["metadata"]["name"] = name
        if resource is JOBS:
            # The Job's pod-template labels carry its name; re-derive them for the new name.
            apply_create_defaults(resource, obj)

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """GET one object; 404 if absent."""
        return self._require(resource, namespace, name)

    def list(
        self,
        resource: Resource,
        selection: Selection,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        """LIST with selectors and `limit`/`continue` paging; metadata.resourceVersion is the listed revision.

        A continued list reads the current objects after the token's key (not a snapshot), but a token older
        than the compacted revision expires with 410, as the apiserver's do.
        """
        list_revision = self.store.revision
        start_after: tuple[str, str] | None = None
        if continue_token:
            list_revision, start_after = self._decode_continue(continue_token)
        namespace = selection.namespace if resource.namespaced else None
        keys = self._candidates(resource, selection, namespace)
        first = bisect.bisect_right(keys, start_after) if start_after is not None else 0
        enough = limit + 1 if limit is not None and limit > 0 else None  # one more: is there a next page?
        items: list[dict[str, Any]] = []
        for ns_key, name in itertools.islice(keys, first, None):
            obj = self.store.get(resource.plural, ns_key, name)
            if obj is not None and selection.matches(obj):
                items.append(obj)
                if len(items) == enough:
                    break
        metadata: dict[str, Any] = {"resourceVersion": str(list_revision)}
        if limit is not None and 0 < limit < len(items):
            items = items[:limit]
            metadata["continue"] = self._encode_continue(list_revision, self._sort_key(items[-1]))
            if not selection.labels.requirements and not selection.fields.terms:
                # Without selectors every key after the token is an item: the rest is counted, not read.
                metadata["remainingItemCount"] = len(keys) - first - limit
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }

    def _candidates(
        self, resource: Resource, selection: Selection, namespace: str | None
    ) -> list[tuple[str, str]]:
        """Keys (namespace, name) of the objects a list must look at, in etcd key order: those the
        label index names for the selector's most selective `=`/`in` requirement, else every object."""
        plural = resource.plural
        narrowest: list[Set[tuple[str, str]]] | None = None
        size = self.store.count(plural, namespace)
        for requirement in selection.labels.requirements:
            if requirement.operator not in ("=", "in"):
                continue
            found = [self.store.labelled(plural, requirement.key, value) for value in requirement.values]
            if sum(len(keys) for keys in found) < size:
                narrowest, size = found, sum(len(keys) for keys in found)
        if narrowest is None:
            return self.store.keys(plural, namespace)
        named = narrowest[0] if len(narrowest) == 1 else set().union(*narrowest)  # `in (a, a)` names a once
        return sorted(key for key in named if namespace is None or key[0] == namespace)

    @staticmethod
    def _sort_key(obj: dict[str, Any]) -> tuple[str, str]:
        return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    @staticmethod
    def _encode_continue(revision: int, key: tuple[str, str]) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": list(key)}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    def _decode_continue(self, token: str) -> tuple[int, tuple[str, str]]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            revision, start = int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
            raise errors.bad_request(f"continue key is not valid: {token!r}") from None
        if revision < self.store.compacted_revision:
            raise errors.expired(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter."
            )
        return revision, start

    # -- update / patch ------------------------------------------------------------------------------

    def update(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PUT with optimistic concurrency (409 on a stale resourceVersion); `/status` writes only status."""
        current = self._require(resource, namespace, name)
        obj = clone(body)
        meta = self._check_type(resource, obj)
        if meta.get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        self._check_namespace(resource, meta, namespace)
        return self._write_update(resource, current, obj, subresource=subresource)

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PATCH (merge, strategic merge); a resourceVersion in the patch is a precondition."""
        current = self._require(resource, namespace, name)
        patched = apply_patch(content_type, clone(current), patch)
        if not isinstance(patched, dict):
            raise errors.ApiError(422, f"the patched {resource.kind} is not a JSON object")
        meta = self._check_type(resource, patched)
        meta["name"], meta["uid"] = current["metadata"]["name"], current["metadata"]["uid"]
        self._check_namespace(resource, meta, namespace)
        return self._write_update(resource, current, patched, subresource=subresource)

    def _write_update(
        self,
        resource: Resource,
        current: dict[str, Any],
        obj: dict[str, Any],
        *,
        subresource: str | None,
    ) -> dict[str, Any]:
        meta, current_meta = obj["metadata"], current["metadata"]
        name = current_meta["name"]
        wanted = meta.get("resourceVersion")
        if wanted and wanted != current_meta["resourceVersion"]:
            raise errors.conflict(resource, name)
        if meta.get("uid") and meta["uid"] != current_meta["uid"]:
            raise errors.precondition_failed(resource, name, "UID", meta["uid"], current_meta["uid"])
        new: dict[str, Any]
        if subresource == "status":
            new = clone(current)
            new["status"] = obj.get("status") if obj.get("status") is not None else {}
        else:
            new = obj
            for key in (
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if key in current_meta:
                    meta[key] = current_meta[key]
                else:
                    meta.pop(key, None)
            if resource.has_status:
                new["status"] = clone(current.get("status", {}))
            apply_update_defaults(resource, new)
            causes = validate_object(resource, new) + validate_update(resource, current, new)
            self._raise_if_invalid(resource, new, causes)
            if resource.tracks_generation and _spec_part(new) != _spec_part(current):
                meta["generation"] = int(current_meta.get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = current_meta["resourceVersion"]
        if new == current:
            return current  # a no-op write takes no revision, as in the apiserver
        return self._store_or_finish_deletion(resource, new)

    def _store_or_finish_deletion(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.store.put(resource.plural, obj)
            removed = self.store.remove(resource.plural, meta.get("namespace", ""), meta["name"])
            return removed or obj
        return self.store.put(resource.plural, obj)

    def write(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Store *obj* as a controller would (no validation, no status rules); the caller owns *obj*."""
        return self.store.put(resource.plural, obj)

    def mutate(
        self, resource: Resource, namespace: str | None, name: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any] | None:
        """Controller write: apply *change* to a copy of the object and store it; None if it is gone.

        Nothing is written when *change* leaves the object as it was.
        """
        current = self.store.get(resource.plural, self._namespace_key(resource, namespace), name)
        if current is None:
            return None
        new: dict[str, Any] = clone(current)
        change(new)
        if new == current:
            return current
        return self.store.put(resource.plural, new)

    # -- delete --------------------------------------------------------------------------------------

    def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        options: DeleteOptions | None = None,
    ) -> DeleteResult:
        """DELETE with preconditions, finalizers and owner propagation (Background/Foreground/Orphan).

        Jobs default to Orphan, as batch/v1 does for backward compatibility (with the apiserver's warning).
        """
        options = options or DeleteOptions()
        current = self._require(resource, namespace, name)
        meta = current["metadata"]
        if options.uid and options.uid != meta["uid"]:
            raise errors.precondition_failed(resource, name, "UID", options.uid, meta["uid"])
        if options.resource_version and options.resource_version != meta["resourceVersion"]:
            raise errors.precondition_failed(
                resource, name, "ResourceVersion", options.resource_version, meta["resourceVersion"]
            )
        warnings = []
        propagation = options.propagation
        if propagation is None:
            propagation = ORPHAN if resource is JOBS else BACKGROUND
            if resource is JOBS:
                warnings.append(JOB_ORPHAN_WARNING)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return DeleteResult(current, warnings)
            marked = clone(current)
            marked["metadata"]["deletionTimestamp"] = rfc3339()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            return DeleteResult(self.store.put(resource.plural, marked), warnings)
        return DeleteResult(self._delete_now(resource, current, propagation), warnings)

    def _delete_now(self, resource: Resource, current: dict[str, Any], propagation: str) -> dict[str, Any]:
        meta = current["metadata"]
        ns_key = meta.get("namespace", "")
        if resource is NAMESPACES:
            self.delete_namespace_contents(meta["name"])
        if propagation == FOREGROUND:
            self._delete_dependents(meta["uid"], FOREGROUND)
        removed = self.store.remove(resource.plural, ns_key, meta["name"])
        if propagation == BACKGROUND:
            self._delete_dependents(meta["uid"], BACKGROUND)
        elif propagation == ORPHAN:
            self._orphan_dependents(meta["uid"])
        return removed or current

    def _delete_dependents(self, owner_uid: str, propagation: str) -> None:
        for plural, namespace, name in self.store.dependents(owner_uid):
            dependent = self.store.get(plural, namespace, name)
            if dependent is not None:
                self._delete_now(resources.by_plural(plural), dependent, propagation)

    def _orphan_dependents(self, owner_uid: str) -> None:
        for plural, namespace, name in self.store.dependents(owner_uid):

            def drop_owner(obj: dict[str, Any]) -> None:
                refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
                if refs:
                    obj["metadata"]["ownerReferences"] = refs
                else:
                    obj["metadata"].pop("ownerReferences", None)

            self.mutate(resources.by_plural(plural), namespace or None, name, drop_owner)

    def delete_collection(
        self, resource: Resource, selection: Selection, options: DeleteOptions | None = None
    ) -> dict[str, Any]:
        """DELETE on a collection: every selected object; answers the list of what was deleted."""
        deleted = []
        for obj in self.list(resource, selection)["items"]:
            meta = obj["metadata"]
            if self.store.get(resource.plural, meta.get("namespace", ""), meta["name"]) is None:
                continue  # already gone with an owner deleted earlier in this loop
            deleted.append(self.delete(resource, meta.get("namespace"), meta["name"], options).obj)
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self.store.revision)},
            "items": deleted,
        }

    def delete_namespace_contents(self, namespace: str) -> int:
        """Delete every object in *namespace* (pods last-but-cascading via their Jobs); returns how many."""
        count = 0
        for resource in resources.ALL_RESOURCES:
            if not resource.namespaced:
                continue
            for obj in self.store.list_objects(resource.plural, namespace):
                if self.store.get(resource.plural, namespace, obj["metadata"]["name"]) is None:
                    continue
                self._delete_now(resource, obj, BACKGROUND)
                count += 1
        return count
