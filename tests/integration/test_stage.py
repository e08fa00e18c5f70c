"""The stager against a real S3 server over HTTP, with real presigned grants from the storage adapter.

Against the general S3 server (moto where nothing else answers, which checks neither signatures nor POST
policies) these prove the stager's requests are well-formed and aimed at the right objects; against the
MinIO built from source (`minio_s3`, `make servers`) the stager's uploads meet a real policy check, and
what it refuses is tested in test_storage. The last tests run a whole rendered pod (stage-in, the wrapper
and script, stage-out) through the local runner, on both servers.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.events import build_message, parse_message
from dispatcher.executors.local.runner import LocalPodRunner, StaticPodRefs
from dispatcher.executors.local.status import pod_manifest
from dispatcher.fdl import ServiceDefinition, load_services_text
from dispatcher.rendering.context import RenderSettings, StagingGrants, job_context
from dispatcher.rendering.render import JobRenderer
from dispatcher.runtime.settings import StorageSettings
from job_templates.stager.completion import EXIT_CODE_FILE, PID_FILE, Watcher
from job_templates.stager.config import stage_out_config
from job_templates.stager.main import main
from job_templates.stager.redact import Redactor
from job_templates.stager.report import Reporter
from job_templates.stager.stage_out import MANIFEST_FILE, stage_out
from job_templates.stager.transfer import RetryPolicy
from tests.backends.http_stub import serving
from tests.backends.s3 import S3Endpoint, S3Scope

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(window=5.0, base=0.01, cap=0.05, timeout=5.0)


def storage_for(endpoint: S3Endpoint, **overrides) -> Storage:
    values = {
        "endpoint": endpoint.endpoint,
        "access_key": endpoint.access_key,
        "secret_key": endpoint.secret_key,
        "region": endpoint.region,
        "secure": endpoint.secure,
        "request_timeout": 5.0,
    }
    return Storage(StorageSettings.model_validate(values | overrides))


def service(
    inputs: str, outputs: list[dict[str, object]], *, script: str = "true", **options
) -> ServiceDefinition:
    return ServiceDefinition.model_validate(
        {
            "name": "stager-test",
            "image": "busybox:1.36",
            "script": script,
            "inputs": [{"bucket": inputs, "folder": "in"}],
            "outputs": outputs,
            **({"options": options} if options else {}),
        }
    )


def put(s3: S3Scope, bucket: str, key: str, data: bytes) -> None:
    s3.endpoint.client().put_object(bucket, key, io.BytesIO(data), len(data))


def get(s3: S3Scope, bucket: str, key: str) -> bytes:
    response = s3.endpoint.client().get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def keys(s3: S3Scope, bucket: str) -> list[str]:
    return sorted(o.object_name or "" for o in s3.endpoint.client().list_objects(bucket, recursive=True))


def grants(endpoint: S3Endpoint, svc: ServiceDefinition, bucket: str, key: str) -> StagingGrants:
    return storage_for(endpoint).grants_for(svc, bucket, key, expires=timedelta(hours=1))


def dirs(tmp_path: Path) -> dict[str, str]:
    work = tmp_path / "work"
    return {
        "TMP_INPUT_DIR": str(work / "input"),
        "TMP_OUTPUT_DIR": str(work / "output"),
        "BUCKETRUN_STATE_DIR": str(work / "state"),
    }


def out_env(tmp_path: Path, svc: ServiceDefinition, given: StagingGrants) -> dict[str, str]:
    """stage-out's environment exactly as the Job template gets it, with the work dir under tmp_path."""
    body = build_message(
        event_name="s3:ObjectCreated:Put",
        bucket="in-bucket",
        key="in/x",
        size=1,
        etag="0" * 32,
        sequencer="1",
    )
    (event,) = parse_message(body)
    context = job_context(svc, event, given, RenderSettings(work_dir=str(tmp_path / "work")))
    return {item["name"]: item["value"] for item in context["stager"]["stage_out_env"]}


def secrets_of(given: StagingGrants) -> list[str]:
    values = [given.input_url, given.input_url.partition("?")[2]]
    for output in given.outputs:
        values += [v for v in output.form_fields.values() if len(v) >= 8]
    return values


def assert_no_secrets(text: str, given: StagingGrants) -> None:
    for secret in secrets_of(given):
        assert secret not in text
    assert "X-Amz-Signature" not in text
    assert "x-amz-signature" not in text.lower()


def finish_script(state: Path, code: int) -> None:
    """What run.sh leaves when the script ended with *code*."""
    state.mkdir(parents=True, exist_ok=True)
    (state / PID_FILE).write_text(f"{os.getpid()}\n")
    (state / EXIT_CODE_FILE).write_text(f"{code}\n")


