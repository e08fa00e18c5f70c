"""Hostile service definitions (OSCAR FDL files), loaded the way the dispatcher loads them at start and on
every reload (`load_services` on files, `load_catalog` with the records location).

Each case is refused with a message naming the file, and the service and field where there is one — or,
where the FDL is legal, ends in the documented outcome (two services on one input path both run: that is
OSCAR's fan-out). No case may hang or exhaust memory: the run is bounded by pytest-timeout only, never by
a timing assertion. tests/unit/test_services_loader.py covers the loader's rules one by one on inline
text; this suite throws the attacks at real files and at the dispatcher's own entry point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.domain.errors import StartupError
from dispatcher.domain.events import build_message, parse_message
from dispatcher.domain.identity import job_name, object_version
from dispatcher.domain.record import STATUS_FILE, record_folder
from dispatcher.fdl import ServiceDefinitionError, ServiceProblem, load_services
from dispatcher.fdl.catalog import load_catalog
from dispatcher.fdl.safe_yaml import MAX_DOCUMENT_BYTES
from dispatcher.fdl.script import MAX_SCRIPT_BYTES
from watcher.records import RecordStore

pytestmark = pytest.mark.reliability

SERVICE = """\
functions:
  oscar:
  - c:
      name: {name}
      image: grycap/imagemagick
      script: |
        convert "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/out.png"
      input:
      - storage_provider: minio
        path: {path}
"""


def fdl(name: str = "grayify", path: str = "images/in") -> str:
    return SERVICE.format(name=name, path=path)


def entries(text: str) -> str:
    """The `- c: {...}` entries of an FDL text, to append to another file's `oscar:` list."""
    return text.split("  oscar:\n", 1)[1]


def refused(tmp_path: Path, text: str | bytes, name: str = "hostile.yaml") -> list[ServiceProblem]:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([path])
    problems = list(caught.value.problems)
    assert problems
    for problem in problems:
        assert problem.file == str(path)
        assert str(problem).startswith(f"{path}: "), str(problem)
    return problems


def only(problems: list[ServiceProblem]) -> ServiceProblem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# -- YAML bombs: refused before they expand ----------------------------------------------------------------

BOMBS = {
    "billion-laughs": (
        "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
        + "functions: *a9\n",
        "refused YAML: more than 16 YAML aliases",
    ),
    "few-aliases-huge-expansion": (
        "a0: &a0 [" + ", ".join(["xxxxxxxxxx"] * 3000) + "]\na1: [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n",
        "refused YAML: document expands to more than 20000 nodes through aliases",
    ),
    "merge-key-bomb": (
        "base: &b {" + ", ".join(f"k{i}: {i}" for i in range(3000)) + "}\n"
        "x1: &x1 {<<: *b, a: 1}\nx2: &x2 {<<: *x1, b: 2}\nx3: &x3 {<<: *x2, c: 3}\n"
        "x4: &x4 {<<: *x3, d: 4}\nx5: &x5 {<<: *x4, e: 5}\nx6: &x6 {<<: *x5, f: 6}\nx7: {<<: *x6, g: 7}\n",
        "refused YAML: document expands to more than 20000 nodes through aliases",
    ),
    "recursive-alias": ("a: &a [1, *a]\n", "refused YAML: recursive YAML alias *a"),
    "deep-flow-nesting": ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "refused YAML: YAML nested deeper"),
    "deep-block-nesting": (
        "".join(f"{'  ' * depth}k{depth}:\n" for depth in range(300)) + "  " * 300 + "x\n",
        "refused YAML: YAML nested deeper",
    ),
    "python-tag": (
        "functions: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        "could not determine",
    ),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_yaml_bombs_are_refused_naming_the_file(tmp_path, case):
    text, message = BOMBS[case]
    problem = only(refused(tmp_path, text))
    assert problem.service is None
    assert message in problem.message, problem.message


def test_an_oversized_file_is_refused_without_being_parsed(tmp_path):
    text = fdl() + "# " + "x" * MAX_DOCUMENT_BYTES + "\n"
    assert only(refused(tmp_path, text)).message == f"larger than {MAX_DOCUMENT_BYTES} bytes"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"functions:\n  oscar: \xff\xfe\n", "not UTF-8"),
        (b"functions:\x00\n", "character #x0000"),
        ("---\na: 1\n---\nb: 2\n", "expected a single document"),
    ],
    ids=["not-utf8", "nul-byte", "two-documents"],
)
def test_unreadable_documents_are_refused_with_a_reason(tmp_path, text, fragment):
    problem = only(refused(tmp_path, text))
    assert fragment.lower() in problem.message.lower(), problem.message


# -- huge scripts -------------------------------------------------------------------------------------------


def test_an_inline_script_over_the_configmap_limit_is_refused(tmp_path):
    text = fdl().replace("convert ", "echo " + "x" * (MAX_SCRIPT_BYTES + 10) + "\n        convert ")
    problem = only(refused(tmp_path, text))
    assert (problem.service, problem.field) == ("grayify", "script")
    assert f"at most {MAX_SCRIPT_BYTES} fit in its ConfigMap" in problem.message


