"""A record's output keys come from stage-out's manifest in the record folder, complete, not from the
tail of a log: 5,000 outputs through the real dispatcher, pod (stage-in, script, stage-out) and watcher;
what stage-out stores when some uploads fail or the manifest cannot be stored; the log fallback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from dispatcher.domain.jobs import is_recorded
from job_templates.stager.completion import Watcher
from job_templates.stager.config import stage_out_config
from job_templates.stager.redact import Redactor
from job_templates.stager.report import Reporter
from job_templates.stager.stage_out import MANIFEST_FILE, stage_out
from tests.backends.http_stub import serving
from tests.integration.stack import until
from tests.integration.test_end_to_end import Stack, running_stack
from tests.integration.test_stage import FAST, dirs, finish_script, write_outputs
from tests.integration.watcher_support import job_doc, new_env, watcher

pytestmark = [pytest.mark.integration]

OUTPUTS = 5000
FDL = f"""
functions:
  oscar:
  - c:
      name: many
      image: busybox:1.36
      script: |
        i=0
        while [ "$i" -lt {OUTPUTS} ]; do
          echo "$i" > "$TMP_OUTPUT_DIR/part-$i.txt"
          i=$((i + 1))
        done
      input: [{{storage_provider: minio, path: DATA/in}}]
      output: [{{storage_provider: minio, path: DATA/parts}}]
