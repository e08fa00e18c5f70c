"""Job rendering: valid manifests (kubernetes-validate strict + our checks), golden files, and
hostile values that stay data."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.domain import constants as c
from dispatcher.domain.events import ObjectEvent, build_message, parse_message
from dispatcher.domain.identity import job_name, object_version
from dispatcher.fdl import ServiceDefinition, ServiceDefinitionError, load_services, load_services_text
from dispatcher.process.job_creation import JobCreator
from dispatcher.rendering.context import OutputGrant, RenderSettings, StagingGrants, placeholder_grants
from dispatcher.rendering.manifest_checks import check_manifest
from dispatcher.rendering.render import DEFAULT_TEMPLATE_DIR, JobRenderer, RenderError, renderer_from_settings
from dispatcher.runtime.settings import ClusterSettings
from job_templates.stager import contract
from job_templates.stager.config import stage_out_config

HERE = Path(__file__).resolve().parent
FDL = HERE / "fixtures" / "fdl"
GOLDEN = HERE / "golden"
SHARED_FDL = (HERE.parents[1] / ".." / "shared" / "fixtures" / "fdl").resolve()
K8S_VERSION = "1.37.0"
EVENT_TIME = datetime(2026, 11, 25, 19, 0, 0, tzinfo=UTC)
UPDATE_GOLDEN = os.environ.get("BUCKETRUN_UPDATE_GOLDEN") == "1"


def event(
    bucket: str, key: str, *, version: str | None = None, name: str = "s3:ObjectCreated:Put"
) -> ObjectEvent:
    body = build_message(
        event_name=name,
        bucket=bucket,
        key=key,
        size=12,
        etag="0123456789abcdef0123456789abcdef",
        version_id=version,
        sequencer="17A76FE05CF3469B",
        content_type="text/plain",
        event_time=EVENT_TIME,
    )
    (parsed,) = parse_message(body)
    return parsed


def grants_for(service: ServiceDefinition) -> StagingGrants:
    return StagingGrants(
        input_url="https://s3.example/in?X-Amz-Signature=abc",
        outputs=tuple(
            OutputGrant(
                o.provider, o.bucket, o.folder, o.prefix, o.suffix, "https://s3.example/", {"policy": "p"}
            )
            for o in service.outputs
        ),
        expires_at="2026-11-25T21:00:00Z",
    )


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert check_manifest(doc) == []


def service_from(text: str, base_dir: Path = FDL) -> ServiceDefinition:
    (service,) = load_services_text(text, source="test.yaml", base_dir=base_dir).services
    return service


MINIMAL = """
functions:
  oscar:
  - c:
      name: upper
      image: busybox:1.36
      cpu: '0.5'
      memory: 256Mi
      script: |
        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"
      input:
      - storage_provider: minio
        path: photos/in
      output:
      - storage_provider: minio
        path: photos/out
