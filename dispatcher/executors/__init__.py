"""Where Jobs run, behind one protocol (``Executor``, in ``base``): the cluster, or local processes.

``kubernetes`` (production) creates Jobs through the API server and finds the finished ones with a
list+watch (``finished_watch``); ``local`` (the embedded default) runs the same rendered pod as local
processes and keeps their state on disk. The dispatcher creates and counts through the protocol, the
watcher records through it; ``build.build_executor(settings)`` is the one place that picks one. Import
an executor from its module (``dispatcher.executors.kubernetes`` imports the Kubernetes client;
``local`` does not).
"""

from __future__ import annotations

from dispatcher.domain.jobs import CreateOutcome
from dispatcher.executors.base import Executor, FinishedJobs, JobHandler

__all__ = ["CreateOutcome", "Executor", "FinishedJobs", "JobHandler"]
