"""`bucketrun api`'s OSCAR shapes and routes, without servers.

The JSON below is written out by hand from OSCAR's Go types (`pkg/types`: Service as oscar-cli 1.12
marshals it with OSCAR 3.3's types, Info, ConfigForUser, Config, MinIOProvider) and from its handlers'
status codes; the routes run over an in-memory catalog standing in for the store and the cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bucketrun.admin.validation import validate_services
from bucketrun.api.app import cluster_config, create_app, system_info
from bucketrun.api.catalog import (
    DefinitionsBucketError,
    InvalidServiceError,
    Outcome,
    ServiceCatalog,
    ServiceExistsError,
    UnknownServiceError,
    check_service,
    fdl_document,
    fdl_file,
    kept_definition,
)
from bucketrun.api.oscar_types import Service
from bucketrun.api.settings import ApiSettings
from bucketrun.cli.main import main
from dispatcher.runtime.settings import Settings

USER, PASSWORD = "oscar", "the-password"

# What oscar-cli 1.12.2 POSTs for an FDL service (captured shape: every field of OSCAR 3.3's Service,
# zero values included, `clusters` filled with the credential it was configured with).
SENT: dict[str, Any] = {
    "name": "upper",
    "cluster_id": "oscar-cluster",
    "memory": "256Mi",
    "cpu": "0.5",
    "total_memory": "",
    "total_cpu": "",
    "enable_gpu": False,
    "enable_sgx": False,
    "image_prefetch": False,
    "synchronous": {"min_scale": 0, "max_scale": 0},
    "delegation": "",
    "rescheduler_threshold": 0,
    "log_level": "",
    "image": "alpine:3.20",
    "alpine": False,
    "token": "",
    "file_stage_in": False,
    "input": [{"storage_provider": "minio.default", "path": "photos/in", "suffix": [".txt"]}],
    "output": [{"storage_provider": "minio.default", "path": "photos/out"}],
    "script": '#!/bin/sh\ncat "$INPUT_FILE_PATH"\n',
    "expose": {
        "min_scale": 0,
        "max_scale": 0,
        "cpu_threshold": 0,
        "rewrite_target": False,
        "nodePort": 0,
        "default_command": False,
        "set_auth": False,
    },
    "environment": {"Variables": {"GREETING": "hello"}},
    "annotations": None,
    "vo": "",
    "labels": None,
    "storage_providers": {},
    "clusters": {
        "oscar-cluster": {
            "endpoint": "http://127.0.0.1:8080",
            "auth_user": USER,
            "auth_password": PASSWORD,
            "ssl_verify": False,
        }
    },
    "owner": "",
    "interlink_node_name": "",
    "allowed_users": None,
    "mount": {"storage_provider": "", "path": ""},
}


def settings() -> Settings:
    return Settings(
        storage={"endpoint": "minio.example:9000", "access_key": "admin-key", "secret_key": "admin-secret"},
        cluster={"namespace": "jobs"},
    )


def test_a_service_as_oscar_cli_sends_it_becomes_a_one_service_fdl_without_credentials() -> None:
    service = Service.model_validate(SENT)
    assert (service.name, service.image, service.cluster_id) == ("upper", "alpine:3.20", "oscar-cluster")
    assert service.environment is not None
    assert service.environment.variables == {"GREETING": "hello"}
    document = fdl_document(service)
    (entry,) = document["functions"]["oscar"]
    body = entry["oscar-cluster"]
    assert "clusters" not in body
    assert PASSWORD not in json.dumps(document)
    assert body["environment"] == {"variables": {"GREETING": "hello"}}
    assert body["synchronous"] == {"min_scale": 0, "max_scale": 0}  # passed on for the FDL checks
    assert "storage_providers" not in document  # empty: nothing to move up


def test_environment_keys_are_read_in_any_case_as_go_reads_them() -> None:
    lower = Service.model_validate({**SENT, "environment": {"variables": {"A": "1"}, "secrets": {"B": "2"}}})
    upper = Service.model_validate({**SENT, "environment": {"Variables": {"A": "1"}, "Secrets": {"B": "2"}}})
    assert lower.environment == upper.environment
    assert upper.environment is not None
    assert (upper.environment.variables, upper.environment.secrets) == ({"A": "1"}, {"B": "2"})


def test_the_kept_definition_blanks_every_secret_value() -> None:
    service = Service.model_validate(
        {
            **SENT,
            "environment": {"variables": {"A": "1"}, "secrets": {"TOKEN": "s3cret"}},
            "storage_providers": {
                "minio": {"other": {"endpoint": "https://m", "access_key": "AK", "secret_key": "SK"}},
                "webdav": {"dav": {"hostname": "h", "login": "l", "password": "pw"}},
            },
        }
    )
    kept = kept_definition(service)
    assert "clusters" not in kept
    assert kept["environment"] == {"variables": {"A": "1"}, "secrets": {"TOKEN": ""}}
    assert kept["storage_providers"] == {
        "minio": {"other": {"endpoint": "https://m", "access_key": "", "secret_key": ""}},
        "webdav": {"dav": {"hostname": "h", "login": "l", "password": ""}},
    }
    for value in ("s3cret", "AK", "SK", "pw", PASSWORD):
        assert value not in json.dumps(kept)
    # The definition itself still carries them for the apply (the Secret, the providers).
    assert fdl_document(service)["storage_providers"]["minio"]["other"]["secret_key"] == "SK"


def test_system_config_has_oscar_shape_and_no_credential() -> None:
    body = json.loads(cluster_config(settings()).model_dump_json())
    assert body == {
        "config": {
            "name": "bucketrun",
            "namespace": "jobs",
            "services_namespace": "jobs",
            "gpu_available": False,
            "interLink_available": False,
            "yunikorn_enable": False,
            "kueue_enable": False,
        },
        "minio_provider": {
            "endpoint": "http://minio.example:9000",
            "verify": False,
            "access_key": "",
            "secret_key": "",
            "region": "us-east-1",
        },
        "allowed_image_repositories": [],
    }


def test_system_info_has_oscar_shape() -> None:
    body = json.loads(system_info().model_dump_json())
    assert set(body) == {"version", "git_commit", "architecture", "kubernetes_version"}
    assert body["version"]
    assert body["architecture"] in {"amd64", "arm64"} or body["architecture"]


def test_an_invalid_service_is_refused_with_the_message_of_services_validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = Service.model_validate({**SENT, "memory": "lots"})
    with fdl_file(service) as path, pytest.raises(InvalidServiceError) as refused:
        check_service(path, cluster=None)
    (tmp_path / "upper.yaml").write_text(json.dumps(fdl_document(service)))
    monkeypatch.chdir(tmp_path)
    expected, code = validate_services([Path("upper.yaml")])
    assert code == 1
    assert str(refused.value) == expected
    assert "memory" in expected


def test_a_valid_service_passes_the_validate_checks() -> None:
    with fdl_file(Service.model_validate(SENT)) as path:
        check_service(path, cluster=None)


class MemoryCatalog(ServiceCatalog):
    """The catalog's contract (exists, unknown, kept definitions) over a dict: no store, no cluster."""

    def __init__(self) -> None:
        super().__init__(settings(), "bucketrun-api")
        self.kept: dict[str, dict[str, Any]] = {}

    async def get(self, name: str) -> dict[str, Any]:
        if name not in self.kept:
            raise UnknownServiceError(name)
        return self.kept[name]

    async def list(self) -> list[dict[str, Any]]:
        return [self.kept[name] for name in sorted(self.kept)]

    async def create(self, service: Service) -> Outcome:
        if service.name in self.kept:
            raise ServiceExistsError(service.name)
        self.kept[service.name] = kept_definition(service)
        return Outcome(())

    async def update(self, service: Service) -> Outcome:
        await self.get(service.name)
        self.kept[service.name] = kept_definition(service)
        return Outcome(())

    async def delete(self, name: str) -> Outcome:
        await self.get(name)
        del self.kept[name]
        return Outcome(())


