"""`bucketrun api`'s `/system/logs` decisions without servers: statuses in OSCAR's words, a page as
OSCAR's `JobsResponse` JSON, the `page` token and the `all` flag as OSCAR reads them, the answer to a
delete, and the refusals made before the cluster or the store is asked anything.

The JSON shapes are written out by hand from OSCAR's `pkg/types/jobinfo.go` (`JobInfo`, `JobsResponse`,
times as `metav1.Time` marshals them) and what oscar-cli 1.12 (`pkg/service/logs.go`) and oscar-python
2.2 (`list_jobs`, `get_job_logs`, `remove_job`, `remove_all_jobs`) send.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bucketrun.admin.jobs import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SKIPPED,
    Page,
    cursor_of,
    format_cursor,
)
from bucketrun.api.app import create_app
from bucketrun.api.catalog import ServiceCatalog, UnknownServiceError
from bucketrun.api.logs import BadPageError, deletion_answer, go_bool, jobs_response, page_cursor
from bucketrun.api.settings import ApiSettings
from dispatcher.executors.admin import JobStatus, JobSummary
from dispatcher.runtime.settings import Settings

USER, PASSWORD = "oscar", "the-password"
AUTH = (USER, PASSWORD)


def summary(name: str, status: JobStatus, created: str | None, **times: str | None) -> JobSummary:
    return JobSummary(
        name=name,
        service="upper",
        status=status,
        created=created,
        started=times.get("started"),
        finished=times.get("finished"),
        uid=f"uid-{name}",
        recorded=False,
        live=True,
    )


def test_a_page_is_oscar_s_jobs_response_with_statuses_in_its_words_and_times_in_whole_utc_seconds() -> None:
    page = Page(
        [
            summary("upper-c", JobStatus.PENDING, "2026-12-04T10:00:03Z"),
            summary("upper-b", JobStatus.RUNNING, "2026-12-04T10:00:02Z", started="2026-12-04T10:00:02Z"),
            summary(
                "upper-a",
                JobStatus.FAILED,
                # A record's times, written by another clock: offsets and fractions become OSCAR's form.
                "2026-12-04T11:00:01.250000+01:00",
                started="2026-12-04T10:00:01.9Z",
                finished="2026-12-04T10:00:09Z",
            ),
            summary("upper-0", JobStatus.SUCCEEDED, None),
        ],
        None,
    )
    sent = jobs_response(page, "2026-12-04T10:00:00Z/upper-0").model_dump(mode="json", exclude_none=True)
    assert sent == {
        "jobs": {
            "upper-c": {"status": "Pending", "creation_time": "2026-12-04T10:00:03Z"},
            "upper-b": {
                "status": "Running",
                "creation_time": "2026-12-04T10:00:02Z",
                "start_time": "2026-12-04T10:00:02Z",
            },
            "upper-a": {
                "status": "Failed",
                "creation_time": "2026-12-04T10:00:01Z",
                "start_time": "2026-12-04T10:00:01Z",
                "finish_time": "2026-12-04T10:00:09Z",
            },
            "upper-0": {"status": "Succeeded"},
        },
        "next_page": "2026-12-04T10:00:00Z/upper-0",
    }
    assert list(sent["jobs"]) == ["upper-c", "upper-b", "upper-a", "upper-0"]  # newest first
    last = jobs_response(Page([], None), None).model_dump(mode="json", exclude_none=True)
    assert last == {"jobs": {}}  # no next_page on the last page (oscar-cli stops there)


def test_the_page_token_is_the_cursor_of_the_last_job_shown_and_empty_means_the_first_page() -> None:
    last = summary("upper-a", JobStatus.SUCCEEDED, "2026-12-04T10:00:01Z")
    token = format_cursor(cursor_of(last))
    assert page_cursor(token) == (datetime(2026, 12, 4, 10, 0, 1, tzinfo=UTC), "upper-a")
    assert page_cursor("") is None  # what oscar-python's list_jobs sends for the first page
    for bad in ("2", "next", "2026-12-04T10:00:01Z/", "yesterday/upper-a"):
        with pytest.raises(BadPageError, match=repr(bad)):
            page_cursor(bad)


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        ("true", True),
        ("1", True),
        ("t", True),
        ("TRUE", True),
        ("True", True),
        ("false", False),
        ("0", False),
        ("", False),
        ("yes", False),  # strconv.ParseBool refuses it, and OSCAR then reads false
        ("tRUE", False),
    ],
)
def test_the_all_flag_is_read_as_go_s_parse_bool_reads_it(text: str, meant: bool) -> None:
    assert go_bool(text) is meant


def test_a_delete_is_answered_from_the_exit_code() -> None:
    assert deletion_answer(EXIT_OK, "", ["deleted 1 job(s) and 1 record(s)"]).status_code == 204
    missing = deletion_answer(EXIT_NOT_FOUND, "error: no Job 'x' ...", ["deleted 0 job(s) and 0 record(s)"])
    assert (missing.status_code, missing.body) == (404, b"")
    lines = [
        "skip job upper-a: not finished, and serve runs it",
        "deleted 0 job(s) and 0 record(s), 1 skipped",
    ]
    skipped = deletion_answer(EXIT_SKIPPED, "", lines)
    assert (skipped.status_code, skipped.body) == (409, lines[0].encode())
    failed = deletion_answer(
        EXIT_FAILED, "error: the store failed\nstopped", ["delete job upper-a (succeeded)"]
    )
    assert failed.status_code == 500
    assert failed.body == b"delete job upper-a (succeeded)\nerror: the store failed\nstopped"


class OneService(ServiceCatalog):
    """A catalog that has the service `upper` only: no store."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "bucketrun-api")

    async def get(self, name: str) -> dict[str, Any]:
        if name != "upper":
            raise UnknownServiceError(name)
        return {"name": "upper"}


