"""The dry-run commands, driven through the real argument parser."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from bucketrun.cli.main import main
from dispatcher import __version__
from dispatcher.domain.events import build_message

FDL = Path(__file__).resolve().parent / "fixtures" / "fdl"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help_from_the_installed_script() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "bucketrun.cli.main", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"bucketrun {__version__}"
    helptext = subprocess.run(
        [sys.executable, "-m", "bucketrun.cli.main", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("services", "render", "events", "exit codes"):
        assert command in helptext.stdout


def test_services_validate_reports_services_and_warnings(capsys) -> None:
    code, out, _ = run(capsys, "services", "validate", str(FDL / "workflow"), str(FDL / "gpu-secrets.yaml"))
    assert code == 0
    for service in ("split-video", "darknet", "vllm-batch"):
        assert f"ok: {service}" in out
    assert "field 'expose'" in out
    assert out.rstrip().endswith("3 service(s), 4 warning(s), 0 render error(s)")


def test_services_validate_says_a_service_without_inputs_is_not_triggerable(capsys, tmp_path) -> None:
    text = (FDL / "bare-service.yaml").read_text()
    the_input = "input:\n  - storage_provider: minio.default\n    path: /deepaas-demo/inputs/\n"
    without_input = text.replace(the_input, "")
    assert without_input != text
    (tmp_path / "no-input.yaml").write_text(without_input)
    code, out, _ = run(capsys, "services", "validate", str(tmp_path / "no-input.yaml"))
    assert code == 0
    assert "ok: deepaas-demo (" in out
    assert ": no inputs (not triggerable) -> deepaas-demo/outputs" in out


def test_services_validate_strict_fails_on_warnings(capsys) -> None:
    code, _, err = run(capsys, "services", "validate", "--strict", str(FDL / "gpu-secrets.yaml"))
    assert code == 1
    assert "--strict" in err


def test_services_validate_names_file_service_and_field(capsys) -> None:
    code, _, err = run(capsys, "services", "validate", str(FDL / "bad-quantity.yaml"))
    assert code == 1
    assert "bad-quantity.yaml: service" in err
    assert "field 'cpu'" in err


def test_render_prints_valid_manifests(capsys) -> None:
    code, out, _ = run(
        capsys,
        "render",
        "--fdl",
        str(FDL / "workflow"),
        "--service",
        "split-video",
        "--bucket",
        "video-process",
        "--key",
        "in/my clip.mp4",
        "--namespace",
        "science",
    )
    assert code == 0
    config_map, job = yaml.safe_load_all(out)
    for doc in (config_map, job):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    assert job["metadata"]["namespace"] == "science"
    assert job["metadata"]["annotations"]["bucketrun.io/key"] == "in/my clip.mp4"
    assert "would not trigger" not in out


def test_render_notes_when_the_upload_would_not_trigger_the_service(capsys) -> None:
    code, out, _ = run(
        capsys,
        "render",
        "--fdl",
        str(FDL / "workflow"),
        "--service",
        "split-video",
        "--bucket",
        "other",
        "--key",
        "x",
    )
    assert code == 0
    assert "would not trigger 'split-video'" in out


def test_render_unknown_service_lists_the_known_ones(capsys) -> None:
    code, _, err = run(
        capsys, "render", "--fdl", str(FDL / "workflow"), "--service", "nope", "--bucket", "b", "--key", "k"
    )
    assert code == 1
    assert "no service named 'nope' (loaded: split-video, darknet)" in err


def test_events_inspect_routes_and_names_the_job(capsys, monkeypatch) -> None:
    body = build_message(
        event_name="s3:ObjectCreated:Put", bucket="video-process", key="in/a b+c.mp4", etag="e", sequencer="1"
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body)))
    code, out, _ = run(capsys, "events", "inspect", "-", "--fdl", str(FDL / "workflow"), "--json")
    assert code == 0
    (report,) = json.loads(out)
    assert report["key"] == "in/a b+c.mp4"
    assert [route["service"] for route in report["routes"]] == ["split-video"]
    assert report["routes"][0]["job"].startswith("split-video-")


def test_events_inspect_explains_no_route_and_refusals(capsys, tmp_path) -> None:
    message = tmp_path / "m.json"
    message.write_bytes(
        build_message(
            event_name="s3:ObjectCreated:Put",
            bucket="video-process",
            key="elsewhere/x",
            etag="e",
            sequencer="1",
        )
    )
    code, out, _ = run(capsys, "events", "inspect", str(message), "--fdl", str(FDL / "workflow"))
    assert code == 0
    assert "routes nowhere (folder-mismatch)" in out
    assert "the dispatcher: dead-lettered" in out  # a notification wider than the inputs: an operator sees it
    message.write_bytes(b"\xff\xfe not json")
    code, _, err = run(capsys, "events", "inspect", str(message))
    assert code == 1
    assert err.startswith("refused (not-utf8)")


# -- a service defined for several OSCAR clusters: --cluster, else BUCKETRUN_SERVICES__CLUSTER -------------

MULTI = str(FDL / "multi-cluster.yaml")


def test_validate_without_a_cluster_names_them_and_the_option(capsys, monkeypatch) -> None:
    monkeypatch.delenv("BUCKETRUN_SERVICES__CLUSTER", raising=False)
    code, out, err = run(capsys, "services", "validate", MULTI)
    assert code == 1
    assert "'edge-site' in" in out + err
    assert "choose its cluster with --cluster ID" in out + err
    assert "BUCKETRUN_SERVICES__CLUSTER" in out + err


def test_validate_with_a_cluster_uses_its_definition_and_says_what_it_set_aside(capsys, monkeypatch) -> None:
    monkeypatch.delenv("BUCKETRUN_SERVICES__CLUSTER", raising=False)
    code, out, _ = run(capsys, "services", "validate", "--cluster", "cloud-site", MULTI)
    assert code == 0
    assert "ok: leaf-counter (ghcr.io/example/leaf-counter:large; cpu 2, memory 4Gi)" in out
    assert "note: " in out
    assert "service 'leaf-counter' for cluster 'edge-site' set aside" in out


def test_the_setting_chooses_when_the_option_is_absent_and_the_option_wins(capsys, monkeypatch) -> None:
    monkeypatch.setenv("BUCKETRUN_SERVICES__CLUSTER", "cloud-site")
    code, out, _ = run(capsys, "services", "validate", MULTI)
    assert (code, "ok: leaf-counter (ghcr.io/example/leaf-counter:large" in out) == (0, True)
    code, out, err = run(capsys, "services", "validate", "--cluster", "edge-site", MULTI)
    assert code == 1
    assert "field 'volume'" in out + err
    monkeypatch.setenv("BUCKETRUN_SERVICES__CLUSTER", "\t")
    code, _, err = run(capsys, "services", "validate", MULTI)
    assert code == 2
    assert "BUCKETRUN_SERVICES__CLUSTER" in err


def test_render_and_events_inspect_take_the_cluster_too(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("BUCKETRUN_SERVICES__CLUSTER", raising=False)
    where = ("--bucket", "field-photos", "--key", "incoming/leaf.jpg")
    code, out, _ = run(
        capsys, "render", "--fdl", MULTI, "--service", "leaf-counter", *where, "--cluster", "cloud-site"
    )
    assert code == 0
    _, job = yaml.safe_load_all(out)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/example/leaf-counter:large"
    message = tmp_path / "m.json"
    message.write_bytes(
        build_message(
            event_name="s3:ObjectCreated:Put",
            bucket="field-photos",
            key="incoming/leaf.jpg",
            etag="e",
            sequencer="1",
        )
    )
    code, out, _ = run(
        capsys, "events", "inspect", str(message), "--fdl", MULTI, "--cluster", "cloud-site", "--json"
    )
    assert code == 0
    assert [route["service"] for route in json.loads(out)[0]["routes"]] == ["leaf-counter"]
