"""OSCAR's JSON shapes (its ``pkg/types``) as far as this API reads or writes them.

A service is read leniently, as OSCAR's Go decoder does: fields bucketrun does not model pass through
(``extra="allow"``) so the FDL checks report them exactly as ``services validate`` does for a file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class StorageIOConfig(_Lenient):
    """One ``input``/``output`` entry: ``storage_provider``, ``path`` and optional filters."""

    storage_provider: str = ""
    path: str = ""
    suffix: list[str] | None = None
    prefix: list[str] | None = None


class Environment(_Lenient):
    """A service's ``environment``: plain variables and secrets.

    Read as OSCAR's Go decoder reads them, whatever the case of the key: oscar-cli 1.12 (OSCAR 3.3's
    types) sends ``Variables``, OSCAR's newer types ``variables``.
    """

    variables: dict[str, str] | None = None
    secrets: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _any_case(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        folded = dict(data)
        for name in ("variables", "secrets"):
            for key in [key for key in data if isinstance(key, str) and key.lower() == name and key != name]:
                value = folded.pop(key)
                if folded.get(name) is None:
                    folded[name] = value
        return folded


class Service(_Lenient):
    """OSCAR's ``types.Service``: what ``oscar-cli apply`` posts and ``service get`` reads."""

    name: str = Field(min_length=1, max_length=39)
    image: str = Field(min_length=1)
    script: str = Field(min_length=1)
    cluster_id: str = ""
    memory: str = ""
    cpu: str = ""
    log_level: str = ""
    input: list[StorageIOConfig] | None = None
    output: list[StorageIOConfig] | None = None
    environment: Environment | None = None
    storage_providers: dict[str, dict[str, dict[str, Any]]] | None = None
    clusters: dict[str, dict[str, Any]] | None = None


class MinIOProvider(BaseModel):
    """``types.MinIOProvider``: how clients reach the store."""

    endpoint: str
    verify: bool
    access_key: str
    secret_key: str
    region: str


class ClusterConfig(BaseModel):
    """The public part of OSCAR's ``types.Config`` that ``/system/config`` shows."""

    name: str
    namespace: str
    services_namespace: str
    gpu_available: bool = False
    interLink_available: bool = False  # noqa: N815 - OSCAR's spelling
    yunikorn_enable: bool = False
    kueue_enable: bool = False


class ConfigForUser(BaseModel):
    """``types.ConfigForUser``: the body of ``GET /system/config``."""

    config: ClusterConfig
    minio_provider: MinIOProvider
    allowed_image_repositories: list[str] = Field(default_factory=list)


class Info(BaseModel):
    """``types.Info``: the body of ``GET /system/info``."""

    version: str
    git_commit: str
    architecture: str
    kubernetes_version: str


JobPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
"""A Job's status as OSCAR lists it (its pod's phase)."""


class JobInfo(BaseModel):
    """``types.JobInfo``: one Job in ``GET /system/logs/{service}``, its times omitted when unknown
    (OSCAR's ``omitempty``), in whole seconds as Kubernetes writes them."""

    status: JobPhase
    creation_time: datetime | None = None
    start_time: datetime | None = None
    finish_time: datetime | None = None


class JobsResponse(BaseModel):
    """``types.JobsResponse``: one page of a service's Jobs by name, and ``next_page``, the ``page``
    token of the next one (omitted on the last page). OSCAR's ``remaining_jobs`` is never sent: the
    Kubernetes list OSCAR fills it from leaves it out whenever a label selector is given, as OSCAR's is."""

    jobs: dict[str, JobInfo]
    next_page: str | None = None
