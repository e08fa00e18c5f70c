"""The service models built directly, as other components' tests do: validation, filters, overlap, hash."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dispatcher.fdl import (
    RESERVED_VARIABLES,
    BucketrunOptions,
    InputPath,
    OutputPath,
    ServiceDefinition,
    StorageProvider,
    is_reserved_variable,
)


def make_service(**changes: object) -> ServiceDefinition:
    fields: dict[str, object] = {
        "name": "grayify",
        "image": "grycap/imagemagick",
        "script": 'convert "$INPUT_FILE_PATH" -type Grayscale "$TMP_OUTPUT_DIR/out.png"\n',
        "inputs": [{"bucket": "images", "folder": "in"}],
        "outputs": [{"bucket": "images", "folder": "out"}],
        "variables": {"MODE": "gray"},
        "secrets": {"TOKEN": "s3cr3t-value"},
        "source": "a.yaml",
    }
    fields.update(changes)
    return ServiceDefinition.model_validate(fields)


# --- input paths: overlap with a records location -------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "prefix", "bucket", "records", "expected"),
    [
        ("in", (), "images", "in", True),
        ("in", (), "images", "/in/records/", True),
        ("input", (), "images", "in", False),  # path boundary: `in` is not a prefix of `input/`
        ("in", (), "images", "input", False),
        ("in/sub", (), "images", "in", True),  # records above the input folder hold it
        ("in", (), "images", "", True),  # records at the bucket root
        ("", (), "images", "records", True),  # the input watches the whole bucket
        ("in", (), "other", "in", False),
        ("in", ("img-",), "images", "in/logs", False),  # the input's prefix filter never sees logs/...
        ("in", ("img-",), "images", "in/img-records", True),
        ("in", ("img-",), "images", "in", True),
        ("in", ("logs",), "images", "in/logs/2026", True),
    ],
)
def test_input_overlaps_records_location_at_path_boundaries(folder, prefix, bucket, records, expected):
    path = InputPath(bucket="images", folder=folder, prefix=prefix)
    assert path.overlaps(bucket, records) is expected


def test_input_suffix_filter_does_not_hide_an_overlap():
    path = InputPath(bucket="images", folder="in", suffix=(".jpg",))
    assert path.overlaps("images", "in/records")


# --- output paths: OSCAR's upload filter ----------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix", "relative", "expected"),
    [
        ((), (), "any/file.bin", True),
        ((), ("_NO_DRIFT",), "frame_NO_DRIFT", True),
        ((), ("_NO_DRIFT",), "frame_DRIFTED", False),
        (("frame",), (), "frame-1.jpg", True),
        (("frame",), (), "sub/frame-1.jpg", False),  # prefixes apply to the path relative to TMP_OUTPUT_DIR
        (("a", "b"), (".png", ".jpg"), "b1.jpg", True),
        (("a", "b"), (".png", ".jpg"), "c1.jpg", False),
        (("a",), (".png",), "a.jpg", False),  # both filters must pass
    ],
)
def test_output_accepts_like_the_faas_supervisor(prefix, suffix, relative, expected):
    assert OutputPath(bucket="results", prefix=prefix, suffix=suffix).accepts(relative) is expected


def test_output_may_trigger_needs_same_storage_and_meeting_key_spaces():
    target = InputPath(bucket="images", folder="med", suffix=(".jpg",))
    assert OutputPath(bucket="images", folder="med").may_trigger(target)
    assert not OutputPath(bucket="images", folder="med", suffix=(".json",)).may_trigger(target)
    assert OutputPath(bucket="images", folder="med", suffix=("x.jpg",)).may_trigger(target)
    assert not OutputPath(bucket="images", folder="medium").may_trigger(target)
    assert not OutputPath(provider="minio.edge", bucket="images", folder="med").may_trigger(target)


# --- path validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "normalised"),
    [
        ("minio", "minio.default"),
        ("minio.default", "minio.default"),
        ("minio.edge-1", "minio.edge-1"),
        ("s3.aws", "s3.aws"),
    ],
)
def test_provider_references_are_normalised(reference, normalised):
    assert InputPath(provider=reference, bucket="images").provider == normalised


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"provider": "rucio.rucio"}, "storage provider 'rucio.rucio' is not supported"),
        ({"provider": "gcs.x"}, "unknown storage provider 'gcs.x'"),
        ({"provider": "minio.bad id"}, "invalid storage provider id 'bad id'"),
        ({"bucket": "ab"}, "invalid bucket name 'ab'"),
        ({"bucket": "a..b"}, "'..', '.-' and '-.' are not allowed"),
        ({"folder": "/in"}, "must not start or end with '/'"),
        ({"folder": "in/./x"}, "has an empty, '.' or '..' segment"),
        ({"folder": "in\nx"}, "contains control characters"),
        ({"prefix": ("",)}, "an empty prefix/suffix matches every key"),
        ({"events": ()}, "at least 1 item"),
        ({"events": ("s3:ObjectAccessed:Get",)}, "cannot trigger a job"),
        ({"events": ("s3:ObjectCreated:Typo",)}, "cannot trigger a job"),
    ],
)
def test_invalid_input_paths_are_refused(changes, fragment):
    with pytest.raises(
        ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        InputPath.model_validate({"bucket": "images", **changes})


def test_paths_are_frozen_and_hashable():
    path = InputPath(bucket="images", folder="in", prefix=["a", "a", "b"])
    assert path.prefix == ("a", "b")
    assert len({path, InputPath(bucket="images", folder="in", prefix=("a", "b"))}) == 1
    with pytest.raises(ValidationError):
        path.bucket = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("event", "accepted"),
    [
        ("s3:ObjectCreated:*", True),
        ("s3:ObjectCreated:CompleteMultipartUpload", True),
        ("s3:ObjectRestore:Completed", True),
        ("s3:ObjectRemoved:Delete", False),
        ("s3:ObjectCreated:", False),
        ("s3:*", False),
    ],
)
def test_event_patterns(event, accepted):
    if accepted:
        assert InputPath(bucket="images", events=(event,)).events == (event,)
    else:
        with pytest.raises(ValidationError, match="cannot trigger a job"):
            InputPath(bucket="images", events=(event,))


# --- storage providers ----------------------------------------------------------------------------


def test_provider_credentials_never_print():
    provider = StorageProvider(
        kind="minio", id="edge", endpoint="https://minio.edge:9000", access_key="AK", secret_key="SK-123"
    )
    assert provider.reference == "minio.edge"
    assert provider.secret_key.get_secret_value() == "SK-123"
    for text in (repr(provider), str(provider), provider.model_dump_json()):
        assert "SK-123" not in text
        assert "AK'" not in text


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"endpoint": None}, "needs an endpoint"),
        ({"endpoint": "ftp://minio"}, "is not an http(s)://host[:port] URL"),
        ({"endpoint": "https://user:pw@minio"}, "must not embed credentials"),
        ({"endpoint": "https://minio?x=1"}, "must not have a query"),
        ({"id": "default"}, "'minio.default' is bucketrun's own MinIO"),
        ({"secret_key": ""}, "must not be empty"),
    ],
)
def test_invalid_providers_are_refused(changes, fragment):
    fields = {
        "kind": "minio",
        "id": "edge",
        "endpoint": "https://minio.edge",
        "access_key": "a",
        "secret_key": "b",
    }
    with pytest.raises(ValidationError) as caught:
        StorageProvider.model_validate({**fields, **changes})
    assert fragment in str(caught.value)
    assert "pw@" not in str(caught.value)  # inputs stay out of validation errors: they may hold credentials


def test_s3_provider_needs_no_endpoint():
    assert StorageProvider(kind="s3", id="aws", access_key="a", secret_key="b").endpoint is None


# --- service definitions --------------------------------------------------------------------------


def test_minimal_service_has_documented_defaults():
    service = ServiceDefinition(name="echo", image="alpine", script="echo hi\n")
    assert (service.cpu, service.memory, service.enable_gpu, service.gpus, service.log_level) == (
        None,
        None,
        False,
        0,
        None,
    )
    assert (service.inputs, service.outputs, dict(service.storage_providers)) == ((), (), {})
    assert service.options == BucketrunOptions()
    assert service.options.events == ("s3:ObjectCreated:*",)
    assert not service.triggerable


def test_mappings_of_a_service_are_read_only():
    service = make_service()
    with pytest.raises(TypeError):
        service.variables["MODE"] = "colour"  # type: ignore[index]
    with pytest.raises(TypeError):
        service.options.node_selector["x"] = "y"  # type: ignore[index]
    with pytest.raises(ValidationError):
        service.name = "other"  # type: ignore[misc]


def test_secret_values_stay_hidden():
    service = make_service()
    assert service.secrets["TOKEN"].get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(service) + service.model_dump_json() + str(service.model_dump())
    with pytest.raises(ValidationError) as caught:
        # Missing fields: pydantic would otherwise print the whole (short) input.
        ServiceDefinition.model_validate({"secrets": {"K": "pw1"}})
    assert "pw1" not in str(caught.value)


def test_content_hash_is_stable_and_ignores_where_the_file_was():
    first, second = make_service(), make_service(source="elsewhere/b.yaml", cluster_id="oscar-2")
    assert first.content_hash() == second.content_hash()
    assert len(first.content_hash()) == 64
    assert int(first.content_hash(), 16) >= 0


@pytest.mark.parametrize(
    "changes",
    [
        {"script": "echo changed\n"},
        {"image": "grycap/imagemagick:7"},
        {"cpu": "2"},
        {"variables": {"MODE": "colour"}},
        {"secrets": {"OTHER": "s3cr3t-value"}},
        {"labels": {"team": "a"}},
        {"outputs": [{"bucket": "images", "folder": "out", "suffix": [".png"]}]},
        {"options": {"timeout": 60}},
        {"enable_gpu": True},
    ],
)
def test_content_hash_changes_with_what_shapes_the_pod(changes):
    assert make_service(**changes).content_hash() != make_service().content_hash()


def test_content_hash_ignores_secret_values():
    assert make_service(secrets={"TOKEN": "rotated"}).content_hash() == make_service().content_hash()


def test_services_are_hashable_consistently_with_equality():
    hashed = make_service()
    assert hash(hashed) == hash(make_service())
    assert hashed == make_service()  # the cached digest is no field
    assert len({make_service(), make_service(), make_service(script="echo other\n")}) == 2


def test_reserved_variables_cover_the_job_contract():
    assert {
        "INPUT_FILE_PATH",
        "TMP_INPUT_DIR",
        "TMP_OUTPUT_DIR",
        "STORAGE_OBJECT_KEY",
        "EVENT",
        "EVENT_TIME",
        "JOB_UUID",
    } <= (RESERVED_VARIABLES)
    assert is_reserved_variable("BUCKETRUN_SCRIPT")
    assert not is_reserved_variable("MY_INPUT")
    with pytest.raises(ValidationError, match="reserved for the job contract"):
        make_service(secrets={"EVENT": "x"})


def test_tolerations_render_as_pod_spec_mappings():
    options = BucketrunOptions(
        tolerations=[
            {
                "key": "gpu",
                "operator": "Equal",
                "value": "a100",
                "effect": "NoExecute",
                "tolerationSeconds": 30,
            }
        ]
    )
    assert [dict(toleration) for toleration in options.tolerations] == [
        {"key": "gpu", "operator": "Equal", "value": "a100", "effect": "NoExecute", "tolerationSeconds": 30}
    ]
    with pytest.raises(ValidationError, match="tolerationSeconds applies only"):
        BucketrunOptions(tolerations=[{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 30}])
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        BucketrunOptions(tolerations=[{"key": "gpu", "toleration_seconds": 30}])


def test_service_name_follows_oscar_limits():
    make_service(name="a" * 39)
    with pytest.raises(ValidationError, match="longer than 39 characters"):
        make_service(name="a" * 40)


def test_gpu_count_follows_enable_gpu():
    assert make_service(enable_gpu=True).gpus == 1
    assert make_service(enable_gpu=True, gpus=4).gpus == 4
    with pytest.raises(ValidationError, match="must be at least 1 when enable_gpu is true"):
        make_service(enable_gpu=True, gpus=0)


def test_annotations_are_bounded_by_kubernetes_limit():
    with pytest.raises(ValidationError, match="annotations total"):
        make_service(annotations={"example.com/big": "x" * (256 * 1024)})
