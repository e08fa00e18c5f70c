"""Volumes as host directories, and the rewriting that stands in for mounting them.

A local process cannot mount anything, so each volume becomes a directory under the pod's workdir
(a hostPath volume is the host path itself; a persistentVolumeClaim volume is the hostPath or local
path of the PersistentVolume its claim is bound to, as a kubelet mounts a bound claim) and every
occurrence of a mountPath in a container's env values, command, args and workingDir is replaced by
that directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from dispatcher.domain.quantity import parse_quantity
from dispatcher.executors.local.pod.environment import PodSources
from dispatcher.executors.local.pod.expansion import expand_with
from dispatcher.executors.local.pod.fields import field_value, resource_value
from dispatcher.executors.local.pod.model import ClaimRefs
from dispatcher.executors.local.pod.spec import VolumeMount

# A PersistentVolume's spec fields that are not its volume source.
_PV_FIELDS_NOT_SOURCES = frozenset(
    {
        "accessModes",
        "capacity",
        "claimRef",
        "mountOptions",
        "nodeAffinity",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "volumeAttributesClassName",
        "volumeMode",
    }
)
_TOKEN_SECONDS = 3600  # a projected token's default expirationSeconds
# Kubernetes' default file mode for configMap, secret, downwardAPI and projected volumes (0644).
DEFAULT_MODE = 0o644
_NOT_WRITABLE = ~0o222 & 0o7777
# Characters that continue a path name: a mountPath only matches where none of them touch it.
_PATH_CHAR_BEFORE = r"[\w.~/-]"
_PATH_CHAR_AFTER = r"[\w.~-]"


class VolumeError(Exception):
    """A volume cannot be provided (missing ConfigMap/Secret or key, unsupported type); names it."""


def materialize(volume: Mapping[str, Any], root: Path, sources: PodSources) -> Path:
    """Create *volume* as a directory under *root* and return the host path that stands for it."""
    name: str = volume["name"]
    kinds = (*_FILE_WRITERS, "emptyDir", "hostPath", "persistentVolumeClaim")
    kind = next((kind for kind in kinds if kind in volume), None)
    if kind is None:
        others = sorted(key for key in volume if key != "name")
        raise VolumeError(
            f"volume {name!r}: {'/'.join(others) or 'untyped'} volumes are not supported by the local runner"
        )
    directory = root / name
    try:
        if kind == "emptyDir":
            directory.mkdir(parents=True, exist_ok=True)
        elif kind == "hostPath":
            directory = _host_path(volume["hostPath"])
        elif kind == "persistentVolumeClaim":
            directory = claimed_directory(volume["persistentVolumeClaim"]["claimName"], sources.refs)
        else:
            source: Mapping[str, Any] = volume[kind]
            files = _FILE_WRITERS[kind](source, source.get("defaultMode", DEFAULT_MODE), sources)
            directory.mkdir(parents=True, exist_ok=True)
            for path, content, mode in files:
                _write_read_only(directory / path, content, mode)
    except (VolumeError, OSError) as error:
        raise VolumeError(f"volume {name!r}: {error}") from error
    return directory


def mount_source(mount: VolumeMount, volume_dir: Path, env: Mapping[str, str]) -> Path:
    """The host path a mount stands for: the volume's directory, or its subPath (created if missing)."""
    sub_path = mount.sub_path or expand_with(mount.sub_path_expr, env)
    if not sub_path:
        return volume_dir
    pure = PurePosixPath(sub_path)
    if pure.is_absolute() or ".." in pure.parts:
        raise VolumeError(
            f"subPath of volume {mount.volume!r} must be relative without '..', got {sub_path!r}"
        )
    target = volume_dir / sub_path
    if not target.exists():
        # Kubernetes creates a missing subPath as a directory.
        target.mkdir(parents=True)
    return target