@pytest.fixture
def catalog() -> MemoryCatalog:
    return MemoryCatalog()


@pytest.fixture
def api(catalog: MemoryCatalog) -> Iterator[TestClient]:
    limits = ApiSettings(username=USER, password=PASSWORD, max_body_bytes=4096)
    with TestClient(create_app(settings(), limits, catalog)) as client:
        yield client


AUTH = (USER, PASSWORD)


def test_health_needs_no_credential(api: TestClient) -> None:
    answer = api.get("/health")
    assert (answer.status_code, answer.text) == (200, "Ok")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/system/info"),
        ("GET", "/openapi.json"),
        ("GET", "/system/config"),
        ("GET", "/system/services"),
        ("POST", "/system/services"),
        ("PUT", "/system/services"),
        ("GET", "/system/services/upper"),
        ("DELETE", "/system/services/upper"),
    ],
)
@pytest.mark.parametrize("credential", [None, (USER, "wrong"), ("someone", PASSWORD)])
def test_every_other_route_refuses_a_wrong_credential_with_a_bare_401(
    api: TestClient, method: str, path: str, credential: tuple[str, str] | None
) -> None:
    answer = api.request(method, path, auth=credential, content=json.dumps(SENT))
    assert (answer.status_code, answer.text) == (401, "")
    assert answer.headers["www-authenticate"].startswith("Basic")


