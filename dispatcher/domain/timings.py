"""How long each stage of a finished Job took, read from its own timestamps (pure).

A Job carries every instant the watcher needs: the upload's time (the dispatcher's ``event-time``
annotation), its creation, its start and its end. Stages whose ends are unknown (a Job that never
started) are None rather than guessed, so no histogram gets a made-up observation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatcher.domain import kube
from dispatcher.domain.constants import ANNOTATION_EVENT_TIME
from dispatcher.domain.jobs import api_time
from dispatcher.domain.record import finished_at


@dataclass(frozen=True, slots=True)
class JobTimings:
    """Seconds spent in each stage; None where a bound is unknown."""

    created_to_started: float | None
    started_to_finished: float | None
    finished_to_recorded: float | None
    end_to_end: float | None
    """From the upload (event time) to the record written."""


def job_timings(job: Mapping[str, Any], recorded_at: datetime) -> JobTimings:
    """The stage durations of the finished *job*, recorded at *recorded_at*."""
    event = api_time(kube.annotations(job).get(ANNOTATION_EVENT_TIME))
    created = api_time(kube.meta(job).get("creationTimestamp"))
    started = api_time(kube.job_status(job).get("startTime"))
    finished = api_time(finished_at(job))
    return JobTimings(
        created_to_started=_between(created, started),
        started_to_finished=_between(started, finished),
        finished_to_recorded=_between(finished, recorded_at),
        end_to_end=_between(event, recorded_at),
    )


def _between(start: datetime | None, end: datetime | None) -> float | None:
    # API timestamps have whole seconds: a stage can read as slightly negative; clamp those to zero.
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)
