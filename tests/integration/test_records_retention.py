"""Records retention on the real MinIO (built from source): the watcher sets its lifecycle rule on the
records prefix and keeps the bucket's other rules exactly (one with ObjectSizeGreaterThan, which the
SDK's LifecycleConfig would drop); retention 0 removes the rule again. Where the store refuses lifecycle
configuration (a MinIO user whose policy denies s3:PutLifecycleConfiguration, as an operator's key for
bucketrun may well be) the watcher sweeps expired records itself, a bounded number of keys a pass."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from minio import Minio  # noqa: TID251 - the test inspects the bucket as an operator would

from dispatcher.adapters.s3.lifecycle import rules
from dispatcher.adapters.s3.storage import Storage
from dispatcher.runtime.settings import Settings, StorageSettings, WatcherSettings
from tests.backends.minio_server import mc
from tests.backends.s3 import S3Endpoint, S3Scope
from tests.integration.stack import started, storage_settings, until
from tests.integration.watcher_support import new_env
from watcher.app import WatcherState, run_watcher
from watcher.records import RecordStore
from watcher.retention import RULE_ID, Method, RecordsRetention, RecordsSweep

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OTHER_RULE = (
    "<Rule><ID>big-tmp</ID><Status>Enabled</Status><Filter><And><ObjectSizeGreaterThan>1024"
    "</ObjectSizeGreaterThan><Prefix>tmp/</Prefix></And></Filter><Expiration><Days>3</Days></Expiration></Rule>"
)
DENY_LIFECYCLE = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]},
        {"Effect": "Deny", "Action": ["s3:PutLifecycleConfiguration"], "Resource": ["arn:aws:s3:::*"]},
    ],
}


def require_minio(s3: S3Scope) -> Minio:
    if s3.endpoint.backend != "minio":
        pytest.skip(
            f"needs MinIO (lifecycle rules, users and policies); the S3 backend is {s3.endpoint.backend}"
        )
    return s3.endpoint.client()


def raw_lifecycle(client: Minio, bucket: str) -> bytes | None:
    """The bucket's lifecycle configuration as MinIO sends it (None: none)."""
    from minio.error import S3Error  # noqa: PLC0415, TID251

    try:
        return bytes(client._execute("GET", bucket, query_params={"lifecycle": ""}).data)
    except S3Error as error:
        if error.code == "NoSuchLifecycleConfiguration":
            return None
        raise


def put_raw_lifecycle(client: Minio, bucket: str, document: bytes) -> None:
    digest = base64.b64encode(hashlib.md5(document).digest()).decode()  # noqa: S324 - S3's Content-MD5
    client._execute(
        "PUT", bucket, body=document, headers={"Content-MD5": digest}, query_params={"lifecycle": ""}
    )


def with_retention(settings: Settings, **watcher: object) -> Settings:
    return settings.model_copy(update={"watcher": settings.watcher.model_copy(update=watcher)})


async def method_of(state: WatcherState) -> Method | None:
    return state.retention.method if state.retention is not None else None


async def test_the_watcher_sets_the_rule_on_the_records_prefix_and_keeps_the_other_rules(
    amqp_names, s3, kube, tmp_path
) -> None:
    client = require_minio(s3)
    env = await new_env(amqp_names, s3, kube, tmp_path)
    bucket = env.records_bucket
    put_raw_lifecycle(
        client, bucket, f"<LifecycleConfiguration>{OTHER_RULE}</LifecycleConfiguration>".encode()
    )
    before = raw_lifecycle(client, bucket)

    state = WatcherState()
    async with started(
        partial(run_watcher, with_retention(env.settings, records_retention_days=7), state=state), "watcher"
    ):
        await until(lambda: _is(state, Method.RULE), "the retention rule set")
    config = client.get_bucket_lifecycle(bucket)
    assert config is not None
    ours = {rule.rule_id: rule for rule in config.rules}[RULE_ID]
    assert (ours.status, ours.rule_filter.prefix, ours.expiration.days) == ("Enabled", "records/", 7)
    assert ours.noncurrent_version_expiration.noncurrent_days == 1
    assert [rule.rule_id for rule in config.rules] == ["big-tmp", RULE_ID]
    kept = [_text(rule) for rule in rules(raw_lifecycle(client, bucket)) if rule.findtext("ID") == "big-tmp"]
    assert kept == [_text(rule) for rule in rules(before)]
    assert "<ObjectSizeGreaterThan>1024</ObjectSizeGreaterThan>" in kept[0]

    # Retention 0: records are kept for ever, and the rule goes; the other rule stays as it was.
    state = WatcherState()
    async with started(
        partial(run_watcher, with_retention(env.settings, records_retention_days=0), state=state), "watcher"
    ):
        await until(lambda: _is(state, Method.KEEP), "the retention rule removed")
    assert [_text(rule) for rule in rules(raw_lifecycle(client, bucket))] == [
        _text(rule) for rule in rules(before)
    ]


async def _is(state: WatcherState, method: Method) -> bool:
    return await method_of(state) is method


def _text(rule) -> str:
    return ET.tostring(rule, encoding="unicode")


