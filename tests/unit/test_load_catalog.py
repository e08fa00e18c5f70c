"""Loading definitions for the dispatcher (at start and on reload): problems and the records location."""

from __future__ import annotations

import pytest

from dispatcher.domain.errors import StartupError
from dispatcher.fdl.catalog import load_catalog

FDL = """
functions:
  oscar:
  - c:
      name: upper
      image: busybox
      script: |
        true
      input: [{storage_provider: minio, path: data/in}]
"""


def test_definitions_load_into_a_catalog_with_a_router(tmp_path) -> None:
    (tmp_path / "s.yaml").write_text(FDL)
    catalog = load_catalog((tmp_path,), ("bucketrun-records", "records/"))
    assert list(catalog.services) == ["upper"]


@pytest.mark.parametrize(("bucket", "prefix"), [("data", "in/records/"), ("data", ""), ("data", "in")])
def test_a_records_location_under_an_input_path_is_refused(tmp_path, bucket, prefix) -> None:
    (tmp_path / "s.yaml").write_text(FDL)
    with pytest.raises(StartupError, match="service 'upper' input 'data/in'"):
        load_catalog((tmp_path,), (bucket, prefix))


def test_a_sibling_folder_is_not_an_overlap(tmp_path) -> None:
    (tmp_path / "s.yaml").write_text(FDL)
    assert load_catalog((tmp_path,), ("data", "input-records/")).services


def test_invalid_definitions_name_file_service_and_field(tmp_path) -> None:
    (tmp_path / "s.yaml").write_text(FDL.replace("image: busybox", "image: busybox\n      cpu: lots"))
    with pytest.raises(StartupError, match=r"s\.yaml: service 'upper': field 'cpu'"):
        load_catalog((tmp_path,))


def test_no_paths_is_a_clear_error() -> None:
    with pytest.raises(StartupError, match="BUCKETRUN_SERVICES__PATHS"):
        load_catalog(())


def test_a_service_for_two_clusters_loads_for_the_configured_one_and_is_refused_otherwise(tmp_path) -> None:
    (tmp_path / "s.yaml").write_text(
        FDL + FDL.split("  oscar:\n", 1)[1].replace("- c:", "- d:").replace("data/in", "data/other")
    )
    catalog = load_catalog((tmp_path,), ("bucketrun-records", "records/"), cluster="d")
    assert [(s.cluster_id, s.inputs[0].folder) for s in catalog.services.values()] == [("d", "other")]
    with pytest.raises(StartupError, match="BUCKETRUN_SERVICES__CLUSTER"):
        load_catalog((tmp_path,), ("bucketrun-records", "records/"))


def test_the_jobs_need_counting_only_when_a_service_has_a_cap(tmp_path) -> None:
    (tmp_path / "s.yaml").write_text(FDL)
    assert not load_catalog((tmp_path,)).counts_jobs
    capped = FDL + "      bucketrun:\n        max_concurrent_jobs: 3\n"
    (tmp_path / "s.yaml").write_text(capped)
    assert load_catalog((tmp_path,)).counts_jobs
