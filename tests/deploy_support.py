"""A small `kustomize build` for the tests of deploy/kubernetes (there is no kustomize binary here).

It implements exactly the kustomization features deploy/kubernetes uses, in kustomize's order, and
refuses any other field by name, so a manifest change that needs more fails loudly instead of being
validated wrongly:

- ``resources`` (files and directories holding a kustomization) and ``components``;
- ``configMapGenerator`` and ``secretGenerator`` (``files``, ``literals``, a Secret's ``type``) with
  ``generatorOptions.disableNameSuffixHash``;
- transformers, in kustomize's built-in order: ``patches`` (strategic merge, matched by kind and
  name), ``namespace`` (including a Namespace object's own name and the namespace of RoleBinding
  subjects naming a ServiceAccount of the build), ``labels``, ``replicas``, ``images``,
  ``replacements`` (field paths with ``[key=value]`` list selectors).

Also the shared readers of the tests: YAML documents, Dockerfile instructions, compose volumes.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.k8s_emulator.patches import strategic_merge_patch

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
KUSTOMIZE = DEPLOY / "kubernetes"

_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SUPPORTED = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "components",
        "namespace",
        "labels",
        "configMapGenerator",
        "secretGenerator",
        "generatorOptions",
        "patches",
        "replicas",
        "images",
        "replacements",
    }
)
# Kinds with no namespace (the ones a bucketrun manifest could plausibly contain).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)
_SCALABLE = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"})
_PATH_TOKEN = re.compile(r"\[(?P<key>[^=\]]+)=(?P<value>[^\]]*)\]|(?P<field>[^.\[\]]+)")


class KustomizeError(ValueError):
    """The kustomization uses something this loader does not emulate, or is inconsistent."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of *path*."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def kustomization_file(directory: Path) -> Path:
    """The kustomization file of *directory*; KustomizeError naming the directory when there is none."""
    for name in _KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise KustomizeError(f"{directory} holds no kustomization.yaml")


def build(directory: Path, kustomization: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The objects `kustomize build directory` prints; *kustomization* replaces the file's contents
    (paths still relative to *directory*), for tests composing an overlay in memory."""
    spec = kustomization if kustomization is not None else load_documents(kustomization_file(directory))[0]
    unknown = set(spec) - _SUPPORTED
    if unknown:
        raise KustomizeError(f"{directory}: kustomization fields not emulated by the test: {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources") or []:
        target = (directory / entry).resolve()
        objects += build(target) if target.is_dir() else [copy.deepcopy(d) for d in load_documents(target)]
    for entry in spec.get("components") or []:
        objects = _apply_component((directory / entry).resolve(), objects)
    objects += _generate(directory, spec)
    _check_unique(objects, directory)
    return _transform(directory, spec, objects)


def _apply_component(directory: Path, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = load_documents(kustomization_file(directory))[0]
    if spec.get("kind") != "Component":
        raise KustomizeError(f"{directory} is listed under components but is a {spec.get('kind')}")
    own = {key: value for key, value in spec.items() if key != "resources"}
    added = [
        copy.deepcopy(d) for entry in spec.get("resources") or [] for d in load_documents(directory / entry)
    ]
    return _transform(directory, own, objects + added)


def _generate(directory: Path, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ConfigMaps and Secrets of the kustomization's generators (a Secret's data base64-encoded)."""
    generated = []
    for field, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        generators = spec.get(field) or []
        if generators and not (spec.get("generatorOptions") or {}).get("disableNameSuffixHash"):
            raise KustomizeError(
                f"{directory}: {field} with a name hash is not emulated (nor the renaming of its "
                "references); set generatorOptions.disableNameSuffixHash or teach tests/deploy_support.py"
            )
        for generator in generators:
            data = _generated_data(directory, generator)
            document: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": kind,
                "metadata": {"name": generator["name"]},
            }
            if kind == "Secret":
                document["type"] = generator.get("type", "Opaque")
                data = {key: base64.b64encode(value.encode()).decode("ascii") for key, value in data.items()}
            generated.append({**document, "data": data})
    return generated


def _generated_data(directory: Path, generator: Mapping[str, Any]) -> dict[str, str]:
    data: dict[str, str] = {}
    for entry in generator.get("files") or []:
        key, _, source = entry.rpartition("=") if "=" in entry else ("", "", entry)
        path = directory / source
        data[key or path.name] = path.read_text(encoding="utf-8")
    for literal in generator.get("literals") or []:
        key, _, value = literal.partition("=")
        data[key] = value
    return data


def _check_unique(objects: list[dict[str, Any]], directory: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"{directory}: {key[0]} {key[1]!r} is defined twice")
        seen.add(key)