@pytest.fixture
def api() -> Iterator[TestClient]:
    # A store and a cluster nothing answers at: these requests must be refused before either is asked.
    settings = Settings(
        storage={"endpoint": "127.0.0.1:9", "access_key": "k", "secret_key": "s"},
        cluster={"namespace": "jobs", "kubeconfig": "/nonexistent/kubeconfig"},
    )
    with TestClient(
        create_app(settings, ApiSettings(username=USER, password=PASSWORD), OneService(settings))
    ) as client:
        yield client


ROUTES = [
    ("GET", "/system/logs/upper"),
    ("GET", "/system/logs/upper/upper-a"),
    ("DELETE", "/system/logs/upper/upper-a"),
    ("DELETE", "/system/logs/upper"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_logs_route_needs_the_credential(api: TestClient, method: str, path: str) -> None:
    answer = api.request(method, path, auth=(USER, "wrong"))
    assert (answer.status_code, answer.text) == (401, "")


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_service_the_api_did_not_apply_is_a_bare_404(api: TestClient, method: str, path: str) -> None:
    answer = api.request(method, path.replace("/upper", "/nobody", 1), auth=AUTH)
    assert (answer.status_code, answer.text) == (404, "")


def test_a_page_token_no_page_gave_is_a_400_naming_it(api: TestClient) -> None:
    answer = api.get("/system/logs/upper", params={"page": "page-2"}, auth=AUTH)
    assert answer.status_code == 400
    assert "'page-2'" in answer.text


def test_the_openapi_document_describes_oscar_s_job_list() -> None:
    settings = Settings(storage={"endpoint": "127.0.0.1:9", "access_key": "k", "secret_key": "s"})
    schema = create_app(
        settings, ApiSettings(username=USER, password=PASSWORD), OneService(settings)
    ).openapi()
    listing = schema["paths"]["/system/logs/{service}"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/JobsResponse"
    )
    info = schema["components"]["schemas"]["JobInfo"]
    assert info["properties"]["status"]["enum"] == ["Pending", "Running", "Succeeded", "Failed"]
    assert set(info["properties"]) == {"status", "creation_time", "start_time", "finish_time"}
    removal = schema["paths"]["/system/logs/{service}"]["delete"]
    assert [parameter["name"] for parameter in removal["parameters"]] == ["service", "all"]