"""


@pytest.fixture(scope="module")
def renderer() -> JobRenderer:
    return JobRenderer(RenderSettings(namespace="jobs", stager_image="registry.example/bucketrun:1.0"))


# -- representative renders: valid, and equal to their golden files -----------------------------------------

GOLDEN_CASES = {
    "cpu-only": (lambda: service_from(MINIMAL), "photos", "in/cat.txt"),
    "gpu-secrets-kueue": (
        lambda: load_services([FDL / "gpu-secrets.yaml"]).by_name("vllm-batch"),
        "prompts",
        "in/q.json",
    ),
    "multi-output-suffix": (
        lambda: load_services([FDL / "filters.yaml"]).by_name("mask-detector"),
        "blurry-faces-onnx",
        "output/frame-1.jpg",
    ),
    "script-from-file": (lambda: load_services([FDL / "workflow"]).services[0], None, None),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_representative_renders_validate_and_match_golden(case: str, renderer: JobRenderer) -> None:
    make, bucket, key = GOLDEN_CASES[case]
    service = make()
    if bucket is None:
        bucket, key = service.inputs[0].bucket, f"{service.inputs[0].folder}/clip.mp4"
    rendered = renderer.render(service, event(bucket, key), grants_for(service))
    validate(rendered.job)
    validate(rendered.config_map)
    text = yaml.safe_dump(
        {"configMap": rendered.config_map, "job": rendered.job}, sort_keys=True, allow_unicode=True
    )
    text = text.replace(str(FDL), "<fixtures>")  # the FDL's path is recorded as its source
    golden = GOLDEN / f"{case}.yaml"
    if UPDATE_GOLDEN or not golden.exists():
        if os.environ.get("CI") and not golden.exists():
            pytest.fail(
                f"golden file {golden.name} missing; run with BUCKETRUN_UPDATE_GOLDEN=1 and commit it"
            )
        golden.write_text(text)
    assert text == golden.read_text(), f"render of {case} changed; if intended, BUCKETRUN_UPDATE_GOLDEN=1"


def test_gpu_service_requests_gpus_on_gpu_nodes_and_waits_for_kueue(renderer: JobRenderer) -> None:
    service = load_services([FDL / "gpu-secrets.yaml"]).by_name("vllm-batch")
    job = renderer.render_job(service, event("prompts", "in/q.json"), grants_for(service))
    pod = job["spec"]["template"]["spec"]
    run = next(x for x in pod["containers"] if x["name"] == contract.CONTAINER_RUN)
    assert run["resources"]["limits"][c.GPU_RESOURCE] == 2
    assert run["resources"]["requests"] == {"cpu": "2.0", "memory": "10Gi"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][c.LABEL_KUEUE_QUEUE] == "gpu-queue"
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["backoffLimit"] == 1


NO_RESOURCES = MINIMAL.replace("      cpu: '0.5'\n      memory: 256Mi\n", "")


def run_resources(renderer: JobRenderer, service: ServiceDefinition) -> dict[str, Any]:
    job = renderer.render_job(service, event("photos", "in/cat.txt"), grants_for(service))
    validate(job)
    run = next(
        x for x in job["spec"]["template"]["spec"]["containers"] if x["name"] == contract.CONTAINER_RUN
    )
    resources: dict[str, Any] = run["resources"]
    return resources


def test_a_service_without_cpu_or_memory_gets_oscars_defaults_not_best_effort(renderer: JobRenderer) -> None:
    service = service_from(NO_RESOURCES)
    assert service.cpu is None
    assert service.memory is None
    # OSCAR's defaults (pkg/handlers/create.go checkValues): cpu 0.2, memory 256Mi; requests equal limits.
    expected = {"cpu": "0.2", "memory": "256Mi"}
    assert run_resources(renderer, service) == {"requests": expected, "limits": expected}


@pytest.mark.parametrize(
    ("fdl", "expected"),
    [
        ("      cpu: '1.5'\n      memory: 2Gi\n", {"cpu": "1.5", "memory": "2Gi"}),
        ("      cpu: 750m\n", {"cpu": "750m", "memory": "256Mi"}),
        ("      memory: 1Gi\n", {"cpu": "0.2", "memory": "1Gi"}),
    ],
)
def test_the_fdls_cpu_and_memory_win_over_the_defaults_each_on_its_own(
    fdl: str, expected: dict[str, str], renderer: JobRenderer
) -> None:
    service = service_from(NO_RESOURCES.replace("      script: |", fdl + "      script: |"))
    assert run_resources(renderer, service) == {"requests": expected, "limits": expected}


def test_the_deployments_defaults_replace_oscars(renderer: JobRenderer) -> None:
    cluster = ClusterSettings(default_cpu="500m", default_memory="1Gi")
    configured = renderer_from_settings(cluster)
    expected = {"cpu": "500m", "memory": "1Gi"}
    assert run_resources(configured, service_from(NO_RESOURCES)) == {"requests": expected, "limits": expected}
    # A service's own values still win, and the stager containers keep their own small resources.
    given = {"cpu": "0.5", "memory": "256Mi"}
    assert run_resources(configured, service_from(MINIMAL)) == {"requests": given, "limits": given}
    bare, cat = service_from(NO_RESOURCES), event("photos", "in/cat.txt")
    job = configured.render_job(bare, cat, placeholder_grants(bare, cat))
    stager = job["spec"]["template"]["spec"]["initContainers"][0]
    assert stager["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_ephemeral_storage_request_is_a_request_of_the_run_container_only(renderer: JobRenderer) -> None:
    # OSCAR (pkg/types/service.go CreateResources): requests[ephemeral-storage], and no limit.
    service = service_from(
        MINIMAL.replace(
            "      memory: 256Mi\n", "      memory: 256Mi\n      ephemeral_storage_request: 2Gi\n"
        )
    )
    assert service.ephemeral_storage_request == "2Gi"
    assert run_resources(renderer, service) == {
        "requests": {"cpu": "0.5", "memory": "256Mi", "ephemeral-storage": "2Gi"},
        "limits": {"cpu": "0.5", "memory": "256Mi"},
    }
    job = renderer.render_job(service, event("photos", "in/cat.txt"), grants_for(service))
    pod = job["spec"]["template"]["spec"]
    stagers = [*pod["initContainers"], *(x for x in pod["containers"] if x["name"] != contract.CONTAINER_RUN)]
    assert all("ephemeral-storage" not in yaml.safe_dump(x["resources"]) for x in stagers)


def test_without_ephemeral_storage_request_nothing_is_requested(renderer: JobRenderer) -> None:
    assert "ephemeral-storage" not in run_resources(renderer, service_from(MINIMAL))["requests"]
    assert "ephemeral-storage" not in run_resources(renderer, service_from(NO_RESOURCES))["requests"]


@pytest.mark.parametrize("amount", ["1", "1e3", "0.5Gi", ".5Ti", "+1Ki", "1500M", "9223372036854775807"])
def test_any_ephemeral_quantity_keeps_the_manifests_shape(amount: str, renderer: JobRenderer) -> None:
    with_storage = MINIMAL.replace(
        "      memory: 256Mi\n", f"      memory: 256Mi\n      ephemeral_storage_request: '{amount}'\n"
    )
    benign = renderer.render_job(
        service_from(with_storage.replace(f"'{amount}'", "2Gi")),
        event("photos", "in/a.txt"),
        grants_for(service_from(MINIMAL)),
    )
    odd = renderer.render_job(
        service_from(with_storage), event("photos", "in/a.txt"), grants_for(service_from(MINIMAL))
    )
    assert shape(odd) == shape(benign)
    validate(odd)


def run_env(renderer: JobRenderer, service: ServiceDefinition) -> list[dict[str, Any]]:
    job = renderer.render_job(service, event("photos", "in/cat.txt"), grants_for(service))
    validate(job)
    run = next(
        x for x in job["spec"]["template"]["spec"]["containers"] if x["name"] == contract.CONTAINER_RUN
    )
    env: list[dict[str, Any]] = run["env"]
    return env


@pytest.mark.parametrize(
    ("fdl", "expected"),
    [
        ("", "INFO"),  # OSCAR's default when log_level is unset
        ("      log_level: ''\n", "INFO"),
        ("      log_level: debug\n", "DEBUG"),  # OSCAR upper-cases it
        ("      log_level: NotSet\n", "NOTSET"),
        ("      log_level: CRITICAL\n", "CRITICAL"),
    ],
)
def test_the_script_sees_the_supervisors_log_level_as_log_level(
    fdl: str, expected: str, renderer: JobRenderer
) -> None:
    env = run_env(renderer, service_from(MINIMAL.replace("      script: |", fdl + "      script: |")))
    assert [entry for entry in env if entry["name"] == "LOG_LEVEL"] == [
        {"name": "LOG_LEVEL", "value": expected}
    ]


def test_a_services_own_log_level_variable_wins_as_it_does_for_oscars_supervisor(
    renderer: JobRenderer,
) -> None:
    text = MINIMAL.replace(
        "      script: |",
        "      log_level: DEBUG\n      environment: {variables: {LOG_LEVEL: warning}}\n      script: |",
    )
    loaded = load_services_text(text, source="test.yaml", base_dir=FDL)
    (warning,) = loaded.warnings
    assert (warning.field, warning.message) == (
        "environment.variables.LOG_LEVEL",
        "'warning' wins over log_level 'DEBUG', as it does for OSCAR's supervisor",
    )
    env = run_env(renderer, loaded.by_name("upper"))
    assert [entry for entry in env if entry["name"] == "LOG_LEVEL"] == [
        {"name": "LOG_LEVEL", "value": "warning"}
    ]


def test_run_as_user_makes_the_script_container_non_root_without_capabilities(renderer: JobRenderer) -> None:
    text = """