def _transform(
    directory: Path, spec: Mapping[str, Any], objects: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    for entry in spec.get("patches") or []:
        _apply_patches(directory, entry, objects)
    if spec.get("namespace"):
        _set_namespace(objects, spec["namespace"])
    for entry in spec.get("labels") or []:
        _add_labels(entry, objects)
    for entry in spec.get("replicas") or []:
        scalable = [o for o in objects if o["kind"] in _SCALABLE and o["metadata"]["name"] == entry["name"]]
        if len(scalable) != 1:
            raise KustomizeError(f"replicas: {len(scalable)} workloads named {entry['name']!r}, expected 1")
        scalable[0]["spec"]["replicas"] = entry["count"]
    for entry in spec.get("images") or []:
        for obj in objects:
            _set_images(obj, entry)
    for entry in spec.get("replacements") or []:
        _replace(entry, objects)
    return objects


def _find(objects: list[dict[str, Any]], kind: str | None, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["metadata"]["name"] == name and kind in (None, o["kind"])]
    if len(found) != 1:
        raise KustomizeError(f"{len(found)} objects match kind {kind or '(any)'} name {name!r}, expected 1")
    return found[0]


def _apply_patches(directory: Path, entry: Mapping[str, Any], objects: list[dict[str, Any]]) -> None:
    if set(entry) - {"path", "patch"}:
        raise KustomizeError(f"{directory}: only target-less strategic merge patches are emulated: {entry}")
    patches = (
        load_documents(directory / entry["path"])
        if "path" in entry
        else list(yaml.safe_load_all(entry["patch"]))
    )
    for patch in patches:
        target = _find(objects, patch["kind"], patch["metadata"]["name"])
        target.update(strategic_merge_patch(target, patch))


def _set_namespace(objects: list[dict[str, Any]], namespace: str) -> None:
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    for obj in objects:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
        elif obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
        if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and subject.get("name") in accounts:
                    subject["namespace"] = namespace


def _add_labels(entry: Mapping[str, Any], objects: list[dict[str, Any]]) -> None:
    if entry.get("includeSelectors") or entry.get("includeTemplates"):
        raise KustomizeError("labels with includeSelectors/includeTemplates are not emulated")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(entry["pairs"])


def _set_images(node: Any, entry: Mapping[str, Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _set_images(item, entry)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("containers", "initContainers") and isinstance(value, list):
            for container in value:
                container["image"] = _new_image(container["image"], entry)
        else:
            _set_images(value, entry)


def _new_image(image: str, entry: Mapping[str, Any]) -> str:
    name = image.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    if name != entry["name"]:
        return image
    new_name = entry.get("newName", name)
    if "digest" in entry:
        return f"{new_name}@{entry['digest']}"
    tag = entry.get("newTag", image[len(name) + 1 :] if len(image) > len(name) else "")
    return f"{new_name}:{tag}" if tag else new_name


def field_path(path: str) -> list[str | tuple[str, str]]:
    """kustomize's field path: dotted fields, ``[key=value]`` picks the list item with that key."""
    tokens: list[str | tuple[str, str]] = []
    for match in _PATH_TOKEN.finditer(path):
        tokens.append(match["field"] if match["field"] else (match["key"], match["value"]))
    return tokens


def get_field(obj: Any, path: str) -> Any:
    """The value at the kustomize field *path* of *obj*; KustomizeError naming the missing step."""
    current = obj
    for token in field_path(path):
        current = _step(current, token, path)
    return current


def _step(current: Any, token: str | tuple[str, str], path: str) -> Any:
    if isinstance(token, tuple):
        key, value = token
        items = [i for i in current or [] if isinstance(i, dict) and str(i.get(key)) == value]
        if len(items) != 1:
            raise KustomizeError(f"field path {path!r}: {len(items)} list items with {key}={value}")
        return items[0]
    if not isinstance(current, dict) or token not in current:
        raise KustomizeError(f"field path {path!r}: no field {token!r}")
    return current[token]


def _replace(entry: Mapping[str, Any], objects: list[dict[str, Any]]) -> None:
    source = entry["source"]
    value = get_field(_find(objects, source.get("kind"), source["name"]), source["fieldPath"])
    for target in entry["targets"]:
        selected = target["select"]
        obj = _find(objects, selected.get("kind"), selected["name"])
        for path in target["fieldPaths"]:
            tokens = field_path(path)
            parent = obj
            for token in tokens[:-1]:
                parent = _step(parent, token, path)
            last = tokens[-1]
            if not isinstance(last, str) or not isinstance(parent, dict) or last not in parent:
                raise KustomizeError(f"replacement target {path!r} does not exist in {selected['name']}")
            parent[last] = value


# -- other readers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction (continuation lines joined), with the stage it belongs to."""

    keyword: str
    arguments: str
    stage: int


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """The instructions of the Dockerfile at *path*; stage 0 holds what comes before the first FROM."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions = []
    stage = 0
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
    return instructions


def compose_bind_mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(host path, container path) of each bind mount of a compose service (named volumes skipped)."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                yield str(volume["source"]), str(volume["target"])
            continue
        source, _, rest = str(volume).partition(":")
        if source.startswith((".", "/", "$", "~")):
            yield source, rest.split(":", 1)[0]