def denied_lifecycle(endpoint: S3Endpoint, access_key: str, secret_key: str) -> S3Endpoint:
    """*endpoint* signed in as a MinIO user that may do everything but write lifecycle configurations."""
    with tempfile.TemporaryDirectory(prefix="mc-") as config:
        policy = Path(config) / "deny-lifecycle.json"
        policy.write_text(json.dumps(DENY_LIFECYCLE))
        mc(
            endpoint,
            "admin",
            "policy",
            "create",
            "t",
            "bucketrun-deny-lifecycle",
            str(policy),
            config_dir=Path(config),
        )
        mc(endpoint, "admin", "user", "add", "t", access_key, secret_key, config_dir=Path(config))
        attach = ("admin", "policy", "attach", "t", "bucketrun-deny-lifecycle", "--user", access_key)
        mc(endpoint, *attach, config_dir=Path(config), unless="already")
    return replace(endpoint, access_key=access_key, secret_key=secret_key)


async def test_where_the_store_refuses_the_rule_the_watcher_sweeps_expired_records_itself(
    amqp_names, s3, kube, tmp_path
) -> None:
    client = require_minio(s3)
    env = await new_env(amqp_names, s3, kube, tmp_path)
    bucket = env.records_bucket
    refusing = denied_lifecycle(s3.endpoint, "retention-tester", "retention-tester-secret")
    storage = storage_settings(refusing, records_bucket=bucket, records_prefix="records/")
    settings = env.settings.model_copy(update={"storage": StorageSettings.model_validate(storage)})

    state = WatcherState()
    async with started(partial(run_watcher, settings, state=state), "watcher"):
        await until(lambda: _is(state, Method.SWEEP), "the watcher falling back to its sweep")
    assert client.get_bucket_lifecycle(bucket) is None

    # What the sweep deletes: record files older than the retention, each by its own age; nothing else.
    def put(key: str) -> None:
        client.put_object(bucket, key, io.BytesIO(b"x"), 1)

    old = ["records/upper/old-job/status.json", "records/upper/old-job/logs/run.log"]
    new = ["records/upper/new-job/status.json", "records/upper/new-job/logs/run.log"]
    others = ["records/notes.txt", "records/upper/old-job/extra.bin", "elsewhere/upper/old-job/status.json"]
    for key in [*old, *others]:
        put(key)

    async def written_later() -> datetime | None:
        for key in new:
            put(key)
        times = _written(client, bucket)
        cutoff = min(times[key] for key in new)
        return cutoff if cutoff > max(times[key] for key in [*old, *others]) else None

    cutoff = await until(written_later, "the newer record written strictly later (MinIO's clock)")
    watcher_settings = WatcherSettings.model_validate(
        {**settings.watcher.model_dump(), "records_retention_interval": 0.05, "records_retention_batch": 2}
    )
    store = RecordStore(Storage(settings.storage), bucket, "records/")
    deleted: list[int] = []
    retention = RecordsRetention(
        store, watcher_settings, clock=lambda: cutoff + timedelta(days=30), on_deleted=deleted.append
    )
    task = asyncio.create_task(retention.run())
    try:

        async def old_gone() -> bool:
            return not set(old) & set(_written(client, bucket))

        await until(old_gone, "the expired record's files deleted")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert retention.method is Method.SWEEP
    assert sorted(_written(client, bucket)) == sorted([*new, *others])
    assert retention.swept == 2
    assert sum(deleted) == 2, deleted  # what the watcher adds to bucketrun_records_expired_total


def _written(client: Minio, bucket: str) -> dict[str, datetime]:
    return {
        obj.object_name or "": obj.last_modified
        for obj in client.list_objects(bucket, recursive=True)
        if obj.last_modified is not None
    }


async def test_a_sweep_pass_looks_at_a_batch_of_keys_and_the_next_one_goes_on_from_there(s3) -> None:
    client = require_minio(s3)
    bucket = s3.bucket("records")
    keys = [f"records/svc/job-{index}/status.json" for index in range(5)] + ["records/svc/readme.txt"]
    for key in keys:
        client.put_object(bucket, key, io.BytesIO(b"x"), 1)
    storage = Storage(StorageSettings.model_validate(storage_settings(s3.endpoint, records_bucket=bucket)))
    sweep = RecordsSweep(
        RecordStore(storage, bucket, "records/"),
        days=1,
        batch=2,
        clock=lambda: datetime.now().astimezone() + timedelta(days=2),
    )
    deleted = [await sweep.pass_once()]
    assert sweep.after == "records/svc/job-1/status.json"
    while sweep.after is not None:
        deleted.append(await sweep.pass_once())
    # job-0, job-1 | job-2, job-3 | job-4, readme.txt (kept): the last page was full, so one more look.
    assert deleted == [2, 2, 1, 0]
    assert sorted(_written(client, bucket)) == ["records/svc/readme.txt"]


async def test_with_method_sweep_the_lifecycle_configuration_is_never_touched(s3) -> None:
    client = require_minio(s3)
    bucket = s3.bucket("records")
    storage = Storage(StorageSettings.model_validate(storage_settings(s3.endpoint, records_bucket=bucket)))
    settings = WatcherSettings(records_retention_method="sweep", records_retention_interval=3600)
    retention = RecordsRetention(RecordStore(storage, bucket, "records/"), settings)
    task = asyncio.create_task(retention.run())
    try:

        async def decided() -> bool:
            return retention.method is Method.SWEEP

        await until(decided, "the sweep chosen")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert client.get_bucket_lifecycle(bucket) is None