def test_a_script_file_over_the_limit_is_refused_naming_the_file(tmp_path):
    (tmp_path / "run.sh").write_text("x" * (MAX_SCRIPT_BYTES + 1))
    text = fdl().replace(
        'script: |\n        convert "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/out.png"', "script: run.sh"
    )
    problem = only(refused(tmp_path, text))
    assert (problem.service, problem.field) == ("grayify", "script")
    assert f"'{tmp_path / 'run.sh'}' is larger than {MAX_SCRIPT_BYTES} bytes" in problem.message


# -- wrong types at every level -----------------------------------------------------------------------------

WRONG_TYPES = [
    ("name: grayify", "name: 5", "#1", "name", "valid string"),
    ("image: grycap/imagemagick", "image: [a, b]", "grayify", "image", "valid string"),
    ("path: images/in", "path: 7", "grayify", "input[0].path", "required 'bucket/folder' string, got 7"),
    (
        "      input:\n      - storage_provider: minio\n        path: images/in\n",
        "      input: images/in\n",
        "grayify",
        "input",
        "must be a list, got a string",
    ),
    (
        'script: |\n        convert "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/out.png"',
        "script: 12",
        "grayify",
        "script",
        "must be a string",
    ),
    ("      image:", "      cpu: {a: b}\n      image:", "grayify", "cpu", "got a mapping"),
    ("      image:", "      memory: true\n      image:", "grayify", "memory", "got a boolean"),
    (
        "      image:",
        "      environment: {variables: [a, b]}\n      image:",
        "grayify",
        "environment.variables",
        "must be a mapping, got a list",
    ),
    (
        "      image:",
        "      bucketrun: {timeout: soon}\n      image:",
        "grayify",
        "bucketrun.timeout",
        "integer",
    ),
    (
        "      image:",
        "      bucketrun: {retries: 1.5}\n      image:",
        "grayify",
        "bucketrun.retries",
        "integer",
    ),
    (
        "      image:",
        "      bucketrun: {max_concurrent_jobs: -1}\n      image:",
        "grayify",
        "bucketrun.max_concurrent_jobs",
        "greater than 0",
    ),
    ("      image:", "      bucketrun: [timeout]\n      image:", "grayify", "bucketrun", ""),
    ("functions:\n  oscar:", "functions:\n  oscar: 3\n  unused:", None, "functions", "must be a mapping"),
    ("  - c:", "  - c: [1]\n  - d:", "#1", None, "a service must be a mapping, got a list"),
]


@pytest.mark.parametrize(
    ("old", "new", "service", "field", "fragment"), WRONG_TYPES, ids=[w[3] or w[4][:20] for w in WRONG_TYPES]
)
def test_wrong_types_name_the_service_and_field(tmp_path, old, new, service, field, fragment):  # noqa: PLR0917
    text = fdl()
    assert old in text
    problems = refused(tmp_path, text.replace(old, new, 1))
    matching = [p for p in problems if (p.service, p.field) == (service, field)]
    assert matching, [str(p) for p in problems]
    assert fragment in matching[0].message
    if field:
        assert f"field '{field}'" in str(matching[0])


HOSTILE_SCALARS = [
    ("ephemeral_storage_request", '"1Gi\\nkind: Pod"', "invalid quantity '1Gi\\nkind: Pod'"),
    ("ephemeral_storage_request", "'{{ 7*7 }}'", "invalid quantity '{{ 7*7 }}'"),
    ("ephemeral_storage_request", "1e999999999", "is out of range"),
    ("ephemeral_storage_request", "'-1Gi'", "quantity '-1Gi' must be greater than zero"),
    (
        "ephemeral_storage_request",
        "{requests: 1Gi}",
        "must be a quantity such as '1.0' or '512Mi', got a mapping",
    ),
    ("log_level", '"INFO\\nkind: Pod"', "invalid log level 'INFO\\nkind: Pod'"),
    ("log_level", "'$(reboot)'", "invalid log level '$(reboot)'"),
    ("log_level", "[DEBUG]", "Input should be a valid string (got a list)"),
]


@pytest.mark.parametrize(
    ("key", "value", "fragment"), HOSTILE_SCALARS, ids=[f"{k}={v}" for k, v, _ in HOSTILE_SCALARS]
)
def test_hostile_resource_and_log_level_values_are_refused_quoting_them(tmp_path, key, value, fragment):
    # A value that reaches the manifest (a resource request, an env value) is checked before rendering:
    # only a quantity or one of the log levels can pass, so no value can change the Job's shape.
    problem = only(refused(tmp_path, fdl().replace("      image:", f"      {key}: {value}\n      image:")))
    assert (problem.service, problem.field) == ("grayify", key)
    assert fragment in problem.message, problem.message


# -- duplicates and overlaps --------------------------------------------------------------------------------


