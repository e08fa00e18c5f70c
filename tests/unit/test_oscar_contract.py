"""Golden tests of the in-container contract: for MinIO events captured from the MinIO built from source,
each variable bucketrun renders equals the value OSCAR's code gives the script for the same event.

The expected values are written out by hand, as OSCAR's code computes them (the source of each is named
beside it: grycap/oscar and grycap/faas-supervisor); none is computed with bucketrun's code. Where OSCAR's
value cannot be the same by design (temporary directories), the test pins the relation OSCAR's code
guarantees and job_templates/README.md lists the difference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.domain.events import ObjectEvent, parse_message
from dispatcher.fdl import ServiceDefinition, load_services_text
from dispatcher.fdl.names import check_service_name
from dispatcher.rendering.context import RenderSettings, placeholder_grants
from dispatcher.rendering.render import JobRenderer

CAPTURED = Path(__file__).resolve().parent / "fixtures" / "events" / "captured"
BUCKET = "t-8c6d3a317f-data"

# Per captured payload: (file, STORAGE_OBJECT_KEY, the input file's name, EVENT_TIME), by hand.
# faas-supervisor faassupervisor/events/minio.py MinioEvent._set_event_params: the object key is
# unquote_plus of the record's s3.object.key, the file name its os.path.basename, and the event time the
# record's eventTime string as MinIO wrote it.
CASES = [
    ("minio-put-0.json", "in/a file with spaces.txt", "a file with spaces.txt", "2026-12-04T03:47:08.227Z"),
    ("minio-put-1.json", "in/a+plus+sign.txt", "a+plus+sign.txt", "2026-12-04T03:47:08.231Z"),
    ("minio-put-2.json", "in/ünïcødé ☃.txt", "ünïcødé ☃.txt", "2026-12-04T03:47:08.235Z"),
    ("minio-put-3.json", "in/100% done.txt", "100% done.txt", "2026-12-04T03:47:08.238Z"),
    ("minio-put-4.json", "in/q?x=1&y=#2.txt", "q?x=1&y=#2.txt", "2026-12-04T03:47:08.242Z"),
]

FDL = f"""
functions:
  oscar:
  - my-cluster:
      name: grayify
      image: busybox:1.36
      log_level: debug
      script: |
        cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/"
      environment:
        variables:
          MODEL: small
        secrets:
          API_KEY: s3cr3t-value
      labels:
        oscar_service: not-this-one
        team: vision
      input:
      - storage_provider: minio.default
        path: {BUCKET}/in
        suffix: [.txt]
      output:
      - storage_provider: minio.default
        path: {BUCKET}/out
      - storage_provider: s3.aws
        path: results/gray
storage_providers:
  s3:
    aws:
      access_key: AKIAEXAMPLEKEY
      secret_key: very-secret-key
      region: eu-west-1