class PathRewriter:
    """Replaces mountPaths by host paths wherever a mountPath stands as a whole path or path prefix.

    "/out", "/out/x", "OUT=/out", "a:/out/b" match the mountPath /out; "/outdir", "/out.txt" and
    "/data/out" do not. Longer mountPaths win, so a mount nested in another maps correctly.
    """

    def __init__(self, mounts: Mapping[str, Path]) -> None:
        self._mounts = {path: str(host) for path, host in mounts.items()}
        ordered = sorted(self._mounts, key=len, reverse=True)
        alternatives = "|".join(re.escape(path) for path in ordered)
        self._pattern = (
            re.compile(f"(?<!{_PATH_CHAR_BEFORE})({alternatives})(?!{_PATH_CHAR_AFTER})") if ordered else None
        )

    def __call__(self, text: str) -> str:
        """*text* with every mountPath occurrence replaced by its host path."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: self._mounts[match[1]], text)


def _host_path(source: Mapping[str, Any]) -> Path:
    path = Path(source["path"])
    kind = source.get("type", "")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif not path.exists():
        raise VolumeError(f"hostPath {str(path)!r} does not exist on this host")
    return path


def claimed_directory(claim_name: str, refs: object) -> Path:
    """The host directory of the PersistentVolume that claim *claim_name* is bound to, as a kubelet
    finds it: the claim (the pod's namespace) must be Bound with a volumeName, that volume's claimRef
    must name this claim (its uid), and the volume must be a hostPath or local one. VolumeError says
    which step failed: the kubelet keeps the pod's containers in ContainerCreating until it succeeds.
    """
    if not isinstance(refs, ClaimRefs):
        raise VolumeError("persistentVolumeClaim volumes need refs that can read claims (the node agent's)")
    claim = refs.persistent_volume_claim(claim_name)
    if claim is None:
        raise VolumeError(f"persistentvolumeclaim {claim_name!r} not found")
    phase = str((claim.get("status") or {}).get("phase", ""))
    volume_name = str((claim.get("spec") or {}).get("volumeName") or "")
    if phase != "Bound" or not volume_name:
        raise VolumeError(
            f"persistentvolumeclaim {claim_name!r} is not bound (phase {phase or 'none'!r}, "
            f"volumeName {volume_name!r})"
        )
    volume = refs.persistent_volume(volume_name)
    if volume is None:
        raise VolumeError(f"persistentvolume {volume_name!r} of claim {claim_name!r} not found")
    spec = volume.get("spec") or {}
    claim_ref = spec.get("claimRef") or {}
    claim_meta = claim.get("metadata") or {}
    if claim_ref.get("name") != claim_name or claim_ref.get("uid") != claim_meta.get("uid"):
        raise VolumeError(f"persistentvolume {volume_name!r} is bound to another claim than {claim_name!r}")
    if "hostPath" in spec:
        return _host_path(spec["hostPath"])
    if "local" in spec:
        path = Path(spec["local"]["path"])
        if not path.exists():
            raise VolumeError(f"local path {str(path)!r} of persistentvolume {volume_name!r} does not exist")
        return path
    sources = "/".join(sorted(set(spec) - _PV_FIELDS_NOT_SOURCES))
    raise VolumeError(
        f"persistentvolume {volume_name!r}: only hostPath and local volumes are supported by the local "
        f"runner, not {sources or 'this one'}"
    )


_Files = list[tuple[str, bytes, int]]


def _config_map_files(source: Mapping[str, Any], mode: int, sources: PodSources) -> _Files:
    data = sources.refs.config_map(source["name"])
    encoded = None if data is None else {key: value.encode() for key, value in data.items()}
    return _key_files(encoded, source, mode, f"configmap {source['name']!r}")


def _secret_files(source: Mapping[str, Any], mode: int, sources: PodSources) -> _Files:
    name = source.get("secretName", source.get("name"))
    return _key_files(sources.refs.secret(name), source, mode, f"secret {name!r}")


def _key_files(data: Mapping[str, bytes] | None, source: Mapping[str, Any], mode: int, what: str) -> _Files:
    optional = bool(source.get("optional", False))
    if data is None:
        if optional:
            return []
        raise VolumeError(f"{what} not found")
    items = source.get("items")
    if not items:
        unsafe = sorted(key for key in data if "/" in key or key in {".", ".."} or not key)
        if unsafe:
            raise VolumeError(f"{what} has keys that are not file names: {unsafe}")
        return [(key, value, mode) for key, value in sorted(data.items())]
    files: _Files = []
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise VolumeError(f"key {item['key']!r} not found in {what}")
        files.append((item["path"], data[item["key"]], item.get("mode", mode)))
    return files


def _downward_files(source: Mapping[str, Any], mode: int, sources: PodSources) -> _Files:
    files: _Files = []
    for item in source.get("items", []):
        if "fieldRef" in item:
            value = field_value(sources.pod, item["fieldRef"]["fieldPath"])
        else:
            ref = item["resourceFieldRef"]
            target = ref.get("containerName", "")
            if target not in sources.resources:
                raise VolumeError(f"resourceFieldRef names unknown container {target!r}")
            divisor = parse_quantity(ref.get("divisor", "1"))
            value = resource_value(sources.resources[target], sources.node, ref["resource"], divisor)
        files.append((item["path"], value.encode(), item.get("mode", mode)))
    return files


def _projected_files(source: Mapping[str, Any], mode: int, sources: PodSources) -> _Files:
    files: _Files = []
    for projection in source.get("sources", []):
        if "configMap" in projection:
            files += _config_map_files(projection["configMap"], mode, sources)
        elif "secret" in projection:
            files += _secret_files(projection["secret"], mode, sources)
        elif "downwardAPI" in projection:
            files += _downward_files(projection["downwardAPI"], mode, sources)
        elif "serviceAccountToken" in projection and hasattr(sources.refs, "service_account_token"):
            files.append(_token_file(projection["serviceAccountToken"], mode, sources))
        else:
            kinds = "/".join(sorted(projection))
            raise VolumeError(f"projected {kinds} sources are not supported by the local runner")
    return files


def _token_file(source: Mapping[str, Any], mode: int, sources: PodSources) -> tuple[str, bytes, int]:
    """A projected ServiceAccount token, from refs that can request one (the node agent's)."""
    audience = str(source.get("audience", ""))
    expiration = int(source.get("expirationSeconds", _TOKEN_SECONDS))
    token: bytes | None = sources.refs.service_account_token(audience, expiration)  # type: ignore[attr-defined]
    if token is None:
        raise VolumeError(f"no service account token for audience {audience!r} could be requested")
    return source["path"], token, mode


_FILE_WRITERS: Mapping[str, Callable[[Mapping[str, Any], int, PodSources], _Files]] = {
    "configMap": _config_map_files,
    "secret": _secret_files,
    "downwardAPI": _downward_files,
    "projected": _projected_files,
}


def _write_read_only(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A projected volume may write a path twice; the first file is already read-only.
    path.unlink(missing_ok=True)
    path.write_bytes(content)
    # These volumes are read-only in Kubernetes; dropping the write bits is the cheap local equivalent.
    path.chmod(mode & _NOT_WRITABLE)
