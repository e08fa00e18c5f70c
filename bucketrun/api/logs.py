"""OSCAR's job routes, ``/system/logs``: a service's Jobs page by page, one Job's log, and deletes.

They read where Jobs run first, then the records location, through the code ``bucketrun jobs`` runs
(``bucketrun.admin.jobs``), so a Job stays listed, with its log, after its Job and pods are gone, until
the records retention removes it. The service must be one the API applied (404 otherwise, as OSCAR
answers for a service it does not have); a Job is looked for among that service's only.

Where bucketrun answers differently from OSCAR, and why:

- Pages are newest first and ``next_page`` is bucketrun's cursor, not a Kubernetes continue token (the
  records are not in the cluster); a token never expires, and one that no page gave is a 400 naming it.
- ``creation_time`` is the Job's creation (OSCAR gives its pod's start), ``start_time`` and
  ``finish_time`` the Job's; a Job without a pod yet is ``Pending`` (OSCAR says ``Suspended``).
- The log is the ``run`` container's (OSCAR's ``oscar-container``), from the pod while it exists, else
  the copy its record keeps; OSCAR answers 404 once the pod is gone. ``timestamps`` is not served.
- Deleting removes the Job with its pods and its record, so it leaves the list as it does in OSCAR.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from bucketrun.admin.jobs import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SKIPPED,
    RUN_CONTAINER,
    Cursor,
    Page,
    delete_jobs,
    format_cursor,
    newest_jobs,
    read_cursor,
    read_logs,
    record_store,
)
from bucketrun.api.catalog import ServiceCatalog
from bucketrun.api.oscar_types import JobInfo, JobPhase, JobsResponse
from bucketrun.api.settings import ApiSettings
from dispatcher.domain.jobs import api_time
from dispatcher.executors.admin import JobStatus, JobSummary
from dispatcher.executors.build import job_admin_of
from dispatcher.runtime.settings import Settings

OSCAR_STATUS: Final[dict[JobStatus, JobPhase]] = {
    JobStatus.PENDING: "Pending",
    JobStatus.RUNNING: "Running",
    JobStatus.SUCCEEDED: "Succeeded",
    JobStatus.FAILED: "Failed",
}
"""bucketrun's statuses in OSCAR's words (its pod phases, which ``oscar-cli service logs list
--status`` filters on)."""
_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_Answers = dict[int | str, dict[str, Any]]
_TEXT: Final = {"text/plain": {"schema": {"type": "string"}}}
_NOT_FOUND: Final[_Answers] = {404: {"description": "No such service, or no such Job of it; no body"}}
_BAD_PAGE: Final[_Answers] = {400: {"description": "A page token no page gave, named", "content": _TEXT}}
_LEFT_ALONE: Final[_Answers] = {
    409: {"description": "Jobs left alone (a running serve's local executor holds them)", "content": _TEXT}
}


class BadPageError(ValueError):
    """A ``page`` token no page gave."""


def oscar_time(value: str | None) -> datetime | None:
    """A Kubernetes or record time in UTC, whole seconds (how ``metav1.Time`` writes it); None when
    absent or unreadable."""
    moment = api_time(value)
    return None if moment is None else moment.astimezone(UTC).replace(microsecond=0)


def job_info(summary: JobSummary) -> JobInfo:
    """One Job as OSCAR lists it."""
    return JobInfo(
        status=OSCAR_STATUS[summary.status],
        creation_time=oscar_time(summary.created),
        start_time=oscar_time(summary.started),
        finish_time=oscar_time(summary.finished),
    )


def jobs_response(page: Page, token: str | None) -> JobsResponse:
    """*page* as OSCAR's list, newest first, with *token* (the next page's) as ``next_page``."""
    return JobsResponse(jobs={summary.name: job_info(summary) for summary in page.jobs}, next_page=token)


def page_cursor(page: str) -> Cursor | None:
    """Where the page OSCAR's ``page`` parameter names starts: None (the first) when empty;
    ``BadPageError`` for a token no page gave."""
    if not page:
        return None
    cursor = read_cursor(page)
    if cursor is None:
        raise BadPageError(f"page {page!r} is not a next_page token of this API's job lists")
    return cursor


def go_bool(text: str) -> bool:
    """A query flag read as OSCAR reads it (Go's ``strconv.ParseBool``, anything unreadable false)."""
    return text in _GO_TRUE


def deletion_answer(code: int, message: str, lines: Sequence[str]) -> Response:
    """The answer to a delete from ``delete_jobs``' exit code: 204 when done, 404 when the Job is in
    neither place, 409 with the reasons when a Job had to be left alone, 500 with what was done before
    the failure."""
    if code == EXIT_OK:
        return Response(status_code=204)
    if code == EXIT_NOT_FOUND:
        return Response(status_code=404)
    if code == EXIT_SKIPPED:
        skipped = [line for line in lines if line.startswith("skip job ")]
        return PlainTextResponse("\n".join(skipped), status_code=409)
    return PlainTextResponse("\n".join([*lines, message]), status_code=500)


def logs_router(settings: Settings, api: ApiSettings, services: ServiceCatalog) -> APIRouter:
    """The ``/system/logs`` routes over *settings*' cluster and records, for *services*' services."""
    router = APIRouter()

    @router.get(
        "/system/logs/{service}",
        response_model=JobsResponse,
        response_model_exclude_none=True,
        responses={**_NOT_FOUND, **_BAD_PAGE},
    )
    async def list_jobs(service: str, page: str = "") -> JobsResponse | Response:
        """A page of the service's Jobs, newest first; ``next_page`` is the next page's ``page``."""
        await services.get(service)
        try:
            before = page_cursor(page)
        except BadPageError as error:
            return PlainTextResponse(str(error), status_code=400)
        async with job_admin_of(settings.cluster) as admin:
            found = await newest_jobs(
                admin, record_store(settings), service=service, limit=api.job_listing_limit, before=before
            )
        token = None if found.next is None else format_cursor(found.next)
        return jobs_response(found, token)

    @router.get("/system/logs/{service}/{job}", response_class=PlainTextResponse, responses=_NOT_FOUND)
    async def job_log(service: str, job: str) -> Response:
        """The log of the Job's ``run`` container: from its pod, else from its record."""
        await services.get(service)
        async with job_admin_of(settings.cluster) as admin:
            logs = await read_logs(admin, record_store(settings), job, service=service)
        text = logs.texts.get(RUN_CONTAINER)
        return Response(status_code=404) if text is None else PlainTextResponse(text)

    @router.delete("/system/logs/{service}/{job}", status_code=204, responses={**_NOT_FOUND, **_LEFT_ALONE})
    async def delete_job(service: str, job: str) -> Response:
        """Delete the Job, running or not, with its pods and its record."""
        await services.get(service)
        lines: list[str] = []
        message, code = await delete_jobs(
            settings, [job], service=service, records=True, force=True, emit=lines.append
        )
        return deletion_answer(code, message, lines)

    @router.delete("/system/logs/{service}", status_code=204, responses={**_NOT_FOUND, **_LEFT_ALONE})
    async def delete_service_jobs(
        service: str,
        every: Annotated[
            str, Query(alias="all", description="true: every Job, running ones too; else the succeeded")
        ] = "false",
    ) -> Response:
        """Delete the service's succeeded Jobs (every one with ``all=true``), with pods and records."""
        await services.get(service)
        lines: list[str] = []
        status = "all" if go_bool(every) else "succeeded"
        message, code = await delete_jobs(
            settings, service=service, status=status, records=True, force=True, emit=lines.append
        )
        return deletion_answer(code, message, lines)

    return router