def write_outputs(output_dir: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = output_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def buckets(s3: S3Scope) -> tuple[str, str, str]:
    return s3.bucket("in"), s3.bucket("images"), s3.bucket("texts")


# -- stage-in ------------------------------------------------------------------------------------------------


def test_stage_in_downloads_a_key_with_space_plus_and_unicode(s3, buckets, tmp_path, capfd):
    inputs, images, _ = buckets
    key = "in/a b+c ünï 写真.txt"
    put(s3, inputs, key, b"hello input")
    given = grants(s3.endpoint, service(inputs, [{"bucket": images}]), inputs, key)
    env = {**dirs(tmp_path), "BUCKETRUN_INPUT_URL": given.input_url}
    env["INPUT_FILE_PATH"] = f"{env['TMP_INPUT_DIR']}/a b+c ünï 写真.txt"

    assert main(["in"], env) == 0

    target = Path(env["INPUT_FILE_PATH"])
    assert target.read_bytes() == b"hello input"
    for name in ("TMP_INPUT_DIR", "TMP_OUTPUT_DIR", "BUCKETRUN_STATE_DIR"):
        assert Path(env[name]).stat().st_mode & 0o777 == 0o777
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left
    out, err = capfd.readouterr()
    assert "downloaded the input object (11 bytes)" in out
    assert_no_secrets(out + err, given)


def test_stage_in_missing_object_exits_input_missing(s3, buckets, tmp_path, capfd):
    inputs, images, _ = buckets
    given = grants(s3.endpoint, service(inputs, [{"bucket": images}]), inputs, "in/never-written.txt")
    env = {**dirs(tmp_path), "BUCKETRUN_INPUT_URL": given.input_url}
    env["INPUT_FILE_PATH"] = f"{env['TMP_INPUT_DIR']}/never-written.txt"

    assert main(["in"], env) == 64

    assert not Path(env["INPUT_FILE_PATH"]).exists()
    assert list(Path(env["TMP_INPUT_DIR"]).iterdir()) == []
    out, err = capfd.readouterr()
    assert "HTTP 404" in out
    assert_no_secrets(out + err, given)


# -- stage-out -----------------------------------------------------------------------------------------------


def test_stage_out_routes_files_by_suffix_to_two_outputs(s3, buckets, tmp_path, capfd):
    inputs, images, texts = buckets
    svc = service(
        inputs,
        [
            {"bucket": images, "folder": "results/img", "suffix": [".png", ".jpg"]},
            {"bucket": texts, "folder": "", "suffix": [".txt"]},
        ],
    )
    given = grants(s3.endpoint, svc, inputs, "in/x.bin")
    env = out_env(tmp_path, svc, given)
    output_dir = Path(env["TMP_OUTPUT_DIR"])
    write_outputs(
        output_dir,
        {"a.png": b"png!", "sub/dir/b.jpg": b"jpeg", "notes ü.txt": b"text", "other.bin": b"ignored"},
    )
    finish_script(Path(env["BUCKETRUN_STATE_DIR"]), 0)

    assert main(["out"], env) == 0

    assert keys(s3, images) == ["results/img/a.png", "results/img/sub/dir/b.jpg"]
    assert keys(s3, texts) == ["notes ü.txt"]
    assert get(s3, images, "results/img/sub/dir/b.jpg") == b"jpeg"
    assert get(s3, texts, "notes ü.txt") == b"text"
    assert s3.endpoint.client().stat_object(images, "results/img/a.png").content_type == "image/png"
    manifest = json.loads((Path(env["BUCKETRUN_STATE_DIR"]) / MANIFEST_FILE).read_text())
    assert sorted(manifest, key=lambda m: m["key"]) == [
        {"bucket": texts, "key": "notes ü.txt", "size": 4},
        {"bucket": images, "key": "results/img/a.png", "size": 4},
        {"bucket": images, "key": "results/img/sub/dir/b.jpg", "size": 4},
    ]
    out, err = capfd.readouterr()
    assert out.count("uploaded ") == 3
    assert "skipped 'other.bin'" in out
    assert_no_secrets(out + err, given)


@pytest.mark.parametrize(("upload", "expected"), [("on_success", []), ("always", ["out/result.txt"])])
def test_failed_script_uploads_only_when_always(s3, buckets, tmp_path, upload, expected):
    inputs, images, _ = buckets
    svc = service(inputs, [{"bucket": images, "folder": "out"}], upload_outputs=upload)
    given = grants(s3.endpoint, svc, inputs, "in/x")
    env = out_env(tmp_path, svc, given)
    assert env["BUCKETRUN_UPLOAD_OUTPUTS"] == upload
    write_outputs(Path(env["TMP_OUTPUT_DIR"]), {"result.txt": b"partial"})
    finish_script(Path(env["BUCKETRUN_STATE_DIR"]), 1)

    assert main(["out"], env) == 0

    assert keys(s3, images) == expected
    manifest = json.loads((Path(env["BUCKETRUN_STATE_DIR"]) / MANIFEST_FILE).read_text())
    assert [m["key"] for m in manifest] == expected


def test_stage_out_to_minio_uploads_what_the_policy_allows_and_fails_on_the_rest(minio_s3, tmp_path, capfd):
    inputs, outputs = minio_s3.bucket("in"), minio_s3.bucket("out")
    svc = service(inputs, [{"bucket": outputs, "folder": "out"}])
    given = storage_for(minio_s3.endpoint, max_upload_bytes=8).grants_for(
        svc, inputs, "in/x", expires=timedelta(hours=1)
    )
    env = out_env(tmp_path, svc, given)
    write_outputs(Path(env["TMP_OUTPUT_DIR"]), {"fits.txt": b"8 bytes!", "too big.txt": b"9 bytes!!"})
    finish_script(Path(env["BUCKETRUN_STATE_DIR"]), 0)

    assert main(["out"], env) == 2

    assert keys(minio_s3, outputs) == ["out/fits.txt"]
    manifest = json.loads((Path(env["BUCKETRUN_STATE_DIR"]) / MANIFEST_FILE).read_text())
    assert manifest == [{"bucket": outputs, "key": "out/fits.txt", "size": 8}]
    out, err = capfd.readouterr()
    assert f"FAILED to upload 'too big.txt' to bucket '{outputs}': HTTP 400 EntityTooLarge" in out
    assert "retrying" not in out
    assert_no_secrets(out + err, given)


def test_killed_run_process_ends_stage_out_promptly_with_exit_3(s3, buckets, tmp_path):
    inputs, images, _ = buckets
    svc = service(inputs, [{"bucket": images}])
    given = grants(s3.endpoint, svc, inputs, "in/x")
    env = out_env(tmp_path, svc, given)
    write_outputs(Path(env["TMP_OUTPUT_DIR"]), {"result.txt": b"never uploaded"})
    state = Path(env["BUCKETRUN_STATE_DIR"])
    state.mkdir(parents=True)
    victim = subprocess.Popen(["sleep", "60"])
    try:
        (state / PID_FILE).write_text(f"{victim.pid}\n")
        stager = subprocess.Popen(
            [sys.executable, "-m", "job_templates.stager", "out"],
            env={**env, "PATH": os.environ["PATH"]},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            time.sleep(0.5)  # let stage-out see the process alive first (the interesting path)
            assert stager.poll() is None, "stage-out must wait while the run process lives"
            victim.kill()
            victim.wait()
            killed_at = time.monotonic()
            out, _ = stager.communicate(timeout=15)
            took = time.monotonic() - killed_at
        finally:
            if stager.poll() is None:
                stager.kill()
                stager.wait()
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert stager.returncode == 3, out
    assert took < 10
    assert b"ended without an exit code (killed)" in out
    assert json.loads((state / MANIFEST_FILE).read_text()) == []


# -- retries against a flaky server ------------------------------------------------------------------------


class _Flaky(BaseHTTPRequestHandler):
    failures_left = 0
    failure_status = 503
    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        if cls.failures_left > 0:
            cls.failures_left -= 1
            self.send_response(cls.failure_status)
            code = b"AccessDenied" if cls.failure_status == 403 else b"SlowDown"
            # S3 echoes the rejected signature in its error body: the stager must never print that body.
            error = (
                b"<Error><Code>"
                + code
                + b"</Code><SignatureProvided>deadbeefcafe0123</SignatureProvided></Error>"
            )
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        cls.bodies.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Flaky", (_Flaky,), {"failures_left": 3, "bodies": []})
    with serving(handler) as url:
        yield f"{url}/bucket", handler


def flaky_env(tmp_path: Path, url: str) -> dict[str, str]:
    output = {
        "provider": "minio.default",
        "bucket": "bucket",
        "folder": "f",
        "prefix": [],
        "suffix": [],
        "url": url,
        "fields": {"policy": "c2VjcmV0LXBvbGljeS1kb2N1bWVudA==", "x-amz-signature": "deadbeefcafe0123"},
    }
    env = {
        **dirs(tmp_path),
        "BUCKETRUN_OUTPUTS": json.dumps([output]),
        "BUCKETRUN_UPLOAD_OUTPUTS": "on_success",
        "BUCKETRUN_GRANTS_EXPIRE": "2999-01-01T00:00:00Z",
    }
    write_outputs(Path(env["TMP_OUTPUT_DIR"]), {"r.txt": b"survived"})
    finish_script(Path(env["BUCKETRUN_STATE_DIR"]), 0)
    return env


def run_stage_out(env: dict[str, str]) -> int:
    config = stage_out_config(env)
    watcher = Watcher(config.state_dir, expires_at=config.grants_expire, poll=0.01)
    return stage_out(config, Reporter("test", Redactor()), watcher, FAST)


def test_upload_survives_a_storage_outage_of_a_few_answers(tmp_path, flaky_server, capsys):
    url, handler = flaky_server
    env = flaky_env(tmp_path, url)

    assert run_stage_out(env) == 0

    (body,) = handler.bodies
    assert b'name="key"\r\n\r\nf/r.txt\r\n' in body
    assert body.index(b"deadbeefcafe0123") < body.index(b"survived")
    out = capsys.readouterr().out
    assert out.count("retrying") == 3
    assert "deadbeefcafe0123" not in out
    assert "c2VjcmV0LXBvbGljeS1kb2N1bWVudA==" not in out


def test_refused_upload_fails_stage_out_without_retrying_or_leaking(tmp_path, flaky_server, capsys):
    url, handler = flaky_server
    handler.failure_status = 403
    env = flaky_env(tmp_path, url)

    assert run_stage_out(env) == 2

    assert handler.failures_left == 2  # one attempt, no retry
    out = capsys.readouterr().out
    assert "FAILED to upload 'r.txt' to bucket 'bucket': HTTP 403 AccessDenied" in out
    assert "deadbeefcafe0123" not in out
    assert json.loads((Path(env["BUCKETRUN_STATE_DIR"]) / MANIFEST_FILE).read_text()) == []


# -- the whole pod through the local runner ------------------------------------------------------------------

UPPER = """
functions:
  oscar:
  - upper:
      name: upper
      image: busybox:1.36
      script: |
        {script}
      input:
      - storage_provider: minio
        path: {inputs}/in
      output:
      - storage_provider: minio
        path: {outputs}/out
"""


async def run_pod(s3_endpoint: S3Endpoint, inputs: str, outputs: str, script: str, tmp_path: Path):
    key = "in/photo 1.txt"
    storage = storage_for(s3_endpoint)
    await storage.put_object(inputs, key, b"hello from the bucket\n")
    text = UPPER.format(script=script, inputs=inputs, outputs=outputs)
    (svc,) = load_services_text(text, source="upper.yaml", base_dir=tmp_path).services
    body = build_message(
        event_name="s3:ObjectCreated:Put", bucket=inputs, key=key, size=22, etag="0" * 32, sequencer="1"
    )
    (event,) = parse_message(body)
    given = storage.grants_for(svc, inputs, key, expires=timedelta(hours=1))
    renderer = JobRenderer(RenderSettings(namespace="jobs"))
    rendered = renderer.render(svc, event, given)
    job = rendered.job
    job["metadata"]["uid"] = "0f0e0d0c-0000-4000-8000-000000000001"
    pod = pod_manifest(job, name=f"{job['metadata']['name']}-abcde", uid="pod-uid", created=datetime.now(UTC))
    refs = StaticPodRefs(config_maps={rendered.config_map["metadata"]["name"]: rendered.config_map["data"]})
    runner = LocalPodRunner(pod, workdir=tmp_path / "pod", refs=refs, grace_seconds=2.0)
    outcome = await runner.run()
    logs = {c: runner.log_path(c).read_text() for c in ("stage-in", "run", "stage-out")}
    return outcome, logs, given


@pytest.mark.parametrize("store", ["s3", "minio_s3"])
async def test_whole_pod_upper_cases_the_input_into_the_output_bucket(request, store, tmp_path):
    scope: S3Scope = request.getfixturevalue(store)
    inputs, outputs = scope.bucket("in"), scope.bucket("out")
    script = 'tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"'
    outcome, logs, given = await run_pod(scope.endpoint, inputs, outputs, script, tmp_path)

    assert outcome.phase == "Succeeded", (outcome, logs)
    assert await storage_for(scope.endpoint).get_object(outputs, "out/out.txt") == b"HELLO FROM THE BUCKET\n"
    assert "uploaded 'out.txt'" in logs["stage-out"]
    assert_no_secrets("".join(logs.values()), given)


async def test_whole_pod_failing_script_fails_the_pod_and_uploads_nothing(s3_endpoint, s3, tmp_path):
    inputs, outputs = s3.bucket("in"), s3.bucket("out")
    script = 'echo partial > "$TMP_OUTPUT_DIR/out.txt"; exit 1'
    outcome, logs, _ = await run_pod(s3_endpoint, inputs, outputs, script, tmp_path)

    assert outcome.phase == "Failed"
    states = {c.name: c for c in (*outcome.init_containers, *outcome.containers)}
    assert states["stage-in"].exit_code == 0
    assert states["run"].exit_code == 1
    assert states["stage-out"].exit_code == 0, logs["stage-out"]
    assert keys(s3, outputs) == []
    assert "nothing uploaded" in logs["stage-out"]
