"""OSCAR scripts that rely on OSCAR's in-container contract run unchanged: a ``file_stage_in`` service
whose script downloads its input itself, the contract variables and ``/oscar/config`` files as a real
pod sees them, and a ``mount`` staged for a pod the test cluster runs. RabbitMQ, S3 (the MinIO built
from source) and the API are real servers; the pod's containers run as local processes (the kubelet of
the test cluster)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.stack import until
from tests.integration.test_end_to_end import Stack, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The script uses this interpreter (first in the local runner's PATH) for the HTTP GET, as an OSCAR
# script would use its image's tools; it must find no INPUT_FILE_PATH and no downloaded file.
FDL = """
functions:
  oscar:
  - c:
      name: fetch-self
      image: python:3.11-slim
      file_stage_in: true
      log_level: warning
      script: |
        set -e
        test -z "${INPUT_FILE_PATH+set}" || { echo "INPUT_FILE_PATH is set" >&2; exit 7; }
        test -z "$(ls -A "$TMP_INPUT_DIR")" || { echo "stage-in downloaded something" >&2; exit 8; }
        python3 - <<'PY'
        import json, os, pathlib, urllib.request
        with urllib.request.urlopen(os.environ["BUCKETRUN_INPUT_URL"], timeout=30) as response:
            data = response.read()
        out = pathlib.Path(os.environ["TMP_OUTPUT_DIR"])
        (out / "reversed.txt").write_bytes(data[::-1])
        config = pathlib.Path(os.environ["BUCKETRUN_SCRIPT"]).parent / "function_config.yaml"
        names = ("JOB_UUID", "JOB_NAME", "EVENT_TIME", "OSCAR_SERVICE_NAME", "OSCAR_SERVICE_BASE_PATH",
                 "RESOURCE_ID", "STORAGE_OBJECT_KEY", "LOG_LEVEL", "EVENT")
        seen = {name: os.environ.get(name) for name in names}
        seen["function_config"] = config.read_text()
        (out / "contract.json").write_text(json.dumps(seen))
        PY
        echo "fetched $STORAGE_OBJECT_KEY myself"
      input: [{storage_provider: minio, path: DATA/self}]
      output: [{storage_provider: minio, path: DATA/fetched}]
"""


MOUNT_FDL = """
  - c:
      name: with-weights
      image: busybox:1.36
      script: |
        name=$(basename "$INPUT_FILE_PATH")
        cat "$BUCKETRUN_MOUNT_DIR/w/weights.txt" "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$name"
      mount: {storage_provider: minio, path: MODELS/net}
      input: [{storage_provider: minio, path: DATA/weighted}]
      output: [{storage_provider: minio, path: DATA/weighted-out}]
"""


@pytest.fixture
async def stack(amqp_names, s3, kube, tmp_path) -> AsyncIterator[Stack]:
    models = s3.bucket("models")
    s3.endpoint.client().put_object(models, "net/w/weights.txt", io.BytesIO(b"w=1\n"), 4)
    text = FDL + MOUNT_FDL.replace("MODELS", models)
    services = ("fetch-self", "with-weights")
    async with running_stack(amqp_names, s3, kube, tmp_path, fdl_text=text, services=services) as running:
        yield running


async def test_a_file_stage_in_script_downloads_its_input_itself(stack: Stack) -> None:
    stack.put("self/note.txt", b"stressed\n")
    await stack.notify("self/note.txt")

    async def output() -> bytes | None:
        return stack.read(stack.data, "fetched/reversed.txt")

    assert await until(output, "the script's own download, reversed", within=120) == b"\ndesserts"

    async def recorded() -> dict[str, Any] | None:
        return stack.record("fetch-self")

    record = await until(recorded, "the job record", within=60)
    assert (record["outcome"], record["exit_code"]) == ("succeeded", 0)
    logs = stack.keys(stack.records, f"records/fetch-self/{record['job']}/logs/")
    stage_in_log = stack.read(stack.records, next(k for k in logs if k.endswith("/stage-in.log"))) or b""
    assert b"nothing downloaded" in stage_in_log

    seen = json.loads(stack.read(stack.data, "fetched/contract.json") or b"{}")
    assert seen["JOB_UUID"] == seen["JOB_NAME"] == record["job"]
    assert seen["OSCAR_SERVICE_NAME"] == "fetch-self"
    assert seen["OSCAR_SERVICE_BASE_PATH"] == ""
    assert seen["STORAGE_OBJECT_KEY"] == "self/note.txt"
    assert seen["LOG_LEVEL"] == "WARNING"
    assert seen["RESOURCE_ID"] is not None
    event = json.loads(seen["EVENT"])
    assert seen["EVENT_TIME"] == event["Records"][0]["eventTime"]
    assert event["Key"] == f"{stack.data}/self/note.txt"
    assert "file_stage_in: true" in seen["function_config"]
    assert "name: fetch-self" in seen["function_config"]


async def test_a_mount_is_staged_for_the_pod_the_cluster_runs(stack: Stack) -> None:
    # The same rendered pod (emptyDir with sizeLimit, read-only mount at /mnt) on the test cluster.
    stack.put("weighted/x.txt", b"input\n")
    await stack.notify("weighted/x.txt")

    async def output() -> bytes | None:
        return stack.read(stack.data, "weighted-out/x.txt")

    assert await until(output, "the output derived from the mount", within=120) == b"w=1\ninput\n"
