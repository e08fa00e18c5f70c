"""The real, unmodified oscar-cli against `bucketrun api`, on the suite's real store and cluster.

oscar-cli is built from source by `make servers` (its pin in .ci/servers.env; `BUCKETRUN_OSCAR_CLI`
names another build). Every call names a config file of the test's own (`--config`): oscar-cli finds
its default ~/.oscar-cli/config.yaml through the password database, not $HOME, so only the flag keeps
the user's file unread and unwritten. Each step is checked twice: what oscar-cli prints, and what is
then in the store (bucket notifications, the kept definition) and the cluster (the service's ConfigMap).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client  # noqa: TID251 - the test inspects the cluster directly
from minio.notificationconfig import NotificationConfig, QueueConfig  # noqa: TID251

from bucketrun.admin.validation import validate_services
from dispatcher.adapters.kube.api import MANAGED_SELECTOR
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.s3 import S3Scope
from tests.integration.admin_env import admin_env
from tests.integration.api_process import api_process
from tests.integration.oscar_cli import OscarCli, oscar_cli_binary

pytestmark = pytest.mark.integration

USER = "oscar"
PASSWORD = "a-test-password-3f9c"
CLUSTER = "bucketrun"

FDL = """\
functions:
  oscar:
  - {cluster}:
      name: upper
      image: alpine:3.20
      memory: {memory}
      cpu: '0.5'
      script: upper.sh
      environment:
        Variables:
          GREETING: hello
      input:
      - storage_provider: minio.default
        path: {inbox}/in
        suffix: [.txt]
      output:
      - storage_provider: minio.default
        path: {outbox}/results
"""
# `Variables`, capitalised: oscar-cli 1.12 reads its FDL with OSCAR 3.3's types, whose map has that key
# (its YAML reader matches keys by case, so a lowercase `variables:` never reaches any server).
SCRIPT = '#!/bin/sh\ntr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"\n'


class Api:
    """A `bucketrun api` process on a free port, with the test's store and namespace."""

    def __init__(self, s3: S3Scope, kube: KubeTestEnv) -> None:
        self.s3 = s3
        self.kube = kube
        self.inbox = s3.bucket("in", create=False)
        self.outbox = s3.bucket("out", create=False)
        self.records = s3.bucket("records", create=False)
        self.definitions = s3.bucket("api", create=False)
        self.url = ""

    def env(self) -> dict[str, str]:
        arn = self.s3.endpoint.notify_arn
        assert arn is not None
        return admin_env(
            self.s3.endpoint,
            self.records,
            self.kube,
            BUCKETRUN_STORAGE__NOTIFY_ARN=arn,
            BUCKETRUN_API__USERNAME=USER,
            BUCKETRUN_API__PASSWORD=PASSWORD,
            BUCKETRUN_API__DEFINITIONS_BUCKET=self.definitions,
            BUCKETRUN_LOG__FORMAT="json",
        )

    def fdl(self, *, memory: str = "256Mi") -> str:
        return FDL.format(cluster=CLUSTER, memory=memory, inbox=self.inbox, outbox=self.outbox)

    def queue_rules(self, bucket: str) -> list[tuple[str, str, tuple[str, ...], str, str]]:
        """(id, arn, events, prefix, suffix) of every queue entry MinIO holds for *bucket*."""
        minio = self.s3.endpoint.client()
        if not minio.bucket_exists(bucket):
            return []
        return sorted(
            (
                q.config_id or "",
                q.queue,
                tuple(q.events),
                q.prefix_filter_rule.value if q.prefix_filter_rule else "",
                q.suffix_filter_rule.value if q.suffix_filter_rule else "",
            )
            for q in minio.get_bucket_notification(bucket).queue_config_list
        )

    def kept_definitions(self) -> dict[str, Any]:
        minio = self.s3.endpoint.client()
        found = minio.list_objects(self.definitions, prefix="services/", recursive=True)
        return {
            item.object_name or "": json.loads(
                minio.get_object(self.definitions, item.object_name or "").read()
            )
            for item in found
        }

    async def config_maps(self, api: client.ApiClient) -> list[dict[str, Any]]:
        maps = await client.CoreV1Api(api).list_namespaced_config_map(
            self.kube.namespace, label_selector=MANAGED_SELECTOR
        )
        return [{"name": m.metadata.name, "labels": m.metadata.labels, "data": m.data} for m in maps.items]


@pytest.fixture
async def api(s3: S3Scope, kube: KubeTestEnv) -> AsyncIterator[Api]:
    """`bucketrun api` started as a user starts it, stopped (SIGTERM) at the end."""
    if s3.endpoint.notify_arn is None:
        pytest.skip("needs MinIO's AMQP notifications (moto has none): run make servers")
    served = Api(s3, kube)
    async with api_process(served.env()) as url:
        served.url = url
        yield served


@pytest.fixture
def oscar_cli(tmp_path: Path) -> OscarCli:
    home = tmp_path / "home"
    home.mkdir()
    return OscarCli(oscar_cli_binary(), home)