"""


@pytest.fixture
async def stack(amqp_names, s3, kube, tmp_path) -> AsyncIterator[Stack]:
    async with running_stack(amqp_names, s3, kube, tmp_path, fdl_text=FDL, services=("many",)) as running:
        yield running


@pytest.mark.slow
async def test_a_job_with_5000_outputs_is_recorded_with_all_5000(stack: Stack) -> None:
    stack.put("in/batch.txt", b"split me\n")
    await stack.notify("in/batch.txt")

    async def recorded() -> dict[str, Any] | None:
        return stack.record("many")

    record = await until(recorded, "the job record", within=100)
    assert record["outcome"] == "succeeded", record
    expected = [{"bucket": stack.data, "key": f"parts/part-{i}.txt"} for i in range(OUTPUTS)]
    assert sorted(record["outputs"], key=lambda o: o["key"]) == sorted(expected, key=lambda o: o["key"])
    assert (record["outputs_source"], record["outputs_truncated"]) == ("manifest", False)
    assert len(stack.keys(stack.data, "parts/")) == OUTPUTS
    # The stage-out log alone would not have told: its kept tail holds only the last uploads.
    folder = f"records/many/{record['job']}/"
    log = (stack.read(stack.records, f"{folder}logs/stage-out.log") or b"").decode()
    assert 0 < log.count('"event": "uploaded"') < OUTPUTS
    # The manifest stays beside the record, and it holds no grant.
    manifest = json.loads(stack.read(stack.records, f"{folder}outputs.json") or b"[]")
    assert len(manifest) == OUTPUTS
    assert "X-Amz-Signature" not in log
    assert "X-Amz-Signature" not in json.dumps(record)


# -- what stage-out stores, against a server that refuses some uploads -----------------------------------


class _Storage(BaseHTTPRequestHandler):
    """Refuses (403) POSTs of keys with "refused" in them, accepts the others; records PUTs after failing
    the first ``put_failures`` with 503."""

    puts: list[tuple[str, bytes]]
    put_failures = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(403 if b'name="key"\r\n\r\nres/refused' in body else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        if cls.put_failures:
            cls.put_failures -= 1
            self.send_response(503)
        else:
            cls.puts.append((self.path, body))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def storage_server() -> Iterator[tuple[str, type[_Storage]]]:
    handler = type("Storage", (_Storage,), {"puts": [], "put_failures": 0})
    with serving(handler) as url:
        yield url, handler


MANIFEST_SIGNATURE = "feedface0123456789manifest"


def env_for(tmp_path: Path, base: str) -> dict[str, str]:
    output = {
        "provider": "minio.default",
        "bucket": "out",
        "folder": "res",
        "prefix": [],
        "suffix": [],
        "url": f"{base}/out",
        "fields": {"policy": "c2VjcmV0LXBvbGljeS1kb2N1bWVudA==", "x-amz-signature": "deadbeefcafe0123"},
    }
    return {
        **dirs(tmp_path),
        "BUCKETRUN_OUTPUTS": json.dumps([output]),
        "BUCKETRUN_OUTPUTS_MANIFEST_URL": (
            f"{base}/records/records/svc/job-1/outputs.json?X-Amz-Signature={MANIFEST_SIGNATURE}"
        ),
        "BUCKETRUN_UPLOAD_OUTPUTS": "on_success",
        "BUCKETRUN_GRANTS_EXPIRE": "2999-01-01T00:00:00Z",
    }


def run_stage_out(env: dict[str, str]) -> int:
    config = stage_out_config(env)
    return stage_out(
        config,
        Reporter("test", Redactor()),
        Watcher(config.state_dir, expires_at=config.grants_expire, poll=0.01),
        FAST,
    )


def test_after_a_partial_failure_the_manifest_lists_what_was_uploaded(tmp_path, storage_server, capsys):
    base, handler = storage_server
    handler.put_failures = 2  # the records store is briefly unavailable: retried
    env = env_for(tmp_path, base)
    write_outputs(Path(env["TMP_OUTPUT_DIR"]), {"a.txt": b"a", "refused.txt": b"r", "z/b.txt": b"b"})
    finish_script(Path(env["BUCKETRUN_STATE_DIR"]), 0)

    assert run_stage_out(env) == 2  # an upload failed

    ((path, body),) = handler.puts
    assert path.startswith("/records/records/svc/job-1/outputs.json?")
    assert json.loads(body) == [
        {"bucket": "out", "key": "res/a.txt", "size": 1},
        {"bucket": "out", "key": "res/z/b.txt", "size": 1},
    ]
    assert (Path(env["BUCKETRUN_STATE_DIR"]) / MANIFEST_FILE).read_bytes() == body
    out = capsys.readouterr().out
    assert out.count("storing the outputs list failed (HTTP 503); retrying") == 2
    assert "stored the list of 2 uploaded object(s) in the job record" in out
    assert MANIFEST_SIGNATURE not in out


def test_a_manifest_that_cannot_be_stored_is_reported_without_failing_stage_out(
    tmp_path, storage_server, capsys
):
    base, handler = storage_server
    handler.put_failures = 10**6  # down for longer than the retries
    env = env_for(tmp_path, base)
    write_outputs(Path(env["TMP_OUTPUT_DIR"]), {"a.txt": b"a"})
    finish_script(Path(env["BUCKETRUN_STATE_DIR"]), 0)

    assert run_stage_out(env) == 0  # the outputs are in place: the record falls back on this log

    out = capsys.readouterr().out
    assert "FAILED to store the outputs list in the job record: HTTP 503" in out
    assert '{"event": "uploaded", "bucket": "out", "key": "res/a.txt", "size": 1}' in out
    assert MANIFEST_SIGNATURE not in out


# -- the watcher's fallback: no manifest ---------------------------------------------------------------------


async def test_a_job_without_a_manifest_takes_its_outputs_from_the_stage_out_log(
    amqp_names, s3, kube, tmp_path
) -> None:
    kube.require_control().set_kubelet("run")
    env = await new_env(amqp_names, s3, kube, tmp_path)
    await env.create_jobs([job_doc("no-manifest", exit_code=0)])

    async def marked():
        jobs = await env.jobs()
        return jobs if jobs and is_recorded(jobs[0]) else None

    async with watcher(env.settings):
        await until(marked, "the Job marked recorded")
    record = (
        env.s3.endpoint.client()
        .get_object(env.records_bucket, "records/upper/no-manifest/status.json")
        .json()
    )
    assert record["outputs"] == [{"bucket": "outputs", "key": "out/no-manifest.txt"}]
    assert (record["outputs_source"], record["outputs_truncated"]) == ("log", False)
    assert record["logs_missing"] == {}
