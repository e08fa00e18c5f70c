"""OSCAR's ``mount``, staged in read-only: the dispatcher's plan and bounds, the rendered pod, and stage-in
writing only inside the mount directory (against a local HTTP server standing in for presigned GETs)."""

from __future__ import annotations

import io
import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.fdl import ServiceDefinition, load_services_text
from dispatcher.fdl.storage import MountPath
from dispatcher.rendering.context import StagingGrants
from dispatcher.rendering.manifest_checks import check_manifest
from dispatcher.rendering.mount import (
    MANIFEST_MAX_BYTES,
    Listed,
    MountedObject,
    MountGrant,
    manifest,
    plan_mount,
    relative_path,
)
from dispatcher.rendering.render import JobRenderer
from job_templates.stager import contract
from job_templates.stager.config import MountConfig, MountObject, parse_mount
from job_templates.stager.mount import mount_destination, stage_mount
from job_templates.stager.paths import UnsafePathError
from job_templates.stager.report import Reporter
from job_templates.stager.transfer import RetryPolicy
from tests.unit.test_rendering import event, grants_for

MOUNT = MountPath(bucket="models", folder="yolo/v8")
FDL = """
functions:
  oscar:
  - c:
      name: detect
      image: busybox:1.36
      script: cat "$BUCKETRUN_MOUNT_DIR/weights.bin" > "$TMP_OUTPUT_DIR/out"
      mount: {storage_provider: minio, path: models/yolo/v8}
      input: [{storage_provider: minio, path: photos/in}]
      output: [{storage_provider: minio, path: photos/out}]
"""


@pytest.fixture(scope="module")
def service() -> ServiceDefinition:
    (definition,) = load_services_text(FDL, source="mount.yaml", base_dir=None).services
    return definition


# -- the dispatcher's plan -----------------------------------------------------------------------------------


def test_the_plan_stages_the_folders_files_and_leaves_out_folder_markers() -> None:
    listing = [Listed("yolo/v8/", 0), Listed("yolo/v8/a.bin", 10), Listed("yolo/v8/sub/b.txt", 5)]
    plan = plan_mount(MOUNT, listing, max_objects=3, max_bytes=15)
    assert plan.refused is None
    assert [item.key for item in plan.objects] == ["yolo/v8/a.bin", "yolo/v8/sub/b.txt"]
    assert relative_path(MOUNT, "yolo/v8/sub/b.txt") == "sub/b.txt"


def test_more_objects_than_allowed_refuses_naming_the_setting() -> None:
    listing = [Listed(f"yolo/v8/{index}", 1) for index in range(4)]  # the listing asked for max + 1
    plan = plan_mount(MOUNT, listing, max_objects=3, max_bytes=100)
    assert plan.objects == ()
    assert plan.refused is not None
    assert "more than 3 objects" in plan.refused
    assert "BUCKETRUN_STORAGE__MOUNT_MAX_OBJECTS" in plan.refused


def test_more_bytes_than_allowed_refuses_naming_the_setting() -> None:
    plan = plan_mount(
        MOUNT, [Listed("yolo/v8/a", 60), Listed("yolo/v8/b", 41)], max_objects=10, max_bytes=100
    )
    assert plan.refused is not None
    assert "101 bytes, more than 100" in plan.refused
    assert "BUCKETRUN_STORAGE__MOUNT_MAX_BYTES" in plan.refused


def test_a_listing_too_large_for_a_job_becomes_a_refusal_of_bounded_size() -> None:
    long_key = "k" * 1000
    objects = tuple(
        MountedObject(f"{long_key}{index}", 1, "https://s3.example/" + long_key) for index in range(400)
    )
    text = manifest(MountGrant("/mnt/models/yolo/v8", 100, objects))
    assert len(text.encode()) < 1024
    document = json.loads(text)
    assert document["objects"] == []
    assert f"more than {MANIFEST_MAX_BYTES}" in document["refused"]


