"""The Secrets, ConfigMaps and PersistentVolumeClaims a pod references, fetched for the local runner.

The runner asks for a ConfigMap or Secret synchronously, at every try to start a container, so each
pod's worker fetches the objects its pod names (env valueFrom, envFrom, secret/configMap volumes and
projected sources) before the runner starts, and again every `retry_seconds` while a container waits
for its configuration: one created after the pod is seen at the next try, and the container waiting
with CreateContainerConfigError starts. Only objects a pod references are read, one GET each: what the
Node authorizer lets a node identity (`system:node:NAME`) do. A refused read counts as missing.
Projected ServiceAccount tokens are requested before the pod starts (TokenRequest bound to the pod),
and again while a container waits for a volume; they are not rotated. Each persistentVolumeClaim
volume's claim is read with the PersistentVolume it is bound to (the Node authorizer allows both for a
pod bound to the node), at the same times: a claim bound later lets the waiting container start.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp

from bucketrun.devtools.node_agent.api import ApiClient, ApiError

logger = logging.getLogger(__name__)


def referenced(pod: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """The names of the (ConfigMaps, Secrets) the pod's containers and volumes reference."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec") or {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for source in container.get("envFrom") or []:
            _add(source.get("configMapRef"), config_maps)
            _add(source.get("secretRef"), secrets)
        for var in container.get("env") or []:
            value_from = var.get("valueFrom") or {}
            _add(value_from.get("configMapKeyRef"), config_maps)
            _add(value_from.get("secretKeyRef"), secrets)
    for volume in spec.get("volumes") or []:
        _add(volume.get("configMap"), config_maps)
        if volume.get("secret"):
            secrets.add(str(volume["secret"].get("secretName", "")))
        for source in _projected(volume):
            _add(source.get("configMap"), config_maps)
            _add(source.get("secret"), secrets)
    config_maps.discard("")
    secrets.discard("")
    return config_maps, secrets


def claim_names(pod: Mapping[str, Any]) -> set[str]:
    """The names of the PersistentVolumeClaims the pod's volumes mount."""
    names = set()
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        claim = volume.get("persistentVolumeClaim")
        if isinstance(claim, Mapping) and claim.get("claimName"):
            names.add(str(claim["claimName"]))
    return names


