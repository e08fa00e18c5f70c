"""Where Jobs run, behind one small interface (``Executor``): the cluster, or local processes.

``kubernetes`` (production) creates Jobs through the API server; ``local`` (the embedded default) runs
the same rendered pod as local processes. Import the one you need from its module
(``dispatcher.executors.kubernetes`` imports the Kubernetes client; ``local`` does not).
"""

from __future__ import annotations

from dispatcher.domain.jobs import CreateOutcome
from dispatcher.executors.base import Executor

__all__ = ["CreateOutcome", "Executor"]