# -- the rendered pod ----------------------------------------------------------------------------------------


def render(service: ServiceDefinition, grant: MountGrant | None) -> dict[str, Any]:
    ev = event("photos", "in/cat.jpg")
    grants = StagingGrants(**{**grants_for(service).__dict__, "mount": grant})
    return JobRenderer().render_job(service, ev, grants)


def containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = job["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*spec["initContainers"], *spec["containers"]]}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_the_mount_is_an_emptydir_stage_in_fills_and_the_script_reads_only(
    service: ServiceDefinition,
) -> None:
    grant = MountGrant(
        "/mnt/models/yolo/v8", 2048, (MountedObject("weights.bin", 7, "https://s3.example/w?sig"),)
    )
    job = render(service, grant)
    kubernetes_validate.validate(job, "1.37.0", strict=True)
    assert check_manifest(job) == []
    (volume,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "mount"]
    assert volume == {"name": "mount", "emptyDir": {"sizeLimit": "2048"}}
    by_name = containers(job)
    assert {"name": "mount", "mountPath": "/mnt"} in by_name["stage-in"]["volumeMounts"]
    assert {"name": "mount", "mountPath": "/mnt", "readOnly": True} in by_name["run"]["volumeMounts"]
    assert all(m["name"] != "mount" for m in by_name["stage-out"]["volumeMounts"])
    staged = json.loads(env_of(by_name["stage-in"])[contract.MOUNT])
    assert staged == {
        "directory": "/mnt/models/yolo/v8",
        "max_bytes": 2048,
        "objects": [{"path": "weights.bin", "size": 7, "url": "https://s3.example/w?sig"}],
        "refused": None,
    }
    assert env_of(by_name["run"])[contract.MOUNT_DIR] == "/mnt/models/yolo/v8"
    assert "https://s3.example/w" not in json.dumps(by_name["run"])
    assert contract.EXIT_MOUNT_REFUSED in job["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"]["values"]


def test_a_service_without_mount_has_none_of_it() -> None:
    (plain,) = load_services_text(
        FDL.replace("      mount: {storage_provider: minio, path: models/yolo/v8}\n", ""),
        source="x",
        base_dir=None,
    ).services
    job = render(plain, None)
    assert all(v["name"] != "mount" for v in job["spec"]["template"]["spec"]["volumes"])
    for container in containers(job).values():
        assert contract.MOUNT not in env_of(container)
        assert contract.MOUNT_DIR not in env_of(container)


def _shape(document: Any) -> Any:
    if isinstance(document, dict):
        return {key: _shape(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_shape(value) for value in document]
    return type(document).__name__


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=1, max_size=80), min_size=1, max_size=5))
def test_hostile_keys_stay_data_and_never_change_the_manifests_shape(paths: list[str]) -> None:
    (definition,) = load_services_text(FDL, source="mount.yaml", base_dir=None).services
    benign = render(definition, MountGrant("/mnt/models/yolo/v8", 10, (MountedObject("a", 1, "https://x/"),)))
    objects = tuple(MountedObject(path, 1, "https://x/") for path in paths)
    hostile = render(definition, MountGrant("/mnt/models/yolo/v8", 10, objects))
    assert _shape(hostile) == _shape(benign)
    staged = json.loads(env_of(containers(hostile)["stage-in"])[contract.MOUNT])
    assert [o["path"] for o in staged["objects"]] == paths


# -- stage-in ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative", ["", "../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a/", ".", "a\x00b"]
)
def test_no_object_path_leads_outside_the_mount_directory(relative: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        mount_destination(tmp_path / "mnt", relative)


def test_nested_object_paths_land_under_the_mount_directory(tmp_path: Path) -> None:
    root = tmp_path / "mnt" / "models"
    assert mount_destination(root, "sub/dir/w.bin") == root / "sub" / "dir" / "w.bin"
    assert mount_destination(root, "..hidden/x") == root / "..hidden" / "x"


class _Objects(BaseHTTPRequestHandler):
    bodies: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.bodies.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Objects.bodies = {"/w": b"weights!", "/c": b"config", "/big": b"x" * 100}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Objects)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