async def test_oscar_cli_applies_lists_gets_and_removes_a_service(
    oscar_cli: OscarCli, api: Api, kube_api: client.ApiClient, tmp_path: Path
) -> None:
    user_config = Path.home() / ".oscar-cli" / "config.yaml"
    user_config_before = user_config.read_bytes() if user_config.exists() else None

    code, out = await oscar_cli("cluster", "add", CLUSTER, api.url, USER, PASSWORD, "--disable-ssl")
    assert code == 0, out
    assert f'Cluster "{CLUSTER}" successfully stored' in out
    stored = yaml.safe_load(oscar_cli.config.read_text())
    assert stored["oscar"][CLUSTER]["endpoint"] == api.url

    fdl = tmp_path / "services.yaml"
    fdl.write_text(api.fdl())
    (tmp_path / "upper.sh").write_text(SCRIPT)
    code, out = await oscar_cli("apply", str(fdl))
    assert code == 0, out
    assert 'Applying file "services.yaml"' in out
    assert f'Creating service "upper" in cluster "{CLUSTER}"' in out

    arn = api.s3.endpoint.notify_arn
    assert api.queue_rules(api.inbox) == [("bucketrun-upper-0", arn, ("s3:ObjectCreated:*",), "in/", ".txt")]
    (config_map,) = await api.config_maps(kube_api)
    assert config_map["labels"]["bucketrun.io/service"] == "upper"
    assert SCRIPT in config_map["data"].values()
    assert list(api.kept_definitions()) == ["services/upper.json"]
    (kept,) = api.kept_definitions().values()
    assert kept["name"] == "upper"
    assert "clusters" not in kept
    assert PASSWORD not in json.dumps(kept)
    assert api.s3.endpoint.secret_key not in json.dumps(kept)

    code, out = await oscar_cli("service", "list")
    assert code == 0, out
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert rows == [["NAME", "IMAGE", "CPU", "MEMORY"], ["upper", "alpine:3.20", "0.5", "256Mi"]]

    code, out = await oscar_cli("service", "get", "upper")
    assert code == 0, out
    shown = yaml.safe_load(out)
    assert (shown["name"], shown["image"], shown["script"]) == ("upper", "alpine:3.20", SCRIPT)
    assert shown["environment"] == {"Variables": {"GREETING": "hello"}}
    assert [entry["path"] for entry in shown["input"]] == [f"{api.inbox}/in"]
    assert PASSWORD not in out

    # Applied again with other memory: oscar-cli finds it (GET) and edits it (PUT).
    fdl.write_text(api.fdl(memory="512Mi"))
    code, out = await oscar_cli("apply", str(fdl))
    assert code == 0, out
    assert f'Editing service "upper" in cluster "{CLUSTER}"' in out
    code, out = await oscar_cli("service", "get", "upper")
    assert yaml.safe_load(out)["memory"] == "512Mi"

    code, out = await oscar_cli("service", "delete", "upper")
    assert code == 0, out
    assert 'Removing service "upper"' in out
    assert api.queue_rules(api.inbox) == []
    assert await api.config_maps(kube_api) == []
    assert api.kept_definitions() == {}
    code, out = await oscar_cli("service", "list")
    assert (code, out.strip()) == (0, "There are no services in the cluster")
    code, out = await oscar_cli("service", "get", "upper")
    assert code != 0
    assert "not found" in out

    assert (user_config.read_bytes() if user_config.exists() else None) == user_config_before


async def test_oscar_cli_shows_the_validate_message_for_an_invalid_service(
    oscar_cli: OscarCli, api: Api, kube_api: client.ApiClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = await oscar_cli("cluster", "add", CLUSTER, api.url, USER, "a-wrong-password", "--disable-ssl")
    assert code == 0, out
    fdl = tmp_path / "services.yaml"
    fdl.write_text(api.fdl(memory="lots"))
    (tmp_path / "upper.sh").write_text(SCRIPT)
    code, out = await oscar_cli("apply", str(fdl))
    assert code != 0
    assert "invalid credentials" in out

    code, out = await oscar_cli("cluster", "add", CLUSTER, api.url, USER, PASSWORD, "--disable-ssl")
    assert code == 0, out
    code, out = await oscar_cli("apply", str(fdl))
    assert code != 0
    # What `bucketrun services validate upper.yaml` prints for the same service, as oscar-cli sent it.
    sent = {"name": "upper", "image": "alpine:3.20", "memory": "lots", "cpu": "0.5", "script": SCRIPT}
    (tmp_path / "upper.yaml").write_text(yaml.safe_dump({"functions": {"oscar": [{CLUSTER: sent}]}}))
    monkeypatch.chdir(tmp_path)
    expected, exit_code = validate_services([Path("upper.yaml")])
    assert exit_code == 1
    problem = next(line for line in expected.splitlines() if "memory" in line)
    assert problem in out
    assert api.queue_rules(api.inbox) == []
    assert await api.config_maps(kube_api) == []


async def test_a_definitions_bucket_that_notifies_is_never_written(
    oscar_cli: OscarCli, api: Api, tmp_path: Path
) -> None:
    minio = api.s3.endpoint.client()
    minio.make_bucket(api.definitions)
    arn = api.s3.endpoint.notify_arn
    assert arn is not None
    rule = QueueConfig(["s3:ObjectCreated:*"], config_id="someone-else", queue=arn)
    minio.set_bucket_notification(api.definitions, NotificationConfig(queue_config_list=[rule]))
    code, out = await oscar_cli("cluster", "add", CLUSTER, api.url, USER, PASSWORD, "--disable-ssl")
    assert code == 0, out
    fdl = tmp_path / "services.yaml"
    fdl.write_text(api.fdl())
    (tmp_path / "upper.sh").write_text(SCRIPT)
    code, out = await oscar_cli("apply", str(fdl))
    assert code != 0
    assert f"the definitions bucket {api.definitions} has notification entries (someone-else)" in out
    assert api.kept_definitions() == {}