"""


def captured(name: str) -> bytes:
    path = CAPTURED / name
    if not path.is_file():
        pytest.skip(f"captured MinIO payload {path} is absent")
    return path.read_bytes()


@pytest.fixture(scope="module")
def service() -> ServiceDefinition:
    (definition,) = load_services_text(FDL, source="contract.yaml", base_dir=None).services
    return definition


def render(service: ServiceDefinition, body: bytes, settings: RenderSettings | None = None) -> dict[str, Any]:
    (event,) = parse_message(body)
    return JobRenderer(settings or RenderSettings()).render_job(
        service, event, placeholder_grants(service, event)
    )


def run_env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (run,) = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "run"]
    return {entry["name"]: entry for entry in run["env"]}


@pytest.mark.parametrize(("name", "key", "file_name", "event_time"), CASES)
def test_storage_object_key_is_the_decoded_key(
    name: str, key: str, file_name: str, event_time: str, service: ServiceDefinition
) -> None:
    # faas-supervisor faassupervisor/events/__init__.py _set_storage_env_vars: STORAGE_OBJECT_KEY = object_key
    assert run_env(render(service, captured(name)))["STORAGE_OBJECT_KEY"] == {
        "name": "STORAGE_OBJECT_KEY",
        "value": key,
    }


@pytest.mark.parametrize(("name", "key", "file_name", "event_time"), CASES)
def test_event_time_is_minios_raw_string(
    name: str, key: str, file_name: str, event_time: str, service: ServiceDefinition
) -> None:
    # faas-supervisor faassupervisor/events/__init__.py _set_storage_env_vars: EVENT_TIME = event_time
    assert run_env(render(service, captured(name)))["EVENT_TIME"] == {
        "name": "EVENT_TIME",
        "value": event_time,
    }


@pytest.mark.parametrize(("name", "key", "file_name", "event_time"), CASES)
def test_input_file_path_is_the_keys_last_segment_in_tmp_input_dir(
    name: str, key: str, file_name: str, event_time: str, service: ServiceDefinition
) -> None:
    # faas-supervisor faassupervisor/storage/providers/minio.py download_file:
    #   join_paths(input_dir_path, parsed_event.file_name), input_dir_path being TMP_INPUT_DIR
    # (faassupervisor/supervisor.py _create_tmp_dirs: a fresh temporary directory: only the relation holds).
    env = run_env(render(service, captured(name)))
    assert env["INPUT_FILE_PATH"]["value"] == f"{env['TMP_INPUT_DIR']['value']}/{file_name}"
    assert env["TMP_INPUT_DIR"]["value"] != env["TMP_OUTPUT_DIR"]["value"]
    assert env["TMP_OUTPUT_DIR"]["value"].startswith("/")


@pytest.mark.parametrize(("name", "key", "file_name", "event_time"), CASES)
def test_event_is_the_notification_as_the_supervisor_dumps_it(
    name: str, key: str, file_name: str, event_time: str, service: ServiceDefinition
) -> None:
    # MinIO's webhook target posts event.Log{EventName, Key, Records} (the same document its AMQP target
    # publishes, captured here); faas-supervisor faassupervisor/events/__init__.py parse_event json.loads it
    # and _set_storage_env_vars sets EVENT = json.dumps(event): default separators, non-ASCII escaped.
    body = captured(name)
    expected = json.dumps(json.loads(body))
    value = run_env(render(service, body))["EVENT"]["value"]
    assert value == expected
    assert value.startswith('{"EventName": "s3:ObjectCreated:Put", "Key": "t-8c6d3a317f-data/in/')
    assert value.isascii()


def test_event_escapes_non_ascii_as_pythons_json_dumps(service: ServiceDefinition) -> None:
    value = run_env(render(service, captured("minio-put-2.json")))["EVENT"]["value"]
    # "ünïcødé ☃" as json.dumps writes it (ensure_ascii=True), by hand:
    assert '"Key": "t-8c6d3a317f-data/in/\\u00fcn\\u00efc\\u00f8d\\u00e9 \\u2603.txt"' in value


def test_job_uuid_is_the_jobs_name(service: ServiceDefinition) -> None:
    # grycap/oscar pkg/handlers/job.go MakeJobHandler: the Job's metadata.name is jobUUID, and
    # JOB_UUID (types.JobUUIDVariable) is set to that same jobUUID.
    job = render(service, captured("minio-put-0.json"))
    assert run_env(job)["JOB_UUID"] == {"name": "JOB_UUID", "value": job["metadata"]["name"]}
    assert run_env(job)["JOB_NAME"]["value"] == job["metadata"]["name"]


def test_resource_id_is_the_node_name(service: ServiceDefinition) -> None:
    # grycap/oscar pkg/handlers/job.go MakeJobHandler: RESOURCE_ID from the downward API, spec.nodeName.
    assert run_env(render(service, captured("minio-put-0.json")))["RESOURCE_ID"] == {
        "name": "RESOURCE_ID",
        "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
    }


def test_oscar_service_name_is_the_service_name(service: ServiceDefinition) -> None:
    # grycap/oscar pkg/types/service.go addServiceMetadataEnvVars: OSCAR_SERVICE_NAME = service.Name
    assert run_env(render(service, captured("minio-put-0.json")))["OSCAR_SERVICE_NAME"] == {
        "name": "OSCAR_SERVICE_NAME",
        "value": "grayify",
    }


def test_oscar_service_base_path_is_empty_for_a_service_not_exposed(service: ServiceDefinition) -> None:
    # grycap/oscar pkg/types/service.go GetExposedBasePath: "" unless expose.api_port is set; bucketrun
    # exposes no service, so that is OSCAR's value for every service bucketrun runs.
    assert run_env(render(service, captured("minio-put-0.json")))["OSCAR_SERVICE_BASE_PATH"] == {
        "name": "OSCAR_SERVICE_BASE_PATH",
        "value": "",
    }


def test_oscar_service_base_path_follows_the_setting(service: ServiceDefinition) -> None:
    # With the setting in OSCAR's layout, the value OSCAR gives an exposed service:
    # "/system/services/<name>/exposed" (pkg/types/service.go GetExposedBasePath).
    settings = RenderSettings(service_base_path="/system/services/{service}/exposed")
    env = run_env(render(service, captured("minio-put-0.json"), settings))
    assert env["OSCAR_SERVICE_BASE_PATH"]["value"] == "/system/services/grayify/exposed"


def test_log_level_is_the_supervisors_level(service: ServiceDefinition) -> None:
    # grycap/oscar pkg/handlers/create.go checkValues upper-cases log_level; faas-supervisor
    # faassupervisor/logger.py _get_log_level reads it (a LOG_LEVEL variable first).
    assert run_env(render(service, captured("minio-put-0.json")))["LOG_LEVEL"]["value"] == "DEBUG"


def test_oscar_service_label_on_the_job_and_its_pod(service: ServiceDefinition) -> None:
    # grycap/oscar pkg/handlers/create.go: Labels[types.ServiceLabel] = service.Name, set after the
    # service's own labels (so it wins over one the FDL gives); pkg/handlers/job.go puts service.Labels on
    # the Job and on its pod template.
    job = render(service, captured("minio-put-0.json"))
    assert job["metadata"]["labels"]["oscar_service"] == "grayify"
    assert job["spec"]["template"]["metadata"]["labels"]["oscar_service"] == "grayify"
    assert job["metadata"]["labels"]["team"] == "vision"


def test_script_and_function_config_are_in_oscars_config_directory(service: ServiceDefinition) -> None:
    # grycap/oscar pkg/types/service.go: ConfigPath "/oscar/config", ScriptFileName "script.sh",
    # FDLFileName "function_config.yaml"; ToPodSpec mounts the service's ConfigMap there, read-only.
    renderer = JobRenderer(RenderSettings())
    job = render(service, captured("minio-put-0.json"))
    pod = job["spec"]["template"]["spec"]
    (run,) = [c for c in pod["containers"] if c["name"] == "run"]
    (mount,) = [m for m in run["volumeMounts"] if m["mountPath"] == "/oscar/config"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = renderer.render_config_map(service)
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert config_map["data"]["script.sh"] == 'cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/"\n'
    assert run_env(job)["BUCKETRUN_SCRIPT"]["value"] == "/oscar/config/script.sh"


def test_function_config_holds_what_the_supervisor_reads_and_no_credential(
    service: ServiceDefinition,
) -> None:
    # grycap/oscar pkg/backends/k8s.go createServiceConfigMap writes service.ToYAML() with the script
    # cleared; pkg/handlers/create.go blanks secret values and writes "hidden" for its MinIO's keys.
    # faas-supervisor faassupervisor/utils.py ConfigUtils.read_cfg_var reads log_level, file_stage_in,
    # input and output from it.
    text = JobRenderer(RenderSettings()).render_config_map(service)["data"]["function_config.yaml"]
    document = yaml.safe_load(text)
    assert document["name"] == "grayify"
    assert document["cluster_id"] == "my-cluster"
    assert document["log_level"] == "DEBUG"
    assert document["file_stage_in"] is False
    assert document["input"] == [
        {"storage_provider": "minio.default", "path": f"{BUCKET}/in", "suffix": [".txt"]}
    ]
    assert document["output"] == [
        {"storage_provider": "minio.default", "path": f"{BUCKET}/out"},
        {"storage_provider": "s3.aws", "path": "results/gray"},
    ]
    assert document["environment"] == {"variables": {"MODEL": "small"}, "secrets": {"API_KEY": ""}}
    assert document["labels"]["oscar_service"] == "grayify"
    assert document["storage_providers"] == {
        "s3": {"aws": {"verify": True, "access_key": "hidden", "secret_key": "hidden", "region": "eu-west-1"}}
    }
    assert "script" not in document
    assert "token" not in document
    for secret in ("s3cr3t-value", "AKIAEXAMPLEKEY", "very-secret-key"):
        assert secret not in text


def test_contract_variables_are_reserved() -> None:
    for name in ("RESOURCE_ID", "OSCAR_SERVICE_NAME", "OSCAR_SERVICE_BASE_PATH"):
        text = FDL.replace("MODEL: small", f"{name}: x")
        with pytest.raises(ValueError, match=name):
            load_services_text(text, source="contract.yaml", base_dir=None)


def test_an_event_without_event_time_gives_an_empty_one(service: ServiceDefinition) -> None:
    document = json.loads(captured("minio-put-0.json"))
    del document["Records"][0]["eventTime"]
    (event,) = parse_message(json.dumps(document).encode())
    assert isinstance(event, ObjectEvent)
    job = JobRenderer(RenderSettings()).render_job(service, event, placeholder_grants(service, event))
    assert run_env(job)["EVENT_TIME"]["value"] == ""


# -- file_stage_in -------------------------------------------------------------------------------------------


def stage_in_env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (stage_in,) = job["spec"]["template"]["spec"]["initContainers"]
    return {entry["name"]: entry for entry in stage_in["env"]}


def test_file_stage_in_gives_the_script_the_input_grant_and_stage_in_none() -> None:
    (service,) = load_services_text(
        FDL.replace("log_level: debug", "log_level: debug\n      file_stage_in: true"),
        source="contract.yaml",
        base_dir=None,
    ).services
    assert service.file_stage_in is True
    body = captured("minio-put-0.json")
    (event,) = parse_message(body)
    grants = placeholder_grants(service, event)
    job = JobRenderer(RenderSettings()).render_job(service, event, grants)
    env = run_env(job)
    assert env["BUCKETRUN_INPUT_URL"] == {"name": "BUCKETRUN_INPUT_URL", "value": grants.input_url}
    # faas-supervisor faassupervisor/supervisor.py _parse_input: with file_stage_in the download is
    # skipped and INPUT_FILE_PATH is never set; the other variables stay.
    assert "INPUT_FILE_PATH" not in env
    assert env["STORAGE_OBJECT_KEY"]["value"] == "in/a file with spaces.txt"
    assert env["TMP_INPUT_DIR"]["value"].startswith("/")
    staging = stage_in_env(job)
    assert "BUCKETRUN_INPUT_URL" not in staging
    assert staging["BUCKETRUN_DOWNLOAD_INPUT"]["value"] == "false"
    text = JobRenderer(RenderSettings()).render_config_map(service)["data"]["function_config.yaml"]
    assert yaml.safe_load(text)["file_stage_in"] is True


def test_without_file_stage_in_the_script_never_sees_a_grant(service: ServiceDefinition) -> None:
    job = render(service, captured("minio-put-0.json"))
    assert "BUCKETRUN_INPUT_URL" not in run_env(job)
    assert "BUCKETRUN_DOWNLOAD_INPUT" not in stage_in_env(job)
    assert stage_in_env(job)["BUCKETRUN_INPUT_URL"]["value"].startswith("https://")


# -- the oscar_service label of hostile service names --------------------------------------------------------

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=70))
def test_every_service_name_bucketrun_accepts_is_a_valid_label_value(name: str) -> None:
    # Kubernetes' label value rule (apimachinery validation IsValidLabelValue): at most 63 characters
    # matching _LABEL_VALUE. A name the FDL check refuses never reaches a label.
    try:
        check_service_name(name)
    except ValueError:
        return
    assert len(name) <= 63
    assert _LABEL_VALUE.fullmatch(name)


@pytest.mark.parametrize("name", ["Grayify", "a_b", "-x", "x-", "a" * 40, "a.b", "a\nb", "é"])
def test_hostile_service_names_are_refused_before_any_label(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        load_services_text(
            FDL.replace("name: grayify", f"name: {json.dumps(name)}"), source="x", base_dir=None
        )