def test_create_list_get_update_delete(api: TestClient, catalog: MemoryCatalog) -> None:
    assert api.get("/system/services", auth=AUTH).json() == []
    created = api.post("/system/services", auth=AUTH, content=json.dumps(SENT))
    assert (created.status_code, created.text) == (201, "")
    again = api.post("/system/services", auth=AUTH, content=json.dumps(SENT))
    assert again.status_code == 409
    assert "upper" in again.text
    listed = api.get("/system/services", auth=AUTH).json()
    assert [service["name"] for service in listed] == ["upper"]
    shown = api.get("/system/services/upper", auth=AUTH)
    assert shown.status_code == 200
    assert shown.json() == catalog.kept["upper"]
    assert PASSWORD not in shown.text
    updated = api.put("/system/services", auth=AUTH, content=json.dumps({**SENT, "memory": "512Mi"}))
    assert (updated.status_code, updated.text) == (204, "")
    assert api.get("/system/services/upper", auth=AUTH).json()["memory"] == "512Mi"
    deleted = api.delete("/system/services/upper", auth=AUTH)
    assert (deleted.status_code, deleted.text) == (204, "")
    assert api.get("/system/services", auth=AUTH).json() == []


def test_unknown_services_are_404(api: TestClient) -> None:
    for answer in (
        api.get("/system/services/nope", auth=AUTH),
        api.delete("/system/services/nope", auth=AUTH),
        api.put("/system/services", auth=AUTH, content=json.dumps({**SENT, "name": "nope"})),
    ):
        assert (answer.status_code, answer.text) == (404, "")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "Expecting property name"),
        (json.dumps({k: v for k, v in SENT.items() if k != "image"}).encode(), "image: Field required"),
        (json.dumps({**SENT, "name": ""}).encode(), "name: String should have at least 1 character"),
        (json.dumps([SENT]).encode(), "body: Input should be a valid dictionary"),
    ],
)
def test_a_body_that_is_no_service_is_400_in_oscar_words(api: TestClient, body: bytes, named: str) -> None:
    answer = api.post("/system/services", auth=AUTH, content=body)
    assert answer.status_code == 400
    assert answer.text.startswith("The service specification is not valid: ")
    assert named in answer.text


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(api: TestClient) -> None:
    big = json.dumps({**SENT, "script": "x" * 5000}).encode()
    declared = api.post("/system/services", auth=AUTH, content=big)
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield from (big[i : i + 1000] for i in range(0, len(big), 1000))

    streamed = api.post("/system/services", auth=AUTH, content=chunks())
    assert streamed.status_code == 413
    assert api.get("/system/services", auth=AUTH).json() == []


def test_the_command_refuses_missing_credentials_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in [key for key in os.environ if key.startswith("BUCKETRUN_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BUCKETRUN_STORAGE__ACCESS_KEY", "a")
    monkeypatch.setenv("BUCKETRUN_STORAGE__SECRET_KEY", "b")
    assert main(["api", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "error: no credential: set BUCKETRUN_API__USERNAME and BUCKETRUN_API__PASSWORD" in err
    assert "or BUCKETRUN_API__OIDC_ISSUERS and BUCKETRUN_API__OIDC_AUDIENCE" in err


def test_the_command_help_names_routes_and_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["api", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for text in ("/system/services", "BUCKETRUN_API__PASSWORD", "413", "oscar-cli cluster add", "/job"):
        assert text in shown


def test_the_records_bucket_cannot_hold_the_definitions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DefinitionsBucketError, match="retention"):
        ServiceCatalog(settings(), settings().storage.records_bucket)
    for key in [key for key in os.environ if key.startswith("BUCKETRUN_")]:
        monkeypatch.delenv(key)
    for key, value in {
        "STORAGE__ACCESS_KEY": "a",
        "STORAGE__SECRET_KEY": "b",
        "API__USERNAME": USER,
        "API__PASSWORD": PASSWORD,
        "API__DEFINITIONS_BUCKET": "bucketrun-records",
    }.items():
        monkeypatch.setenv(f"BUCKETRUN_{key}", value)
    assert main(["api", "--port", "0"]) == 2
    assert "BUCKETRUN_API__DEFINITIONS_BUCKET" in capsys.readouterr().err
