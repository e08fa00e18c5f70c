"""FDL fields read as OSCAR reads them: clusters, bucket-less paths, inputs that can never fire, log
levels, ephemeral storage and script paths (own fixtures in tests/unit/fixtures/fdl, inline cases).

The OSCAR source each rule follows is named in the module that implements it: ``dispatcher.fdl.clusters``
(oscar-cli ``cmd/apply.go``), ``locations`` (OSCAR ``normalizeStoragePaths``), ``fdl._ServiceReader``
(OSCAR ``createBuckets``' input check), ``model`` (OSCAR ``checkValues`` and ``CreateResources``),
``script`` (oscar-cli ``getScriptPath``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.domain.events import build_message, parse_message
from dispatcher.domain.routing import Router
from dispatcher.fdl import LoadedServices, ServiceDefinitionError, load_services, load_services_text
from dispatcher.fdl.model import LOG_LEVELS

FDL = Path(__file__).resolve().parent / "fixtures" / "fdl"
CHOOSE = (
    "choose its cluster with --cluster ID (bucketrun services, render, events inspect) or the setting "
    "BUCKETRUN_SERVICES__CLUSTER"
)


def problems(paths: list[Path], cluster: str | None = None) -> list[tuple[str | None, str | None, str]]:
    with pytest.raises(ServiceDefinitionError) as caught:
        load_services(paths, cluster=cluster)
    return [(problem.service, problem.field, problem.message) for problem in caught.value.problems]


def service(extra: str = "", *, name: str = "grayify", path: str = "images/in") -> str:
    indented = "".join(f"      {line}\n" for line in extra.splitlines())
    return (
        "functions:\n  oscar:\n  - oscar-test:\n"
        f"      name: {name}\n      image: grycap/imagemagick\n      script: |\n        convert x y\n"
        f"      input:\n      - storage_provider: minio\n        path: {path}\n{indented}"
    )


def loaded_text(text: str, cluster: str | None = None) -> LoadedServices:
    return load_services_text(text, source="inline.yaml", base_dir=None, cluster=cluster)


def refused_text(text: str) -> list[tuple[str | None, str]]:
    with pytest.raises(ServiceDefinitionError) as caught:
        loaded_text(text)
    return [(problem.field, problem.message) for problem in caught.value.problems]


# -- a service defined for several clusters ---------------------------------------------------------------


def test_without_a_choice_the_clusters_are_named_with_the_option_and_setting():
    found = problems([FDL / "multi-cluster.yaml"])
    assert found[-1] == (
        "leaf-counter",
        "name",
        "service name 'leaf-counter' is defined for several OSCAR clusters: "
        f"'edge-site' in {FDL / 'multi-cluster.yaml'}, 'cloud-site' in {FDL / 'multi-cluster.yaml'}; "
        f"bucketrun runs one: {CHOOSE}",
    )
    # Both definitions were read, so their own problems are reported at the same time.
    assert [field for _, field, _ in found[:-1]] == ["volume", "output[0].storage_provider"]


def test_the_chosen_clusters_definition_is_used_and_the_other_set_aside_unread():
    loaded = load_services([FDL / "multi-cluster.yaml"], cluster="cloud-site")
    assert [(s.name, s.cluster_id) for s in loaded] == [
        ("leaf-counter", "cloud-site"),
        ("leaf-report", "cloud-site"),
    ]
    counter = loaded.by_name("leaf-counter")
    assert (counter.image, counter.memory, counter.log_level) == (
        "ghcr.io/example/leaf-counter:large",
        "4Gi",
        "DEBUG",
    )
    # The edge definition's `volume` (refused) and `replicas` (a warning) were never read.
    assert loaded.warnings == ()
    assert loaded.notes == (
        f"{FDL / 'multi-cluster.yaml'}: service 'leaf-counter' for cluster 'edge-site' set aside: "
        "the definition for cluster 'cloud-site' is used",
    )


def test_choosing_a_cluster_whose_definition_is_refused_reports_only_its_problems():
    assert [field for _, field, _ in problems([FDL / "multi-cluster.yaml"], "edge-site")] == [
        "volume",
        "output[0].storage_provider",
    ]


def test_a_chosen_cluster_that_defines_none_of_them_is_an_error_naming_them():
    (*_, last) = problems([FDL / "multi-cluster.yaml"], "nowhere")
    assert last[2].endswith(
        "none is for the chosen cluster 'nowhere' (--cluster ID or BUCKETRUN_SERVICES__CLUSTER): "
        "choose one of those"
    )
    assert "'edge-site' in" in last[2]
    assert "'cloud-site' in" in last[2]


def test_bare_services_in_several_files_are_chosen_by_their_cluster_id(tmp_path):
    for cluster in ("site-a", "site-b"):
        (tmp_path / f"{cluster}.yaml").write_text(
            f"name: grayify\ncluster_id: {cluster}\nimage: grycap/imagemagick:{cluster[-1]}\n"
            "script: |\n  convert x y\ninput: [{storage_provider: minio, path: images/in}]\n"
        )
    assert load_services([tmp_path], cluster="site-b").by_name("grayify").image == "grycap/imagemagick:b"
    ((_, _, message),) = problems([tmp_path])
    assert f"'site-a' in {tmp_path / 'site-a.yaml'}, 'site-b' in {tmp_path / 'site-b.yaml'}" in message


# -- paths without a bucket -------------------------------------------------------------------------------


def test_a_path_without_a_bucket_is_a_folder_of_the_services_bucket_with_a_warning():
    loaded = load_services([FDL / "single-segment-paths.yaml"])
    ocr = loaded.by_name("ocr-scans")
    assert [(p.bucket, p.folder) for p in ocr.inputs] == [("ocr-scans", "scans")]
    assert [(p.bucket, p.folder) for p in ocr.outputs] == [("ocr-scans", "text"), ("ocr-archive", "by-day")]
    assert [(w.field, w.message) for w in loaded.warnings] == [
        (
            "input[0].path",
            "path '/scans/' has no bucket: read as folder 'scans' of the bucket named after the service, "
            "'ocr-scans/scans', as OSCAR 4.1 and later read it; before 4.1, OSCAR read it as the bucket "
            "'scans' (as an input it watched that whole bucket up to OSCAR 3.3.0, never triggered from "
            "3.3.1 to 3.5 and was refused from 3.6); write 'ocr-scans/scans' to say so, or "
            "'scans/<folder>' for a folder of that bucket",
        ),
        (
            "output[0].path",
            "path 'text' has no bucket: read as folder 'text' of the bucket named after the service, "
            "'ocr-scans/text', as OSCAR 4.1 and later read it; before 4.1, OSCAR read it as the bucket "
            "'text' (results went to the top of that bucket); write 'ocr-scans/text' to say so, or "
            "'text/<folder>' for a folder of that bucket",
        ),
    ]


def test_a_path_is_trimmed_of_spaces_and_slashes_as_oscar_trims_it():
    (only,) = loaded_text(service(path="' /images/in/ '")).services
    assert (only.inputs[0].bucket, only.inputs[0].folder) == ("images", "in")


def test_a_service_name_that_cannot_be_a_bucket_makes_a_bucketless_path_an_error():
    assert refused_text(service(name="ab", path="in")) == [
        (
            "input[0].path",
            "path 'in' names no bucket: OSCAR 4.1+ uses the service's name 'ab' as the bucket, which "
            "cannot be one (invalid bucket name 'ab': 3-63 lower-case letters, digits, '.' "
            "and '-', starting and ending with a letter or digit); write 'bucket/folder'",
        )
    ]


@pytest.mark.parametrize("path", ["'/'", "' '", "''"])
def test_a_path_that_names_nothing_is_required(path):
    ((field, message),) = refused_text(service(path=path))
    assert (field, message.split(",")[0]) == ("input[0].path", "required 'bucket/folder' string")


# -- inputs that can never fire ---------------------------------------------------------------------------


def test_an_input_on_another_store_is_ignored_with_a_warning_when_another_can_fire():
    loaded = load_services([FDL / "foreign-input-warns.yaml"])
    parser = loaded.by_name("invoice-parser")
    assert [(p.provider, p.path) for p in parser.inputs] == [("minio.default", "invoices/uploaded")]
    assert [(p.provider, p.path) for p in parser.outputs] == [("s3.archive", "invoices/parsed")]
    assert [(w.field, w.message) for w in loaded.warnings] == [
        (
            "input[0].storage_provider",
            "storage provider 's3.archive' can never trigger this service: bucketrun hears of new objects "
            "from its own store only (storage_provider 'minio', i.e. minio.default); this input is ignored",
        )
    ]
    # Left out, it cannot be mistaken for the own store's bucket of the same name either.
    (event,) = parse_message(
        build_message(
            event_name="s3:ObjectCreated:Put", bucket="invoices", key="scanned/a.pdf", sequencer="1"
        )
    )
    assert Router(loaded.services).route(event) == ()


def test_a_service_whose_inputs_can_never_fire_is_refused():
    assert problems([FDL / "foreign-input-only.yaml"]) == [
        (
            "partner-sync",
            "input[0].storage_provider",
            "storage provider 'minio.partner' can never trigger this service: bucketrun hears of new objects "
            "from its own store only (storage_provider 'minio', i.e. minio.default; write that if "
            "'minio.partner' is that same MinIO), and no other input can",
        )
    ]


def test_problems_after_an_ignored_input_keep_the_fdls_numbering():
    text = service(
        "storage_providers: {s3: {aws: {access_key: a, secret_key: b}}}",
        path="images/in\n      - {storage_provider: s3.aws, path: archive/in}\n"
        "      - {storage_provider: minio, path: 'Bad_Bucket/in'}",
    )
    assert [field for field, _ in refused_text(text)] == ["input[2].path"]


# -- log_level and ephemeral_storage_request --------------------------------------------------------------


# OSCAR's create handler (pkg/handlers/create.go) keeps exactly these, after upper-casing.
OSCAR_LEVELS = ("NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@pytest.mark.parametrize("level", [*OSCAR_LEVELS, *(level.lower() for level in OSCAR_LEVELS), "Warning"])
def test_every_level_oscar_accepts_is_accepted_in_any_case(level):
    assert set(OSCAR_LEVELS) == set(LOG_LEVELS)
    (only,) = loaded_text(service(f"log_level: {level}")).services
    assert only.log_level == level.upper()


@pytest.mark.parametrize("level", ["WARN", "FATAL", "trace", "10"])
def test_other_levels_are_errors_naming_the_accepted_ones(level):
    assert refused_text(service(f"log_level: '{level}'")) == [
        (
            "log_level",
            f"invalid log level '{level}' (expected one of NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL, "
            "in any case; OSCAR would silently run its supervisor at INFO instead)",
        )
    ]


def test_ephemeral_storage_request_and_a_lower_case_level_load():
    loaded = load_services([FDL / "resources-levels.yaml"])
    downscale = loaded.by_name("weather-downscale")
    assert (downscale.ephemeral_storage_request, downscale.log_level) == ("20Gi", "NOTSET")
    assert loaded.warnings == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "invalid quantity 'lots' (expected e.g. '500m', '1.5', '512Mi', '2Gi')"),
        ("'0'", "quantity '0' must be greater than zero"),
        ("[1Gi]", "must be a quantity such as '1.0' or '512Mi', got a list"),
    ],
)
def test_a_bad_ephemeral_storage_request_is_refused_quoting_it(value, message):
    assert refused_text(service(f"ephemeral_storage_request: {value}")) == [
        ("ephemeral_storage_request", message)
    ]


# -- script files ---------------------------------------------------------------------------------------


def test_a_script_in_a_sibling_folder_is_read_as_oscar_cli_reads_it():
    (ndvi,) = load_services([FDL / "scripts-elsewhere" / "fdl"]).services
    assert ndvi.script == (FDL / "scripts-elsewhere" / "scripts" / "ndvi.sh").read_text()
