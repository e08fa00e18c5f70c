"""Exit codes of the stager containers, spelled once (the watcher reads them from the pod's status).

| container | code | meaning |
|---|---|---|
| stage-in | 0 | the input is in place |
| stage-in | 1 | a transient failure outlasted the retries (the Job's backoffLimit may retry the pod) |
| stage-in | 64 | the input object does not exist (404): the pod failure policy fails the Job at once |
| stage-in | 65 | the grant was refused or expired (401/403), or the input may not be written where asked |
| stage-out | 0 | every upload due succeeded (or none was due: the script failed under ``on_success``) |
| stage-out | 2 | an upload failed after its retries (what did succeed is in ``outputs.json``) |
| stage-out | 3 | the run container ended without an exit code (killed), or the grants expired first |
| stage-out | 4 | the run container never started within ``BUCKETRUN_RUN_START_TIMEOUT``: nothing uploaded |
| both | 1 | the stager's environment is incomplete or malformed |
"""

from __future__ import annotations

from typing import Final

from dispatcher.domain.constants import EXIT_INPUT_FORBIDDEN, EXIT_INPUT_MISSING

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_UPLOAD_FAILED: Final = 2
EXIT_RUN_KILLED: Final = 3
EXIT_RUN_NEVER_STARTED: Final = 4

__all__ = [
    "EXIT_FAILED",
    "EXIT_INPUT_FORBIDDEN",
    "EXIT_INPUT_MISSING",
    "EXIT_OK",
    "EXIT_RUN_KILLED",
    "EXIT_RUN_NEVER_STARTED",
    "EXIT_UPLOAD_FAILED",
]