def run_stage(config: MountConfig) -> tuple[int, str]:
    lines = io.StringIO()
    code = stage_mount(
        config, Reporter("bucketrun stage-in", stream=lines), RetryPolicy(window=2.0, timeout=5.0)
    )
    return code, lines.getvalue()


def test_stage_in_downloads_the_folder_read_only_and_skips_paths_that_escape(
    server: str, tmp_path: Path
) -> None:
    root = tmp_path / "mnt" / "models" / "yolo"
    objects = (
        MountObject("weights.bin", 8, f"{server}/w"),
        MountObject("cfg/model.yaml", 6, f"{server}/c"),
        MountObject("../escape", 6, f"{server}/c"),
    )
    code, log = run_stage(MountConfig(root, 1000, objects, None))
    assert code == contract.EXIT_OK, log
    assert (root / "weights.bin").read_bytes() == b"weights!"
    assert (root / "cfg" / "model.yaml").read_bytes() == b"config"
    assert not (tmp_path / "mnt" / "models" / "escape").exists()
    assert "skipping object path '../escape'" in log
    assert "2 objects, 14 bytes" in log
    assert stat.S_IMODE((root / "weights.bin").stat().st_mode) == 0o444
    assert stat.S_IMODE((root / "cfg").stat().st_mode) == 0o555
    assert server not in log


def test_a_refused_mount_fails_stage_in_with_the_reason(tmp_path: Path) -> None:
    config = MountConfig(tmp_path / "mnt" / "m", 10, (), "mount 'm' holds more than 100 objects (X); nothing")
    code, log = run_stage(config)
    assert code == contract.EXIT_MOUNT_REFUSED
    assert "holds more than 100 objects" in log
    assert not (tmp_path / "mnt").exists()


def test_a_folder_that_grew_past_its_bound_is_refused_while_downloading(server: str, tmp_path: Path) -> None:
    objects = (MountObject("w", 8, f"{server}/w"), MountObject("big", 10, f"{server}/big"))
    code, log = run_stage(MountConfig(tmp_path / "mnt" / "m", 50, objects, None))
    assert code == contract.EXIT_MOUNT_REFUSED
    assert "'big' takes it past its bound" in log
    assert not (tmp_path / "mnt" / "m" / "big").exists()


def test_an_object_gone_since_the_listing_refuses_the_mount(server: str, tmp_path: Path) -> None:
    code, log = run_stage(
        MountConfig(tmp_path / "mnt" / "m", 50, (MountObject("gone", 1, f"{server}/gone"),), None)
    )
    assert code == contract.EXIT_MOUNT_REFUSED
    assert "'gone' could not be read" in log


def test_the_mount_variable_parses_and_names_bad_fields() -> None:
    config = parse_mount(
        json.dumps(
            {
                "directory": "/mnt/a",
                "max_bytes": 5,
                "objects": [{"path": "x", "size": 1, "url": "u"}],
                "refused": None,
            }
        )
    )
    assert config.directory == Path("/mnt/a")
    assert config.objects == (MountObject("x", 1, "u"),)
    for bad, fragment in (
        ("[]", "must be a JSON object"),
        ('{"directory": "rel", "max_bytes": 1}', "directory"),
        ('{"directory": "/m", "max_bytes": -1}', "max_bytes"),
        ('{"directory": "/m", "max_bytes": 1, "objects": [{"path": 1}]}', "objects[0]"),
    ):
        with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            parse_mount(bad)


def test_function_config_names_the_mount(service: ServiceDefinition) -> None:
    text = JobRenderer().render_config_map(service)["data"]["function_config.yaml"]
    assert yaml.safe_load(text)["mount"] == {"storage_provider": "minio.default", "path": "models/yolo/v8"}
