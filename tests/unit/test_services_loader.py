"""Loading FDL files, directories and text: own fixtures (tests/unit/fixtures/fdl) and inline cases."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from dispatcher.fdl import ServiceDefinitionError, ServiceProblem, load_services, load_services_text

FDL = Path(__file__).resolve().parent / "fixtures" / "fdl"

SERVICE = """\
functions:
  oscar:
  - oscar-cluster:
      name: {name}
      image: grycap/imagemagick
      script: |
        convert "$INPUT_FILE_PATH" -type Grayscale "$TMP_OUTPUT_DIR/out.png"
      input:
      - storage_provider: minio
        path: images/in
{extra}"""


def service_text(name: str = "grayify", extra: str = "") -> str:
    """A minimal valid FDL; ``extra`` is indented service-level YAML."""
    indented = "".join(f"      {line}\n" for line in extra.splitlines())
    return SERVICE.format(name=name, extra=indented)


def problems_of(text: str, *, base_dir: Path | None = None) -> tuple[ServiceProblem, ...]:
    """The problems that loading ``text`` (as ``inline.yaml``) raises."""
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services_text(text, source="inline.yaml", base_dir=base_dir)
    assert all(problem.file == "inline.yaml" for problem in caught.value.problems)
    return caught.value.problems


def refused(text: str, *, base_dir: Path | None = None) -> list[tuple[str | None, str | None, str]]:
    """The (service, field, message) problems that loading ``text`` raises."""
    return [
        (problem.service, problem.field, problem.message) for problem in problems_of(text, base_dir=base_dir)
    ]


def _with_script(value: str) -> str:
    return service_text().replace(
        'script: |\n        convert "$INPUT_FILE_PATH" -type Grayscale "$TMP_OUTPUT_DIR/out.png"\n',
        f"script: {value}\n",
    )


# --- shapes: bare file, wrapped file, directory ---------------------------------------------------


def test_bare_service_file_loads_with_inline_script():
    loaded = load_services([FDL / "bare-service.yaml"])
    service = loaded.by_name("deepaas-demo")
    assert service.cluster_id == "ai4eosc-cluster"
    assert service.script.startswith('echo "[*] Using DEEPaaS version')
    assert service.script.endswith('"$TMP_OUTPUT_DIR/$FILE_NAME.json"')  # `|-` keeps no final newline
    assert (service.cpu, service.memory, service.log_level) == ("1", "2000Mi", "INFO")
    assert [(path.bucket, path.folder) for path in service.inputs] == [("deepaas-demo", "inputs")]
    assert [(path.bucket, path.folder) for path in service.outputs] == [("deepaas-demo", "outputs")]
    assert loaded.warnings == ()  # `alpine: False` asks for nothing bucketrun ignores


def test_directory_loads_yaml_and_yml_files_in_name_order_with_their_script_files():
    loaded = load_services([FDL / "workflow"])
    assert [service.name for service in loaded] == ["split-video", "darknet"]
    split, darknet = loaded.services
    assert split.script == (FDL / "workflow" / "split-video.sh").read_text(encoding="utf-8")
    assert darknet.script == (FDL / "workflow" / "scripts" / "yolov3-object-detection.sh").read_text(
        encoding="utf-8"
    )
    assert darknet.source == str(FDL / "workflow" / "02-detect.yml")
    assert loaded.warnings == ()


def test_same_file_named_twice_loads_once():
    loaded = load_services([FDL / "workflow", FDL / "workflow" / "01-split.yaml"])
    assert len(loaded) == 2


def test_by_name_names_the_missing_service():
    loaded = load_services([FDL / "workflow"])
    with pytest.raises(KeyError, match="no service named 'nope' \\(loaded: split-video, darknet\\)"):
        loaded.by_name("nope")


def test_missing_path_and_empty_directory_are_problems(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([tmp_path / "absent.yaml", empty])
    assert [str(problem) for problem in caught.value.problems] == [
        f"{tmp_path / 'absent.yaml'}: no such file or directory",
        f"{empty}: directory holds no *.yaml or *.yml file",
    ]


def test_hidden_entries_of_a_configmap_mount_are_skipped(tmp_path):
    data = tmp_path / "..2026_11_25"
    data.mkdir()
    (data / "svc.yaml").write_text(service_text(), encoding="utf-8")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "svc.yaml").symlink_to(Path("..data") / "svc.yaml")
    assert [service.name for service in load_services([tmp_path])] == ["grayify"]


def test_a_service_for_two_clusters_in_two_files_names_both_and_the_choice():
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([FDL / "duplicates"])
    (problem,) = caught.value.problems
    assert (problem.file, problem.service, problem.field) == (
        str(FDL / "duplicates" / "b.yaml"),
        "grayify",
        "name",
    )
    assert problem.message == (
        "service name 'grayify' is defined for several OSCAR clusters: "
        f"'cluster-a' in {FDL / 'duplicates' / 'a.yaml'}, 'cluster-b' in {FDL / 'duplicates' / 'b.yaml'}; "
        "bucketrun runs one: choose its cluster with --cluster ID (bucketrun services, render, events "
        "inspect) or the setting BUCKETRUN_SERVICES__CLUSTER"
    )


def test_the_same_name_twice_for_one_cluster_is_defined_twice(tmp_path):
    (tmp_path / "a.yaml").write_text(service_text())
    (tmp_path / "b.yaml").write_text(service_text().replace("images/in", "other/in"))
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([tmp_path], cluster="oscar-cluster")
    (problem,) = caught.value.problems
    assert problem.message == (
        f"service name 'grayify' is defined twice: in {tmp_path / 'a.yaml'} (cluster 'oscar-cluster') "
        f"and in {tmp_path / 'b.yaml'} (cluster 'oscar-cluster')"
    )


def test_problems_of_all_files_are_reported_together():
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([FDL / "unknown-field.yaml", FDL / "bad-quantity.yaml"])
    assert [(Path(problem.file).name, problem.field) for problem in caught.value.problems] == [
        ("unknown-field.yaml", "imgae"),
        ("unknown-field.yaml", "image"),
        ("bad-quantity.yaml", "cpu"),
    ]


# --- messages name file, service and field --------------------------------------------------------


def test_unknown_field_message_names_file_service_and_field():
    path = FDL / "unknown-field.yaml"
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([path])
    assert [str(problem) for problem in caught.value.problems] == [
        f"{path}: service 'grayify': field 'imgae': unknown field (did you mean 'image'?)",
        f"{path}: service 'grayify': field 'image': required",
    ]


def test_bad_quantity_message_quotes_the_value():
    path = FDL / "bad-quantity.yaml"
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([path])
    assert [str(problem) for problem in caught.value.problems] == [
        f"{path}: service 'grayify': field 'cpu': "
        "invalid quantity '1..0' (expected e.g. '500m', '1.5', '512Mi', '2Gi')"
    ]
    assert isinstance(caught.value, ValueError)


def test_all_problems_of_a_service_are_collected():
    text = service_text(
        name="Bad_Name",
        extra="memory: lots\nlog_level: LOUD\nlabels: {'bad key!': x}\nbucketrun: {retries: -1, colour: red}",
    )
    assert [(field, message) for _, field, message in refused(text)] == [
        (
            "name",
            "'Bad_Name' is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending "
            "with a letter or digit)",
        ),
        ("memory", "invalid quantity 'lots' (expected e.g. '500m', '1.5', '512Mi', '2Gi')"),
        (
            "labels.bad key!",
            "invalid key 'bad key!': the name part must be 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit",
        ),
        (
            "log_level",
            "invalid log level 'LOUD' (expected one of NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL, in any "
            "case; OSCAR would silently run its supervisor at INFO instead)",
        ),
        ("bucketrun.retries", "Input should be greater than or equal to 0 (got a number)"),
        ("bucketrun.colour", "unknown field"),
    ]


@pytest.mark.parametrize(
    ("extra_top_level", "field", "message"),
    [
        ("functions_typo: 1\n", "functions_typo", "unknown field (did you mean 'functions'?)"),
        ("storage_providers: {gcs: {}}\n", "storage_providers.gcs", "unknown field"),
        (
            "storage_providers: {minio: {edge: {endpoint: x, colour: red}}}\n",
            "storage_providers.minio.edge.colour",
            "unknown field",
        ),
    ],
)
def test_file_level_problems_have_no_service(extra_top_level, field, message):
    assert refused(service_text() + extra_top_level) == [(None, field, message)]


def test_other_function_platforms_are_refused():
    text = service_text().replace("  oscar:\n", "  aws:\n  - {}\n  oscar:\n", 1)
    assert refused(text) == [(None, "functions.aws", "only 'oscar' functions are supported")]


def test_cluster_id_inside_must_match_the_cluster_it_is_filed_under():
    assert refused(service_text(extra="cluster_id: elsewhere")) == [
        ("grayify", "cluster_id", "differs from the cluster id 'oscar-cluster' it is filed under")
    ]


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(service_text().replace("grayify", "gr\xe4yify").encode("latin-1"))
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([path])
    assert caught.value.problems[0].message.startswith("not UTF-8 text")


def test_unnamed_service_is_named_by_its_position():
    text = "functions:\n  oscar:\n  - c1:\n      image: ubuntu\n      script: |\n        true\n"
    assert refused(text) == [("#1", "name", "required")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty document: no service defined"),
        ("- a\n- b\n", "expected a mapping at the top level, got a list"),
        (
            "functions: {oscar: {}}\n",
            "must be a mapping with an 'oscar' list of {cluster-id: service} entries",
        ),
        (
            "key: [unclosed\n",
            "invalid YAML at line 2, column 1: while parsing a flow sequence; expected ',' or ']'",
        ),
        ("a: 1\n---\nb: 2\n", "invalid YAML at line 2, column 1: expected a single document in the stream"),
    ],
)
def test_unusable_documents_are_refused_with_a_reason(text, message):
    (problem,) = refused(text)
    assert problem[2].startswith(message)


# --- script: inline or file -----------------------------------------------------------------------


def test_script_file_next_to_the_fdl_is_read(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho from file\n", encoding="utf-8")
    service = load_services_text(_with_script("run.sh"), source="inline.yaml", base_dir=tmp_path).by_name(
        "grayify"
    )
    assert service.script == "#!/bin/sh\necho from file\n"


def test_missing_script_file_is_named(tmp_path):
    ((_, field, message),) = refused(_with_script("split-video.sh"), base_dir=tmp_path)
    assert field == "script"
    assert message.startswith(f"script file {str(tmp_path / 'split-video.sh')!r} not found")


def test_one_word_command_is_a_file_name_with_a_hint(tmp_path):
    ((_, _, message),) = refused(_with_script("date"), base_dir=tmp_path)
    assert "not found" in message
    assert "script: |" in message


def test_one_line_command_with_spaces_is_inline():
    service = load_services_text(_with_script("exec /opt/run.sh"), source="x", base_dir=None).by_name(
        "grayify"
    )
    assert service.script == "exec /opt/run.sh"


def test_script_file_without_base_dir_is_refused():
    ((_, _, message),) = refused(_with_script("run.sh"))
    assert message == "script file 'run.sh' cannot be read: no base directory was given"


@pytest.mark.parametrize("value", ["../scripts/run.sh", "sub/../../scripts/run.sh"])
def test_script_path_climbs_out_of_the_fdl_folder_as_oscar_cli_reads_it(tmp_path, value):
    base = tmp_path / "fdl"
    (base / "sub").mkdir(parents=True)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.sh").write_text("echo shared\n", encoding="utf-8")
    service = load_services_text(_with_script(value), source="x", base_dir=base).by_name("grayify")
    assert service.script == "echo shared\n"


def test_missing_script_names_the_absolute_path_tried(tmp_path, monkeypatch):
    (tmp_path / "fdl").mkdir()
    monkeypatch.chdir(tmp_path)
    ((_, _, message),) = refused(_with_script("../scripts/run.sh"), base_dir=Path("fdl"))
    assert message.startswith(f"script file {str(tmp_path / 'fdl' / '../scripts/run.sh')!r} not found")
    assert "'../scripts/run.sh' is read relative to the FDL's folder, as oscar-cli reads it" in message


def test_script_symlink_is_followed(tmp_path):
    base = tmp_path / "fdl"
    base.mkdir()
    (tmp_path / "shared.sh").write_text("echo linked\n", encoding="utf-8")
    (base / "run.sh").symlink_to(tmp_path / "shared.sh")
    service = load_services_text(_with_script("run.sh"), source="x", base_dir=base).by_name("grayify")
    assert service.script == "echo linked\n"


def test_a_script_path_starting_with_a_slash_is_read_under_the_fdl_folder(tmp_path):
    # oscar-cli joins the FDL's folder, '/' and the value: '/opt/run.sh' is <folder>/opt/run.sh.
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "run.sh").write_text("echo under the fdl\n", encoding="utf-8")
    service = load_services_text(_with_script("/opt/run.sh"), source="x", base_dir=tmp_path).by_name(
        "grayify"
    )
    assert service.script == "echo under the fdl\n"
    ((_, _, message),) = refused(_with_script("/etc/passwd"), base_dir=tmp_path)
    assert message.startswith(f"script file {str(tmp_path / 'etc' / 'passwd')!r} not found")
    assert "is read under the FDL's folder even though it starts with '/'" in message
    assert "'script: |' then 'exec /path'" in message


def test_a_fifo_is_not_a_script_and_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "run.sh")  # opening it for reading would block until a writer came
    ((_, _, message),) = refused(_with_script("run.sh"), base_dir=tmp_path)
    assert message == f"script file {str(tmp_path / 'run.sh')!r} is not a regular file"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe not utf-8", "is not UTF-8 text"),
        (b"echo a\0b\n", "contains a NUL byte"),
        (b"   \n", "script is empty"),
        (b"#" * (960 * 1024 + 1), "is larger than 983040 bytes"),
    ],
)
def test_unusable_script_files_are_refused(tmp_path, content, message):
    (tmp_path / "run.sh").write_bytes(content)
    ((_, _, found),) = refused(_with_script("run.sh"), base_dir=tmp_path)
    assert message in found


def test_script_directory_is_not_a_script(tmp_path):
    (tmp_path / "run.sh").mkdir()
    ((_, _, message),) = refused(_with_script("run.sh"), base_dir=tmp_path)
    assert message.endswith("is not a regular file")


# --- environment ----------------------------------------------------------------------------------


def test_variables_and_secrets_with_oscar_capitalisation():
    loaded = load_services([FDL / "gpu-secrets.yaml"])
    service = loaded.by_name("vllm-batch")
    assert dict(service.variables) == {
        "ENABLE_CACHE": "false",
        "GPU_MEMORY_UTILIZATION": "0.5",
        "MAX_MODEL_LEN": "1000",
        "VERSION": "1.10",  # as written, not as the float 1.1
    }
    assert service.secrets["API_KEY"].get_secret_value() == "secretkey"
    assert [(warning.field, warning.message) for warning in loaded.warnings] == [
        ("expose", "ignored: the HTTP endpoint is not created; bucket-triggered invocation still works"),
        (
            "environment.variables.MAX_MODEL_LEN",
            "a number written without quotes is read as the string '1000'; quote it",
        ),
        (
            "environment.variables.VERSION",
            "a number written without quotes is read as the string '1.10'; quote it",
        ),
        (
            "environment.variables.ENABLE_CACHE",
            "a boolean written without quotes is read as the string 'false'; quote it",
        ),
    ]


def test_both_spellings_of_variables_are_ambiguous():
    text = service_text(extra="environment:\n  Variables: {A: '1'}\n  variables: {B: '2'}")
    assert refused(text) == [
        ("grayify", "environment.variables", "given more than once (Variables, variables)")
    ]


def test_secret_values_never_appear_in_messages():
    text = service_text(extra="environment:\n  secrets:\n    PIN: 987654\n    TOKEN: [hunter2]")
    problems = refused(text)
    assert problems == [("grayify", "environment.secrets.TOKEN", "value must be a string, got a list")]
    assert "hunter2" not in str(problems)


def test_numeric_secret_is_kept_and_its_note_hides_it():
    loaded = load_services_text(
        service_text(extra="environment:\n  secrets:\n    PIN: 987654"), source="x", base_dir=None
    )
    assert loaded.by_name("grayify").secrets["PIN"].get_secret_value() == "987654"
    (warning,) = loaded.warnings
    assert "987654" not in str(warning)


@pytest.mark.parametrize("name", ["INPUT_FILE_PATH", "TMP_OUTPUT_DIR", "JOB_UUID", "BUCKETRUN_ANYTHING"])
def test_contract_variables_cannot_be_overridden(name):
    ((_, field, message),) = refused(service_text(extra=f"environment:\n  variables:\n    {name}: x"))
    assert (field, message.split(" (")[0]) == (
        "environment.variables",
        f"variable name {name!r} is reserved for the job contract",
    )


def test_invalid_variable_name_is_refused():
    ((_, field, message),) = refused(service_text(extra="environment:\n  variables:\n    'MY-VAR': x"))
    assert field == "environment.variables.MY-VAR"
    assert message.startswith("invalid variable name 'MY-VAR'")


def test_same_name_as_variable_and_secret_is_refused():
    text = service_text(extra="environment:\n  variables: {TOKEN: a}\n  secrets: {TOKEN: b}")
    assert refused(text) == [
        ("grayify", "environment.secrets.TOKEN", "is also defined under environment.variables")
    ]


# --- GPU and bucketrun options --------------------------------------------------------------------


def test_gpu_count_and_gpu_node_placement():
    service = load_services([FDL / "gpu-secrets.yaml"]).by_name("vllm-batch")
    assert (service.enable_gpu, service.gpus) == (True, 2)
    options = service.options
    assert (options.timeout, options.retries, options.kueue_queue) == (3600, 1, "gpu-queue")
    assert dict(options.node_selector) == {"nvidia.com/gpu.present": "true"}
    assert [dict(toleration) for toleration in options.tolerations] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_gpu_count_without_enable_gpu_is_refused():
    assert refused(service_text(extra="bucketrun: {gpus: 2}")) == [
        ("grayify", "bucketrun.gpus", "is set but enable_gpu is not true")
    ]


@pytest.mark.parametrize("value", ["yes", "'true'", "on"])
def test_enable_gpu_in_yaml_1_1_spelling_means_one_gpu(value):
    text = service_text(extra=f"enable_gpu: {value}")
    assert load_services_text(text, source="x", base_dir=None).by_name("grayify").gpus == 1


def test_enable_gpu_alone_means_one_gpu_and_default_options():
    service = load_services_text(service_text(extra="enable_gpu: true"), source="x", base_dir=None).by_name(
        "grayify"
    )
    assert service.gpus == 1
    assert (service.options.retries, service.options.upload_outputs) == (0, "on_success")
    assert service.inputs[0].events == ("s3:ObjectCreated:*",)


def test_bucketrun_events_reach_every_input_and_bad_ones_are_reported_once():
    text = service_text(extra="bucketrun:\n  events: ['s3:ObjectCreated:Put', 's3:ObjectCreated:Put']")
    service = load_services_text(text, source="x", base_dir=None).by_name("grayify")
    assert service.inputs[0].events == ("s3:ObjectCreated:Put",)
    two_inputs = text.replace(
        "        path: images/in\n",
        "        path: images/in\n      - storage_provider: minio\n        path: images/in2\n",
    )
    bad = two_inputs.replace("'s3:ObjectCreated:Put', 's3:ObjectCreated:Put'", "'s3:ObjectRemoved:*'")
    ((_, field, message),) = refused(bad)
    assert field == "bucketrun.events[0]"
    assert message.startswith("event 's3:ObjectRemoved:*' cannot trigger a job")


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        (
            "bucketrun: {tolerations: [{operator: Exists, value: x}]}",
            "bucketrun.tolerations[0]",
            "takes no value",
        ),
        ("bucketrun: {upload_outputs: sometimes}", "bucketrun.upload_outputs", "'on_success' or 'always'"),
        ("bucketrun: {kueue_queue: Not_A_Queue}", "bucketrun.kueue_queue", "not a DNS-1123 label"),
        ("bucketrun: {timeout: 0}", "bucketrun.timeout", "greater than 0"),
        ("bucketrun: [timeout]", "bucketrun", "must be a mapping, got a list"),
        (
            "bucketrun: {ignore_unsupported: [expose]}",
            "bucketrun.ignore_unsupported",
            "must be a list of field names",
        ),
    ],
)
def test_bad_bucketrun_options_are_refused(extra, field, fragment):
    ((_, found_field, message),) = refused(service_text(extra=extra))
    assert found_field == field
    assert fragment in message


def test_refused_oscar_field_can_be_accepted_explicitly():
    volume = "volume:\n  size: 1Gi\n  mount_path: /data"
    assert refused(service_text(extra=volume))[0][1] == "volume"
    loaded = load_services_text(
        service_text(extra=f"{volume}\nbucketrun: {{ignore_unsupported: [volume]}}"),
        source="x",
        base_dir=None,
    )
    assert [(warning.field, warning.message.split(":")[0]) for warning in loaded.warnings] == [
        ("volume", "not supported")
    ]


@pytest.mark.parametrize(
    ("extra", "bucket", "folder", "directory"),
    [
        (
            "mount: {storage_provider: minio, path: models/yolo/v8}",
            "models",
            "yolo/v8",
            "/mnt/models/yolo/v8",
        ),
        ("mount: {storage_provider: minio.default, path: /notebook/}", "notebook", "", "/mnt/notebook"),
        ("mount: {path: weights/x}", "weights", "x", "/mnt/weights/x"),
    ],
)
def test_mount_is_a_folder_of_the_own_store_at_oscars_directory(extra, bucket, folder, directory):
    loaded = load_services_text(service_text(extra=extra), source="x", base_dir=None)
    assert loaded.warnings == ()
    mount = loaded.services[0].mount
    assert mount is not None
    assert (mount.provider, mount.bucket, mount.folder, mount.directory) == (
        "minio.default",
        bucket,
        folder,
        directory,
    )


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        (
            "mount: {storage_provider: s3.aws, path: models/x}",
            "mount.storage_provider",
            "'s3.aws' cannot be mounted",
        ),
        (
            "mount: {storage_provider: minio.other, path: models/x}",
            "mount.storage_provider",
            "'minio.other' cannot be",
        ),
        ("mount: {storage_provider: minio, path: ''}", "mount.path", "required 'bucket/folder'"),
        ("mount: {storage_provider: minio, path: Bad_Bucket/x}", "mount.path", "Bad_Bucket"),
        ("mount: [models]", "mount", "must be a mapping"),
        ("mount: {storage_provider: minio, path: models/x, prefix: [a]}", "mount.prefix", "unknown field"),
    ],
)
def test_a_mount_bucketrun_cannot_stage_is_refused_naming_the_value(extra, field, fragment):
    ((_, found, message),) = refused(service_text(extra=extra))
    assert (found, fragment in message) == (field, True), message


def test_mount_options_are_rclones_and_only_warn():
    loaded = load_services_text(
        service_text(extra="mount: {path: models/x, options: '--vfs-cache-mode full'}"),
        source="x",
        base_dir=None,
    )
    assert [warning.field for warning in loaded.warnings] == ["mount.options"]
    assert loaded.services[0].mount is not None


def test_an_empty_mount_is_off():
    for extra in ("mount: {}", "mount: null", "mount: {storage_provider: '', path: ''}"):
        assert (
            load_services_text(service_text(extra=extra), source="x", base_dir=None).services[0].mount is None
        )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("expose: {api_port: 8080}", "expose"),
        ("synchronous: {min_scale: 1}", "synchronous"),
        ("interlink_node_name: vega-new-vk", "interlink_node_name"),
        ("allowed_users: [someone@egi.eu]", "allowed_users"),
    ],
)
def test_oscar_fields_that_do_not_change_the_job_only_warn(extra, field):
    loaded = load_services_text(service_text(extra=extra), source="x", base_dir=None)
    assert [(warning.service, warning.field) for warning in loaded.warnings] == [("grayify", field)]


def test_file_stage_in_is_read_silently():
    loaded = load_services_text(service_text(extra="file_stage_in: true"), source="x", base_dir=None)
    assert loaded.warnings == ()
    assert loaded.services[0].file_stage_in is True
    plain = load_services_text(service_text(), source="x", base_dir=None)
    assert plain.services[0].file_stage_in is False
    assert plain.services[0].content_hash() != loaded.services[0].content_hash()


@pytest.mark.parametrize("extra", ["allowed_users: []", "alpine: false", "enable_sgx: false", "vo: ''"])
def test_oscar_fields_set_to_off_are_silent(extra):
    assert load_services_text(service_text(extra=extra), source="x", base_dir=None).warnings == ()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("kserve: {type: inference}", "kserve"),
        ("volume: {size: 1Gi, mount_path: /data}", "volume"),
        ("enable_sgx: true", "enable_sgx"),
        ("default_command: true", "default_command"),
    ],
)
def test_oscar_fields_that_change_the_job_are_refused(extra, field):
    ((_, found, message),) = refused(service_text(extra=extra))
    assert found == field
    assert f"bucketrun.ignore_unsupported: [{field}]" in message


def test_service_without_input_loads_but_is_flagged():
    text = service_text().replace(
        "      input:\n      - storage_provider: minio\n        path: images/in\n", ""
    )
    loaded = load_services_text(text, source="x", base_dir=None)
    assert not loaded.by_name("grayify").triggerable
    (warning,) = loaded.warnings
    assert (warning.field, warning.message.split(":")[0]) == ("input", "no input")


# --- inputs, outputs, providers -------------------------------------------------------------------


def test_filters_and_storage_providers():
    loaded = load_services([FDL / "filters.yaml"])
    service = loaded.by_name("mask-detector")
    (source,) = service.inputs
    assert (source.bucket, source.folder, source.prefix, source.suffix) == (
        "blurry-faces-onnx",
        "output",
        ("frame-",),
        (".jpg", ".png"),
    )
    local, drift, archive = service.outputs
    assert local.accepts("frame-001_NO_DRIFT")
    assert not local.accepts("frame-001_DRIFTED")
    assert drift.accepts("drift/frame-001_DRIFTED")
    assert not drift.accepts("frame-001_DRIFTED")
    assert archive.accepts("anything/at/all")
    assert (drift.provider, archive.provider) == ("minio.oscar-cluster-fixed3", "s3.aws")
    # `path: archive` names no bucket: OSCAR 4.1+ puts it in the bucket named after the service.
    assert (archive.bucket, archive.folder) == ("mask-detector", "archive")
    assert sorted(service.storage_providers) == ["minio.oscar-cluster-fixed3", "s3.aws"]
    aws = service.storage_providers["s3.aws"]
    assert (aws.region, aws.secret_key.get_secret_value()) == ("eu-west-1", "aws-secret-example")
    assert "aws-secret-example" not in repr(service) + service.model_dump_json()
    assert [(warning.service, warning.field) for warning in loaded.warnings] == [
        (None, "storage_providers.onedata.my_onedata"),
        ("mask-detector", "output[2].path"),
    ]


def test_undefined_and_unsupported_providers_are_refused():
    text = service_text(
        extra="output:\n- {storage_provider: minio.edge, path: out/x}\n"
        "- {storage_provider: webdav.dcache, path: res}"
    )
    assert [(field, message.split(":")[0]) for _, field, message in refused(text)] == [
        ("output[1].storage_provider", "storage provider 'webdav.dcache' is not supported"),
    ]
    only_undefined = service_text(extra="output:\n- {storage_provider: minio.edge, path: out/x}")
    assert refused(only_undefined) == [
        (
            "grayify",
            "output[0].storage_provider",
            "storage provider 'minio.edge' is not defined under storage_providers",
        )
    ]


def test_incomplete_provider_is_refused_when_used():
    text = (
        service_text(extra="output:\n- {storage_provider: minio.edge, path: out/x}")
        + "storage_providers:\n  minio:\n    edge: {endpoint: '', access_key: k, secret_key: ''}\n"
    )
    assert [(field, message) for _, field, message in refused(text)] == [
        ("storage_providers.minio.edge.secret_key", "required"),
    ]
    blank_key = text.replace("access_key: k", "access_key: ' '").replace("secret_key: ''", "secret_key: s")
    assert refused(blank_key) == [
        ("grayify", "storage_providers.minio.edge", "MinIO provider 'minio.edge' needs an endpoint")
    ]


def test_redefining_the_default_minio_is_refused():
    text = (
        service_text()
        + "storage_providers:\n  minio:\n"
        + "    default: {endpoint: 'http://evil:9000', access_key: a, secret_key: b}\n"
    )
    ((_, field, message),) = refused(text)
    assert field == "storage_providers.minio.default"
    assert message.startswith("'minio.default' is bucketrun's own MinIO")


@pytest.mark.parametrize(
    ("path", "field", "fragment"),
    [
        ("Images/in", "input[0].path", "invalid bucket name 'Images'"),
        ("images//in", "input[0].path", "has an empty segment"),
        ("images/../etc", "input[0].path", "has an empty, '.' or '..' segment"),
        ("'/'", "input[0].path", "required 'bucket/folder' string"),
        ("192.168.1.1/in", "input[0].path", "looks like an IP address"),
    ],
)
def test_bad_input_paths_are_refused(path, field, fragment):
    text = service_text().replace("path: images/in", f"path: {path}")
    ((_, found, message),) = refused(text)
    assert found == field
    assert fragment in message


def test_output_feeding_its_own_input_is_refused():
    text = service_text(extra="output:\n- {storage_provider: minio, path: images/in/results}")
    ((_, field, message),) = refused(text)
    assert field == "output[0].path"
    assert "every result would trigger it again" in message


def test_output_separated_from_own_input_by_suffix_filters_is_fine():
    text = service_text(
        extra="output:\n- {storage_provider: minio, path: images/in, suffix: [.png]}"
    ).replace("path: images/in\n", "path: images/in\n        suffix: [.jpg]\n", 1)
    assert len(load_services_text(text, source="x", base_dir=None)) == 1


def test_services_triggering_each_other_get_a_loop_warning():
    first = service_text(name="ping", extra="output:\n- {storage_provider: minio, path: images/pong}")
    second = (
        first.replace("name: ping", "name: pong")
        .replace("images/in", "images/pong")
        .replace("images/pong}", "images/in}")
    )
    entry = second.split("  oscar:\n", 1)[1]
    loaded = load_services_text(first + entry, source="x", base_dir=None)
    (warning,) = loaded.warnings
    assert warning.message.startswith("services ping, pong trigger each other in a loop")


# --- safety: YAML bombs, limits, hostile strings --------------------------------------------------


def test_billion_laughs_is_refused_quickly():
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    started = time.monotonic()
    ((_, _, message),) = refused("\n".join(lines) + "\n")
    assert time.monotonic() - started < 1.0
    assert message.startswith("refused YAML: more than 16 YAML aliases")


def test_few_aliases_that_expand_hugely_are_refused():
    lines = ['a0: &a0 ["' + "x" * 10 + '"' + ', "x"' * 99 + "]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 6)]
    ((_, _, message),) = refused("\n".join(lines) + "\n")
    assert message == "refused YAML: document expands to more than 20000 nodes through aliases"


def test_recursive_alias_is_refused():
    ((_, _, message),) = refused("a: &a [1, *a]\n")
    assert message == "refused YAML: recursive YAML alias *a (line 1)"


def test_deep_nesting_is_refused():
    ((_, _, message),) = refused("a: " + "[" * 200 + "]" * 200 + "\n")
    assert message.startswith("refused YAML: YAML nested deeper than 32 levels")


def test_oversized_document_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (1024 * 1024) + "\n", encoding="utf-8")
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([path])
    assert caught.value.problems[0].message == "larger than 1048576 bytes"


def test_duplicate_keys_are_refused():
    text = service_text(extra="cpu: '1'\ncpu: '2'")
    ((_, _, message),) = refused(text)
    assert "found duplicate key 'cpu'" in message


def test_python_tags_are_refused():
    ((_, _, message),) = refused("name: !!python/object/apply:os.system ['true']\n")
    assert "could not determine a constructor" in message


HOSTILE_VALUES = [
    "$(rm -rf /)",
    "`reboot`",
    "{{ 7 * 7 }}",
    "{% raw %}",
    "a\n---\nkind: Pod\n",
    "'; DROP TABLE jobs; --",
    '"quoted" \\ backslash',
    "\u202eevil\u200b",
    "${HOME}",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_strings_are_kept_as_data(value):
    encoded = json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    text = service_text(
        extra=f"environment:\n  variables:\n    V: {encoded}\nannotations:\n  example.com/note: {encoded}"
    )
    service = load_services_text(text, source="x", base_dir=None).by_name("grayify")
    assert service.variables["V"] == value
    assert service.annotations["example.com/note"] == value


def test_hostile_names_are_refused_and_shown_escaped():
    text = service_text(name='"evil\\n\\u001b[31mname"', extra='"\\u001b]0;pwned\\u0007": 1')
    problems = problems_of(text)
    assert [problem.field for problem in problems] == ["\x1b]0;pwned\x07", "name"]
    rendered = "\n".join(str(problem) for problem in problems)
    assert "\x1b" not in rendered
    assert "\\x1b" in rendered


def test_script_read_errors_do_not_follow_fifo(tmp_path):
    os.mkfifo(tmp_path / "run.sh")
    ((_, _, message),) = refused(_with_script("run.sh"), base_dir=tmp_path)
    assert message.endswith("is not a regular file")