def test_a_service_name_defined_twice_in_one_file_is_refused(tmp_path):
    problem = only(refused(tmp_path, fdl() + entries(fdl(path="other/in"))))
    assert (problem.service, problem.field) == ("grayify", "name")
    assert "service name 'grayify' is defined twice" in problem.message


def test_a_service_name_defined_in_two_files_names_both(tmp_path):
    (tmp_path / "a.yaml").write_text(fdl())
    (tmp_path / "b.yaml").write_text(fdl(path="other/in"))
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services([tmp_path])
    (problem,) = caught.value.problems
    assert str(tmp_path / "a.yaml") in problem.message
    assert str(tmp_path / "b.yaml") in problem.message


def test_a_duplicate_key_is_refused_not_silently_overwritten(tmp_path):
    text = fdl().replace(
        "      image: grycap/imagemagick\n", "      image: grycap/imagemagick\n      image: evil:1\n"
    )
    problem = only(refused(tmp_path, text))
    assert "found duplicate key 'image'" in problem.message


def test_an_output_feeding_its_own_input_is_refused(tmp_path):
    text = fdl() + "      output:\n      - {storage_provider: minio, path: images/in/results}\n"
    problem = only(refused(tmp_path, text))
    assert (problem.service, problem.field) == ("grayify", "output[0].path")
    assert "every result would trigger it again" in problem.message


def test_two_services_on_one_input_path_both_run_one_job_each(tmp_path):
    # OSCAR's fan-out, not an error: every service whose input matches gets the event, each once.
    path = tmp_path / "fanout.yaml"
    path.write_text(
        fdl() + entries(fdl(name="thumbnail")) + entries(fdl(name="nested", path="images/in/sub"))
    )
    catalog = load_catalog((path,))
    (event,) = parse_message(
        build_message(event_name="s3:ObjectCreated:Put", bucket="images", key="in/sub/x.png", sequencer="1")
    )
    routed = [route.service.name for route in catalog.router.route(event)]
    assert routed == ["grayify", "thumbnail", "nested"]
    names = {job_name(service, event.bucket, event.key, object_version(event)) for service in routed}
    assert len(names) == 3


def test_overlapping_inputs_of_one_service_route_it_once(tmp_path):
    text = fdl().replace(
        "        path: images/in\n",
        "        path: images/in\n      - storage_provider: minio\n        path: images/in/sub\n",
    )
    path = tmp_path / "overlap.yaml"
    path.write_text(text)
    catalog = load_catalog((path,))
    (event,) = parse_message(
        build_message(event_name="s3:ObjectCreated:Put", bucket="images", key="in/sub/x.png", sequencer="1")
    )
    assert [route.service.name for route in catalog.router.route(event)] == ["grayify"]


@pytest.mark.parametrize(
    ("bucket", "prefix"), [("images", "in/records/"), ("images", ""), ("images", "in/"), ("images", "/in")]
)
def test_a_records_location_overlapping_an_input_stops_the_dispatcher_naming_both(tmp_path, bucket, prefix):
    path = tmp_path / "services.yaml"
    path.write_text(fdl())
    with pytest.raises(StartupError) as caught:
        load_catalog((path,), (bucket, prefix))
    message = str(caught.value)
    assert (
        f"the job records location {bucket}/{prefix} overlaps service 'grayify' input 'images/in'" in message
    )
    assert "BUCKETRUN_STORAGE__RECORDS_PREFIX" in message


def test_every_problem_of_a_hostile_file_is_reported_at_once(tmp_path):
    text = (
        fdl()
        .replace("name: grayify", "name: Bad_Name")
        .replace("path: images/in", "path: images/../etc")
        .replace("      image:", "      cpu: lots\n      image:")
    )
    problems = refused(tmp_path, text)
    fields = sorted(p.field or "" for p in problems)
    assert fields == ["cpu", "input[0].path", "name"], [str(p) for p in problems]


@pytest.mark.parametrize("prefix", ["i", "i/", "records", "/records/", "in-records"])
def test_records_the_check_accepts_can_never_trigger_a_service(tmp_path, prefix):
    # Bug found by this suite: the check read the prefix as a folder ("i" -> "i/") while the watcher
    # glued it to the service name as text, so prefix "i" and a service named "n" wrote under "in/".
    path = tmp_path / "services.yaml"
    path.write_text(fdl() + entries(fdl(name="n", path="other/in")))
    catalog = load_catalog((path,), ("images", prefix))
    for service in catalog.services:
        key = f"{RecordStore(None, 'images', prefix).folder(service, 'job-1')}{STATUS_FILE}"  # type: ignore[arg-type]
        assert key == f"{record_folder(prefix, service, 'job-1')}{STATUS_FILE}"
        (event,) = parse_message(
            build_message(event_name="s3:ObjectCreated:Put", bucket="images", key=key, sequencer="1")
        )
        assert catalog.router.route(event) == (), f"record {key} would trigger a service"
