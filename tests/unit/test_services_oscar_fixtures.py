"""Every real OSCAR FDL in ../shared/fixtures/fdl loads, or is refused with a precise message.

The real files name script files (``script: script.sh``) that were not copied with them. Each test copies
the FDL into a temporary directory next to stub scripts with the names it expects, so the outcome below
is about the definition itself; one test checks that, read in place, the missing script is named.
The expected outcome of every file is written out here: a change of policy must change this table.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dispatcher.fdl import ServiceDefinitionError, load_services

FIXTURES = (Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "fdl").resolve()

pytestmark = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"shared OSCAR fixtures not found at {FIXTURES}"
)


@dataclass(frozen=True)
class Loads:
    """The file loads: these services, exactly these (service, field) warnings."""

    scripts: tuple[str, ...]
    services: tuple[str, ...]
    warnings: frozenset[tuple[str | None, str]] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Refused:
    """The file is refused with exactly these problems: (service, field, a fragment of the message)."""

    scripts: tuple[str, ...]
    problems: tuple[tuple[str | None, str | None, str], ...]


NOT_SUPPORTED = "is not supported: bucketrun reads and writes only MinIO/S3"
NO_INPUT = "input"

EXPECTED: dict[str, Loads | Refused] = {
    "oscar-ai4eosc-models-update-base.yaml": Loads(
        ("script.sh",), ("base-name",), frozenset({("base-name", "vo"), ("base-name", NO_INPUT)})
    ),
    "oscar-ai4papi-deepaas-service-template.yaml": Refused(
        (),
        (
            ("${NAME}", "environment", "must be a mapping with variables/secrets, got a string"),
            ("${NAME}", "name", "'${NAME}' is not a DNS-1123 label"),
            ("${NAME}", "image", "invalid image reference '${IMAGE}'"),
            ("${NAME}", "cpu", "invalid quantity '${CPU}'"),
            ("${NAME}", "memory", "invalid quantity '${MEMORY}Mi'"),
            ("${NAME}", "input[0].path", "invalid bucket name '${NAME}'"),
            ("${NAME}", "output[0].path", "invalid bucket name '${NAME}'"),
        ),
    ),
    "oscar-blog-posenet-deepaas-async.yaml": Loads(("deepaas.sh",), ("posenet",)),
    "oscar-body-pose-detection-async-deepaas.yaml": Loads(("script.sh",), ("body-pose-detection-async",)),
    "oscar-cli-example-workflow.yaml": Loads(("plants.sh", "grayify.sh"), ("plants", "grayify")),
    "oscar-docs-fdl-reference-example.yaml": Refused(
        ("plants.sh", "grayify.sh", "script.sh"),
        (
            ("grayify", "output[1].storage_provider", f"'onedata.my_onedata' {NOT_SUPPORTED}"),
            ("grayify", "output[2].storage_provider", f"'webdav.dcache' {NOT_SUPPORTED}"),
            ("inference", "kserve", "the KServe InferenceService the script calls would not exist"),
        ),
    ),
    "oscar-dog-breed-ai4oshub.yaml": Loads(
        ("script.sh",), ("dog-breed-detector",), frozenset({("dog-breed-detector", "vo")})
    ),
    # A template: its `[aws_access_key_id]` placeholders are YAML lists, which oscar-cli's decoder refuses
    # too. The cloud entry's output names the edge cluster's MinIO, which oscar-cli fills in from its own
    # cluster configuration (absent from bucketrun). The service is defined for two clusters.
    "oscar-fire-detection-replicas.yaml": Refused(
        ("script.sh",),
        tuple(
            ("fire-detection", f"environment.variables.{name}", "value must be a string, got a list")
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "TOPIC_ARN")
        )
        * 2
        + (
            (
                "fire-detection",
                "output[1].storage_provider",
                "'minio.oscar-cluster-edge' is not defined under storage_providers: oscar-cli fills in the "
                "MinIO of each cluster an FDL names (here 'oscar-cluster-edge') from its own configuration",
            ),
            (
                "fire-detection",
                "name",
                "service name 'fire-detection' is defined for several OSCAR clusters: 'oscar-cluster-edge' "
                "in <fixture>, 'oscar-cluster' in <fixture>; bucketrun runs one: choose its cluster with "
                "--cluster ID",
            ),
        ),
    ),
    "oscar-fish-detector-replicas-eu.yaml": Loads(
        ("script.sh",),
        ("fish-detector",),
        frozenset(
            {(None, "clusters"), ("fish-detector", "replicas"), (None, "storage_providers.minio.oscar-us")}
        ),
    ),
    # mount: staged in read-only at /mnt/<path> (from bucketrun's own store).
    "oscar-grayify-mount.yaml": Loads(("script.sh",), ("grayifymount",)),
    "oscar-hub-imagemagick.yaml": Loads(
        ("script.sh",), ("imagemagick",), frozenset({("imagemagick", "synchronous")})
    ),
    "oscar-hub-posenet-tf-deepaas-expose.yaml": Loads(
        ("script.sh",), ("posenet-tf",), frozenset({("posenet-tf", "expose"), ("posenet-tf", NO_INPUT)})
    ),
    "oscar-hub-stress-test.yaml": Loads(
        ("script.sh",), ("stress-test",), frozenset({("stress-test", "synchronous")})
    ),
    "oscar-hub-vllm-llama-gpu-expose.yaml": Loads(
        ("script.sh",),
        ("vllm-gpu-llama",),
        frozenset({("vllm-gpu-llama", "expose"), ("vllm-gpu-llama", NO_INPUT)}),
    ),
    "oscar-hub-yolov8-ai4oshub.yaml": Loads(("script.sh",), ("yolov8",), frozenset({("yolov8", "vo")})),
    "oscar-jupyter-expose-mount.yaml": Loads(
        ("jupyterscript2.sh",), ("jupyter",), frozenset({("jupyter", "expose"), ("jupyter", NO_INPUT)})
    ),
    "oscar-kserve-yolo8n.yaml": Refused(
        ("script.sh",),
        (
            (
                "kserve-isvc-yolo8n-onnx",
                "kserve",
                "the KServe InferenceService the script calls would not exist",
            ),
        ),
    ),
    "oscar-mask-detector-workflow.yaml": Loads(
        ("blurry-faces.sh", "mask-detector.sh"), ("anon-and-split", "mask-detector")
    ),
    "oscar-plant-classification-sync-deepaas.yaml": Loads(
        ("script.sh",), ("plant-classification-sync",), frozenset({("plant-classification-sync", NO_INPUT)})
    ),
    "oscar-rucio-input.yaml": Refused(
        (),
        (
            ("rucio-example", "script", "required"),
            ("rucio-example", "input[0].storage_provider", f"'rucio.rucio' {NOT_SUPPORTED}"),
        ),
    ),
    "oscar-secrets-usage.yaml": Loads(
        ("script.sh",), ("cowsay-secret",), frozenset({("cowsay-secret", NO_INPUT)})
    ),
    "oscar-stable-diffusion.yaml": Loads(
        ("script.sh",), ("stable-diffusion-tf",), frozenset({("stable-diffusion-tf", "vo")})
    ),
    "oscar-thermal-detector-interlink.yaml": Refused(
        ("script.sh",),
        (
            (
                "thermal-detector-interlink",
                "image",
                "invalid image reference 'docker://ai4oshub/thermal-bridges-rooftops-detector' "
                "(no URL scheme",
            ),
        ),
    ),
    # `script: /opt/...` is read under the FDL's folder, as oscar-cli reads it (it joins folder, '/' and
    # value): staged there, both services load, one per cluster.
    "oscar-toscarizer-aisprint-multicluster.yaml": Loads(
        ("opt/mask-detector/script.sh", "opt/blurry-faces-onnx/script.sh"),
        ("mask-detector", "blurry-faces-onnx"),
    ),
    "oscar-video-process-chain.yaml": Loads(
        ("split-video.sh", "yolov3-object-detection.sh"), ("split-video", "darknet")
    ),
    "oscar-volume-demo.yaml": Refused(
        ("script.sh",),
        (("volume-demo", "volume", "the persistent volume the script expects would not be mounted"),),
    ),
}


def _fixture_names() -> list[str]:
    return sorted(path.name for path in FIXTURES.glob("*.yaml")) if FIXTURES.is_dir() else []


def _staged(name: str, scripts: tuple[str, ...], directory: Path) -> Path:
    """A copy of fixture ``name`` in ``directory`` next to stub scripts at the paths ``scripts``."""
    target = directory / name
    shutil.copyfile(FIXTURES / name, target)
    for script in scripts:
        (directory / script).parent.mkdir(parents=True, exist_ok=True)
        (directory / script).write_text(f"#!/bin/sh\necho stub {script}\n", encoding="utf-8")
    return target


def test_every_fixture_has_an_expected_outcome():
    assert set(_fixture_names()) == set(EXPECTED)


@pytest.mark.parametrize("name", _fixture_names())
def test_fixture_loads_or_is_refused_precisely(name, tmp_path):
    expected = EXPECTED[name]
    path = _staged(name, expected.scripts, tmp_path)
    if isinstance(expected, Loads):
        loaded = load_services([path])
        assert tuple(service.name for service in loaded.services) == expected.services
        assert {(warning.service, warning.field) for warning in loaded.warnings} == set(expected.warnings)
        assert all(warning.file == str(path) for warning in loaded.warnings)
        assert all(
            service.source == str(path) and service.script.startswith("#!/bin/sh") for service in loaded
        )
    else:
        with pytest.raises(ServiceDefinitionError) as caught:
            load_services([path])
        problems = caught.value.problems
        assert [(problem.service, problem.field) for problem in problems] == [
            (service, field_name) for service, field_name, _ in expected.problems
        ]
        for problem, (_, _, fragment) in zip(problems, expected.problems, strict=True):
            assert problem.file == str(path)
            assert fragment.replace("<fixture>", str(path)) in problem.message
        assert str(problems[0]) in str(caught.value)


def test_fixture_read_in_place_names_the_missing_script():
    path = FIXTURES / "oscar-video-process-chain.yaml"
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([path])
    assert [(problem.service, problem.field) for problem in caught.value.problems] == [
        ("split-video", "script"),
        ("darknet", "script"),
    ]
    assert str(FIXTURES / "split-video.sh") in caught.value.problems[0].message
    assert "not found" in caught.value.problems[0].message


def test_real_gpu_service_gets_one_gpu_and_its_secret(tmp_path):
    service = load_services(
        [_staged("oscar-hub-vllm-llama-gpu-expose.yaml", ("script.sh",), tmp_path)]
    ).by_name("vllm-gpu-llama")
    assert (service.enable_gpu, service.gpus) == (True, 1)
    assert dict(service.variables) == {
        "GPU_MEMORY_UTILIZATION": "0.5",
        "MAX_MODEL_LEN": "1000",
        "OPENAI_BASE_URL": "/system/services/vllm-gpu-llama/exposed",
    }
    assert service.secrets["API_KEY"].get_secret_value() == "secretkey"
    assert "secretkey" not in repr(service)
    assert not service.triggerable


def test_capitalised_variables_and_lowercase_secrets_both_read(tmp_path):
    service = load_services([_staged("oscar-secrets-usage.yaml", ("script.sh",), tmp_path)]).by_name(
        "cowsay-secret"
    )
    assert dict(service.variables) == {"INPUT_TYPE": "json"}
    assert list(service.secrets) == ["COWSAY_SECRET"]


def test_trailing_tabs_after_a_value_are_separation(tmp_path):
    service = load_services([_staged("oscar-hub-stress-test.yaml", ("script.sh",), tmp_path)]).by_name(
        "stress-test"
    )
    assert service.log_level == "CRITICAL"
    assert service.variables["exec_timeout"] == "0"


def test_chain_of_real_workflow_routes_output_to_next_input(tmp_path):
    loaded = load_services(
        [
            _staged(
                "oscar-video-process-chain.yaml", ("split-video.sh", "yolov3-object-detection.sh"), tmp_path
            )
        ]
    )
    split, darknet = loaded.by_name("split-video"), loaded.by_name("darknet")
    assert split.outputs[0].may_trigger(darknet.inputs[0])
    assert not darknet.outputs[0].may_trigger(split.inputs[0])
    assert (darknet.inputs[0].provider, darknet.inputs[0].bucket, darknet.inputs[0].folder) == (
        "minio.default",
        "video-process",
        "med",
    )


def _filled_in(tmp_path: Path) -> Path:
    """The fire-detection template with its `[placeholder]` values filled in, as its user would."""
    path = _staged("oscar-fire-detection-replicas.yaml", ("script.sh",), tmp_path)
    text = path.read_text(encoding="utf-8")
    for placeholder in ("aws_access_key_id", "aws_secret_access_key", "aws_default_region", "topic_arn"):
        text = text.replace(f"[{placeholder}]", f"'{placeholder}-value'")
    path.write_text(text, encoding="utf-8")
    return path


def test_a_service_for_two_clusters_loads_for_the_cluster_chosen(tmp_path):
    path = _filled_in(tmp_path)
    loaded = load_services([path], cluster="oscar-cluster-edge")
    (service,) = loaded.services
    assert (service.name, service.cluster_id) == ("fire-detection", "oscar-cluster-edge")
    assert [output.provider for output in service.outputs] == ["minio.default"]
    assert {(warning.service, warning.field) for warning in loaded.warnings} == {
        ("fire-detection", "replicas"),
        ("fire-detection", "environment.variables.SEND_SNS"),  # `false` unquoted: read as 'false'
    }
    assert loaded.notes == (
        f"{path}: service 'fire-detection' for cluster 'oscar-cluster' set aside: "
        "the definition for cluster 'oscar-cluster-edge' is used",
    )


def test_the_other_clusters_definition_needs_the_minio_oscar_cli_would_fill_in(tmp_path):
    path = _filled_in(tmp_path)
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([path], cluster="oscar-cluster")
    (problem,) = caught.value.problems
    assert (problem.service, problem.field) == ("fire-detection", "output[1].storage_provider")
    assert "oscar-cli fills in the MinIO of each cluster an FDL names" in problem.message
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([path])
    assert [problem.field for problem in caught.value.problems] == ["output[1].storage_provider", "name"]


def test_without_duplicates_a_chosen_cluster_keeps_every_service_as_apply_cluster_does(tmp_path):
    scripts = ("opt/mask-detector/script.sh", "opt/blurry-faces-onnx/script.sh")
    path = _staged("oscar-toscarizer-aisprint-multicluster.yaml", scripts, tmp_path)
    for cluster in (None, "oscar-cluster-fixed1", "elsewhere"):
        loaded = load_services([path], cluster=cluster)
        assert [(s.name, s.cluster_id) for s in loaded] == [
            ("mask-detector", "oscar-cluster-fixed3"),
            ("blurry-faces-onnx", "oscar-cluster-fixed1"),
        ]
        assert loaded.notes == ()
    assert (
        load_services([path]).by_name("mask-detector").script
        == "#!/bin/sh\necho stub opt/mask-detector/script.sh\n"
    )


def test_an_absolute_script_path_read_in_place_names_where_oscar_cli_looks():
    path = FIXTURES / "oscar-toscarizer-aisprint-multicluster.yaml"
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([path])
    first = caught.value.problems[0]
    assert first.message.startswith(
        f"script file {str(FIXTURES / 'opt/mask-detector/script.sh')!r} not found"
    )