def token_sources(pod: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(audience, expirationSeconds) of each projected serviceAccountToken source of the pod."""
    found = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        for source in _projected(volume):
            token = source.get("serviceAccountToken")
            if isinstance(token, Mapping):
                found.append((str(token.get("audience", "")), int(token.get("expirationSeconds", 3600))))
    return found


def _projected(volume: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from (volume.get("projected") or {}).get("sources") or []


def _add(ref: Any, names: set[str]) -> None:
    if isinstance(ref, Mapping) and ref.get("name"):
        names.add(str(ref["name"]))


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's `data` decoded from base64 (a value that is not base64 is left out, with a warning)."""
    decoded = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            logger.warning(
                "secret %s key %s is not base64; left out", secret.get("metadata", {}).get("name"), key
            )
    return decoded


class FetchedRefs:
    """The runner's `PodRefs` and `ClaimRefs` for one pod: its referenced objects as last fetched."""

    def __init__(self, api: ApiClient, pod: Mapping[str, Any]) -> None:
        self._api = api
        self._namespace = str(pod["metadata"]["namespace"])
        self._wanted_config_maps, self._wanted_secrets = referenced(pod)
        self._wanted_tokens = token_sources(pod)
        self._wanted_claims = claim_names(pod)
        self._claims: dict[str, dict[str, Any]] = {}
        self._volumes: dict[str, dict[str, Any]] = {}
        self._config_maps: dict[str, dict[str, str]] = {}
        self._secrets: dict[str, dict[str, bytes]] = {}
        self._tokens: dict[tuple[str, int], bytes] = {}

    async def request_tokens(self, pod: Mapping[str, Any]) -> None:
        """Request the ServiceAccount token of each projected serviceAccountToken source not had yet
        (TokenRequest, bound to the pod, as a kubelet does). A refused request leaves that source
        unavailable until the next call: the Node authorizer refuses a node's request until it has
        seen the pod bound to that node, which can lag behind the pod reaching the node."""
        spec = pod.get("spec") or {}
        account = str(spec.get("serviceAccountName") or "default")
        for audience, expiration in token_sources(pod):
            if (audience, expiration) in self._tokens:
                continue
            body = {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": [audience] if audience else [],
                    "expirationSeconds": expiration,
                    "boundObjectRef": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": pod["metadata"]["name"],
                        "uid": pod["metadata"]["uid"],
                    },
                },
            }
            path = f"/api/v1/namespaces/{self._namespace}/serviceaccounts/{account}/token"
            try:
                answer = await self._api.create(path, body)
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                logger.warning("no token for serviceaccount %s/%s: %s", self._namespace, account, error)
                continue
            self._tokens[(audience, expiration)] = str(answer["status"]["token"]).encode()

    def service_account_token(self, audience: str, expiration_seconds: int) -> bytes | None:
        """The token requested for (*audience*, *expiration_seconds*), or None."""
        return self._tokens.get((audience, expiration_seconds))

    @property
    def empty(self) -> bool:
        """True when the pod references no Secret, ConfigMap, token or claim: nothing to fetch."""
        return not (
            self._wanted_config_maps or self._wanted_secrets or self._wanted_tokens or self._wanted_claims
        )

    async def refresh(self) -> None:
        """Fetch every referenced object again (a missing or unreadable one is forgotten)."""
        for name in sorted(self._wanted_config_maps):
            found = await self._get("configmaps", name)
            if found is None:
                self._config_maps.pop(name, None)
            else:
                self._config_maps[name] = {str(k): str(v) for k, v in (found.get("data") or {}).items()}
        for name in sorted(self._wanted_secrets):
            found = await self._get("secrets", name)
            if found is None:
                self._secrets.pop(name, None)
            else:
                self._secrets[name] = secret_data(found)
        await self._refresh_claims()

    async def _refresh_claims(self) -> None:
        """Each wanted claim and the PersistentVolume it names (a missing one is forgotten); replaced at
        once, so the runner never sees a claim without the volume fetched with it."""
        claims: dict[str, dict[str, Any]] = {}
        volumes: dict[str, dict[str, Any]] = {}
        for name in sorted(self._wanted_claims):
            claim = await self._get("persistentvolumeclaims", name)
            if claim is None:
                continue
            claims[name] = claim
            volume_name = str((claim.get("spec") or {}).get("volumeName") or "")
            volume = (
                await self._get("persistentvolumes", volume_name, namespaced=False) if volume_name else None
            )
            if volume is not None:
                volumes[volume_name] = volume
        self._claims, self._volumes = claims, volumes

    async def _get(self, plural: str, name: str, *, namespaced: bool = True) -> dict[str, Any] | None:
        where = f"namespaces/{self._namespace}/" if namespaced else ""
        try:
            return await self._api.get(f"/api/v1/{where}{plural}/{name}")
        except ApiError as error:
            if error.status != 404:
                logger.warning("%s %s/%s cannot be read: %s", plural, self._namespace, name, error)
            return None
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.warning("%s %s/%s cannot be read: %s", plural, self._namespace, name, error)
            return None

    def config_map(self, name: str) -> Mapping[str, str] | None:
        """The ConfigMap's `data`, or None if it does not exist (as last fetched)."""
        return self._config_maps.get(name)

    def secret(self, name: str) -> Mapping[str, bytes] | None:
        """The Secret's decoded `data`, or None if it does not exist (as last fetched)."""
        return self._secrets.get(name)

    def persistent_volume_claim(self, name: str) -> Mapping[str, Any] | None:
        """The PersistentVolumeClaim, or None if it does not exist (as last fetched)."""
        return self._claims.get(name)

    def persistent_volume(self, name: str) -> Mapping[str, Any] | None:
        """The PersistentVolume a fetched claim names, or None if it does not exist (as last fetched)."""
        return self._volumes.get(name)
