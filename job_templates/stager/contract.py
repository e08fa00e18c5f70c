"""The pod contract: what the Job template, the stager and the watcher agree on, spelled once.

The stager (this package) owns it because it is the one side that runs alone, inside the Job's image,
with the standard library only. Rendering (``dispatcher/rendering``) writes these names into every Job
and the watcher reads these exit codes and report lines back; both import them from here.

Exit codes of the stager containers (the watcher reads them from the pod's status):

| container | code | meaning |
|---|---|---|
| stage-in | 0 | the input is in place |
| stage-in | 1 | a transient failure outlasted the retries (the Job's backoffLimit may retry the pod) |
| stage-in | 64 | the input object does not exist (404): the pod failure policy fails the Job at once |
| stage-in | 65 | the grant was refused or expired (401/403), or the input may not be written where asked |
| stage-in | 66 | the ``mount`` folder cannot be staged (over its bounds, unlistable, an object refused) |
| stage-out | 0 | every upload due succeeded (or none was due: the script failed under ``on_success``) |
| stage-out | 2 | an upload failed after its retries (what did succeed is in ``outputs.json``) |
| stage-out | 3 | the run container ended without an exit code (killed), or the grants expired first |
| stage-out | 4 | the run container never started within ``BUCKETRUN_RUN_START_TIMEOUT``: nothing uploaded |
| both | 1 | the stager's environment is incomplete or malformed |
"""

from __future__ import annotations

from typing import Final

# The containers of every bucketrun pod.
CONTAINER_STAGE_IN: Final = "stage-in"
CONTAINER_RUN: Final = "run"
CONTAINER_STAGE_OUT: Final = "stage-out"

# The stager's environment (names; the value shapes are in job_templates/README.md).
INPUT_URL: Final = "BUCKETRUN_INPUT_URL"
"""The presigned GET of the input object: stage-in's, or the script's own under ``file_stage_in``."""
DOWNLOAD_INPUT: Final = "BUCKETRUN_DOWNLOAD_INPUT"
"""``false``: stage-in downloads nothing (the service's ``file_stage_in``); otherwise, or unset, it does."""
MOUNT: Final = "BUCKETRUN_MOUNT"
"""JSON: the ``mount`` directory, byte bound and objects (path, size, presigned GET), or a refusal."""
MOUNT_DIR: Final = "BUCKETRUN_MOUNT_DIR"
"""The mount directory, ``/mnt/<bucket>/<folder>``, for the script (the local executor rewrites it)."""
INPUT_FILE_PATH: Final = "INPUT_FILE_PATH"
TMP_INPUT_DIR: Final = "TMP_INPUT_DIR"
TMP_OUTPUT_DIR: Final = "TMP_OUTPUT_DIR"
STATE_DIR: Final = "BUCKETRUN_STATE_DIR"
OUTPUTS: Final = "BUCKETRUN_OUTPUTS"
OUTPUTS_MANIFEST_URL: Final = "BUCKETRUN_OUTPUTS_MANIFEST_URL"
UPLOAD_OUTPUTS: Final = "BUCKETRUN_UPLOAD_OUTPUTS"
GRANTS_EXPIRE: Final = "BUCKETRUN_GRANTS_EXPIRE"
RUN_START_TIMEOUT: Final = "BUCKETRUN_RUN_START_TIMEOUT"

DEFAULT_RUN_START_TIMEOUT: Final = 900
"""Seconds stage-out waits for the run container to start when its Job does not say
(``BUCKETRUN_RUN_START_TIMEOUT``): an image pull, with the kubelet's retries, fits in 15 minutes."""

# Exit codes.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_UPLOAD_FAILED: Final = 2
EXIT_RUN_KILLED: Final = 3
EXIT_RUN_NEVER_STARTED: Final = 4
EXIT_INPUT_MISSING: Final = 64
"""stage-in: the input object does not exist; no retry can fix it (the pod failure policy fails the Job)."""
EXIT_INPUT_FORBIDDEN: Final = 65
"""stage-in: the grant was refused or expired; no retry can fix it either."""
EXIT_MOUNT_REFUSED: Final = 66
"""stage-in: the service's ``mount`` cannot be staged (over the size or object bound, unlistable, a grant
refused); its log says why, and the pod failure policy fails the Job without retries."""

# Report lines: stage-out prints one JSON object per upload, ``{"event": UPLOADED_EVENT, ...}``.
UPLOADED_EVENT: Final = "uploaded"


def filters_accept(relative: str, prefix: tuple[str, ...], suffix: tuple[str, ...]) -> bool:
    """OSCAR's rule for an output path's filters: ``relative`` starts with any ``prefix`` and ends with
    any ``suffix`` (empty = any). The service definitions check paths with it; stage-out applies it."""
    return (not prefix or relative.startswith(prefix)) and (not suffix or relative.endswith(suffix))
