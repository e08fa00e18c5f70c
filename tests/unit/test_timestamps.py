"""rfc3339: the one writer of timestamps outside the stager; api_time reads them back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from dispatcher.domain.jobs import api_time
from dispatcher.domain.timestamps import rfc3339


def test_a_moment_is_written_in_utc_with_whole_seconds_and_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 1, 2, 5, 4, 5, 999_999, tzinfo=plus_two)) == "2026-01-02T03:04:05Z"


def test_api_time_reads_back_what_rfc3339_wrote() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert api_time(rfc3339(moment)) == moment