name: nonroot
image: python:3.12-slim
script: python -c 'print(1)'
input: [{storage_provider: minio, path: data/in}]
output: [{storage_provider: minio, path: data/out}]
bucketrun: {run_as_user: 1000}
"""
    for service, expected in (
        (service_from(text), {"runAsNonRoot": True, "runAsUser": 1000, "capabilities": {"drop": ["ALL"]}}),
        (service_from(text.replace("bucketrun: {run_as_user: 1000}", "")), {}),
    ):
        job = renderer.render_job(service, event("data", "in/x.txt"), grants_for(service))
        validate(job)
        run = next(
            x for x in job["spec"]["template"]["spec"]["containers"] if x["name"] == contract.CONTAINER_RUN
        )
        assert run["securityContext"] == {"allowPrivilegeEscalation": False, **expected}


def test_secrets_reach_the_pod_only_as_secret_references(renderer: JobRenderer) -> None:
    service = load_services([FDL / "gpu-secrets.yaml"]).by_name("vllm-batch")
    rendered = renderer.render(service, event("prompts", "in/q.json"), grants_for(service))
    text = yaml.safe_dump([rendered.job, rendered.config_map])
    assert "secretkey" not in text
    run = rendered.job["spec"]["template"]["spec"]["containers"][0]
    (api_key,) = [e for e in run["env"] if e["name"] == "API_KEY"]
    assert api_key == {
        "name": "API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "bucketrun-vllm-batch-secrets", "key": "API_KEY"}},
    }


def test_oscar_variables_and_identity(renderer: JobRenderer) -> None:
    service = service_from(MINIMAL)
    ev = event("photos", "in/sub dir/cat+1.txt", version="v-7")
    job = renderer.render_job(service, ev, grants_for(service))
    assert job["metadata"]["name"] == job_name("upper", "photos", "in/sub dir/cat+1.txt", object_version(ev))
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["STORAGE_OBJECT_KEY"]["value"] == "in/sub dir/cat+1.txt"
    assert env["INPUT_FILE_PATH"]["value"] == "/bucketrun/work/input/cat+1.txt"
    assert env["TMP_OUTPUT_DIR"]["value"] == "/bucketrun/work/output"
    assert env["JOB_UUID"]["value"] == job["metadata"]["name"]
    assert yaml.safe_load(env["EVENT"]["value"])["Records"][0]["s3"]["bucket"]["name"] == "photos"
    assert job["metadata"]["annotations"][c.ANNOTATION_KEY] == "in/sub dir/cat+1.txt"
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_presigned_urls_only_in_stager_containers(renderer: JobRenderer) -> None:
    service = service_from(MINIMAL)
    job = renderer.render_job(service, event("photos", "in/a.txt"), grants_for(service))
    pod = job["spec"]["template"]["spec"]
    run = next(x for x in pod["containers"] if x["name"] == contract.CONTAINER_RUN)
    assert "X-Amz-Signature" not in yaml.safe_dump(run)
    assert "X-Amz-Signature" in yaml.safe_dump(pod["initContainers"])


def test_config_map_name_follows_script_content(renderer: JobRenderer) -> None:
    first = renderer.render_config_map(service_from(MINIMAL))
    second = renderer.render_config_map(service_from(MINIMAL.replace("tr a-z A-Z", "tr A-Z a-z")))
    assert first["metadata"]["name"] != second["metadata"]["name"]
    assert first["immutable"] is True
    assert first["data"]["script.sh"].startswith("tr a-z A-Z")


# -- every asynchronous real OSCAR FDL renders valid manifests ---------------------------------------------


def _shared_services() -> list[tuple[str, str]]:
    if not SHARED_FDL.is_dir():
        return []
    return [(p.name, p.read_text()) for p in sorted(SHARED_FDL.glob("*.yaml"))]


@pytest.mark.skipif(not SHARED_FDL.is_dir(), reason=f"shared OSCAR fixtures not found at {SHARED_FDL}")
def test_every_triggerable_oscar_fixture_renders_valid_manifests(
    tmp_path: Path, renderer: JobRenderer
) -> None:
    rendered = 0
    for name, text in _shared_services():
        workdir = tmp_path / name
        workdir.mkdir()
        (workdir / name).write_text(text)
        for script in _named_scripts(text):
            (workdir / script).write_text("echo stub\n")
        try:
            loaded = load_services([workdir / name])
        except ServiceDefinitionError:
            continue  # refusals are covered (with their exact messages) by test_services_oscar_fixtures
        for service in loaded.services:
            for item in service.inputs:
                key = f"{item.folder}/input.png" if item.folder else "input.png"
                manifests = renderer.render(
                    service, event(item.bucket, key), placeholder_grants(service, event(item.bucket, key))
                )
                validate(manifests.job)
                validate(manifests.config_map)
                rendered += 1
    assert rendered >= 10, f"only {rendered} fixture services rendered; the fixture set shrank?"


def _named_scripts(text: str) -> set[str]:
    names: set[str] = set()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("script:"):
            value = stripped.removeprefix("script:").strip().strip("'\"")
            if value and "/" not in value and " " not in value and value not in {"|", "|-", ">"}:
                names.add(value)
    return names


# -- hostile values stay data ------------------------------------------------------------------------------

HOSTILE = [
    'a"b',
    "line1\nline2: injected\n- item",
    "{{ 7*7 }}",
    "$(reboot)",
    "`id`",
    "../../etc/passwd",
    "key: value",
    "- list",
    "#comment",
    "&anchor *alias",
    "!!python/object:os.system",
    "\x85nel\u2028ls\u2029ps",
    "\t tab",
    "emoji 😀 and \uff26\uff55\uff4c\uff4c (fullwidth) and e\u0301",
    "x" * 900,
]


def shape(value: Any) -> Any:
    """The manifest with every string replaced by a placeholder: what must not change."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def _render_pair(renderer: JobRenderer, key: str, variable: str) -> tuple[dict[str, Any], dict[str, Any]]:
    service = service_from(MINIMAL)
    hostile_service = service.model_copy(update={"variables": {**service.variables, "GREETING": variable}})
    benign_service = service.model_copy(update={"variables": {**service.variables, "GREETING": "hello"}})
    # Built directly: the parser refuses some of these keys (as MinIO does), but rendering must be
    # safe on its own, whatever reaches it.
    template = event("photos", "in/plain.txt")
    record = copy.deepcopy(dict(template.record))
    record["s3"]["object"]["key"] = f"in/{key}"
    hostile_event = dataclasses.replace(template, key=f"in/{key}", record=record)
    hostile = renderer.render_job(hostile_service, hostile_event, grants_for(service))
    benign = renderer.render_job(benign_service, event("photos", "in/plain.txt"), grants_for(service))
    return hostile, benign


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_key_and_variable_do_not_change_the_shape(value: str, renderer: JobRenderer) -> None:
    hostile, benign = _render_pair(renderer, value, value)
    assert shape(hostile) == shape(benign)
    validate(hostile)
    env = {e["name"]: e.get("value") for e in hostile["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["STORAGE_OBJECT_KEY"] == f"in/{value}"
    assert env["GREETING"] == value
    assert hostile["metadata"]["annotations"][c.ANNOTATION_KEY] == f"in/{value}"


object_keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=200,
).filter(
    lambda k: (
        not k.endswith("/") and "/./" not in f"/{k}/" and "/../" not in f"/{k}/" and not k.startswith("/")
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=object_keys, value=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_arbitrary_keys_and_values_stay_data(key: str, value: str, renderer: JobRenderer) -> None:
    if len(f"in/{key}".encode()) > 1024:
        return  # MinIO refuses such keys before any event exists
    hostile, benign = _render_pair(renderer, key, value)
    assert shape(hostile) == shape(benign)
    validate(hostile)
    env = {e["name"]: e.get("value") for e in hostile["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["STORAGE_OBJECT_KEY"] == f"in/{key}"
    assert env["GREETING"] == value


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=500))
def test_arbitrary_scripts_stay_data(script: str, renderer: JobRenderer) -> None:
    service = service_from(MINIMAL).model_copy(update={"script": script})
    config_map = renderer.render_config_map(service)
    validate(config_map)
    assert config_map["data"]["script.sh"] == script
    assert set(config_map) == {"apiVersion", "kind", "metadata", "immutable", "data"}


# -- the template environment enforces its rules -----------------------------------------------------------


def _override(tmp_path: Path, job_template: str) -> JobRenderer:
    (tmp_path / "job.yaml.j2").write_text(job_template)
    return JobRenderer(template_dirs=[tmp_path])


def test_template_without_tojson_is_refused(tmp_path: Path) -> None:
    original = (DEFAULT_TEMPLATE_DIR / "job.yaml.j2").read_text()
    renderer = _override(tmp_path, original.replace("{{ job.name | tojson }}", "{{ job.name }}"))
    service = service_from(MINIMAL)
    with pytest.raises(RenderError, match=re.escape("without `| tojson`")):
        renderer.render_job(service, event("photos", "in/a.txt"), grants_for(service))


def test_undefined_variable_is_an_error(tmp_path: Path) -> None:
    original = (DEFAULT_TEMPLATE_DIR / "job.yaml.j2").read_text()
    renderer = _override(tmp_path, original.replace("job.namespace", "job.namespaec"))
    service = service_from(MINIMAL)
    with pytest.raises(RenderError, match="namespaec"):
        renderer.render_job(service, event("photos", "in/a.txt"), grants_for(service))


def test_sandbox_blocks_python_internals(tmp_path: Path) -> None:
    original = (DEFAULT_TEMPLATE_DIR / "job.yaml.j2").read_text()
    renderer = _override(
        tmp_path, original.replace("{{ job.name | tojson }}", "{{ job.name.__class__.__mro__ | tojson }}")
    )
    service = service_from(MINIMAL)
    with pytest.raises(RenderError):
        renderer.render_job(service, event("photos", "in/a.txt"), grants_for(service))


def test_override_directory_wins_file_by_file(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_TEMPLATE_DIR / "job.yaml.j2", tmp_path / "job.yaml.j2")
    text = (
        (tmp_path / "job.yaml.j2")
        .read_text()
        .replace("backoffLimit: {{ job.backoff_limit | tojson }}", "backoffLimit: 5")
    )
    renderer = _override(tmp_path, text)
    service = service_from(MINIMAL)
    job = renderer.render_job(service, event("photos", "in/a.txt"), grants_for(service))
    assert job["spec"]["backoffLimit"] == 5
    assert renderer.render_config_map(service)["kind"] == "ConfigMap"  # still from the defaults


def test_manifest_checks_catch_what_the_schema_misses(renderer: JobRenderer) -> None:
    service = service_from(MINIMAL)
    job = renderer.render_job(service, event("photos", "in/a.txt"), grants_for(service))
    broken = copy.deepcopy(job)
    broken["metadata"]["name"] = "Not_A_Name"
    broken["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1..0"
    broken["metadata"]["labels"]["bucketrun.io/bucket"] = "x" * 64
    problems = check_manifest(broken)
    assert any("Not_A_Name" in p for p in problems)
    assert any("restartPolicy 'Always'" in p for p in problems)
    assert any("'1..0' is not a quantity" in p for p in problems)
    assert any("not a valid label value" in p for p in problems)


def test_grants_never_show_their_urls_or_policies_in_reprs() -> None:
    service = service_from(MINIMAL)
    shown = repr(grants_for(service))
    assert "X-Amz-Signature" not in shown
    assert "https://s3.example" not in shown
    assert "policy" not in shown


# -- every Job ends: a deadline, and a bound on the run container's start ------------------------------------


def deadline_of(renderer: JobRenderer, service: ServiceDefinition) -> Any:
    return renderer.render_job(service, event("photos", "in/cat.txt"), grants_for(service))["spec"].get(
        "activeDeadlineSeconds"
    )


def test_a_service_without_a_timeout_gets_the_default_deadline_and_its_own_timeout_wins(
    renderer: JobRenderer,
) -> None:
    bare = service_from(MINIMAL)
    timed = load_services([FDL / "gpu-secrets.yaml"]).by_name("vllm-batch")
    assert (bare.options.timeout, timed.options.timeout) == (None, 3600)
    assert deadline_of(renderer, bare) == 24 * 3600
    assert deadline_of(renderer, timed) == 3600
    configured = renderer_from_settings(ClusterSettings(default_timeout=600))
    assert deadline_of(configured, bare) == 600
    assert deadline_of(configured, timed) == 3600


def test_the_grants_outlive_the_default_deadline() -> None:
    lifetimes: list[int | None] = []

    class Signer:
        def grants_for(self, service: ServiceDefinition, bucket: str, key: str, **options: Any) -> Any:
            lifetimes.append(options["expires"])
            return grants_for(service)

    bare = service_from(MINIMAL)
    creator = JobCreator(
        lambda: {bare.name: bare},
        renderer_from_settings(ClusterSettings(default_timeout=600)),
        Signer(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type] - prepare_event never touches the executor
        lambda timeout: timeout,  # type: ignore[arg-type,return-value]
    )
    creator.prepare_event(bare.name, event("photos", "in/cat.txt"))
    assert lifetimes == [600]


def stage_out_env(renderer: JobRenderer) -> dict[str, str]:
    service = service_from(MINIMAL)
    job = renderer.render_job(service, event("photos", "in/cat.txt"), grants_for(service))
    stage_out = job["spec"]["template"]["spec"]["containers"][1]
    assert stage_out["name"] == contract.CONTAINER_STAGE_OUT
    return {entry["name"]: entry["value"] for entry in stage_out["env"]}


@pytest.mark.parametrize(
    ("cluster", "seconds"),
    [
        ({"executor": "kubernetes"}, "900"),
        ({"executor": "local"}, "60"),
        ({"executor": "kubernetes", "run_start_timeout": 5}, "5"),
    ],
)
def test_stage_out_is_told_how_long_the_run_container_may_take_to_start(
    cluster: dict[str, Any], seconds: str
) -> None:
    env = stage_out_env(renderer_from_settings(ClusterSettings(**cluster)))
    assert env["BUCKETRUN_RUN_START_TIMEOUT"] == seconds
    # The stager reads what the dispatcher renders.
    assert stage_out_config(env).run_start_timeout == float(seconds)
