"""``python -m job_templates.stager in|out``: the stager containers of every bucketrun pod.

- ``in`` (the ``stage-in`` init container) creates the shared input, output and state directories and
  downloads the input object through its presigned GET URL to ``INPUT_FILE_PATH`` (nothing when
  ``BUCKETRUN_DOWNLOAD_INPUT=false``: the service's ``file_stage_in``, the script downloads it).
- ``out`` (the ``stage-out`` container, running beside ``run``) waits until the wrapper records the
  script's exit code, or until the run container's process is gone without one, then uploads the
  outputs through presigned POST policies and writes ``outputs.json``. A run container that never
  starts (no ``run.pid`` within ``BUCKETRUN_RUN_START_TIMEOUT``) ends it with nothing uploaded.

The stager holds no storage credentials, only the expiring grants in its environment, and never prints
them. Exit codes: see ``job_templates.stager.contract``. The mechanism is explained in
``job_templates/README.md``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from job_templates.stager.completion import Watcher
from job_templates.stager.config import ConfigError, stage_in_config, stage_out_config
from job_templates.stager.contract import EXIT_FAILED
from job_templates.stager.report import Reporter
from job_templates.stager.stage_in import stage_in
from job_templates.stager.stage_out import stage_out

USAGE = "usage: python -m job_templates.stager in|out"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the stage named by ``argv[0]`` (``in`` or ``out``) with ``env``; the process's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if env is None else env
    if args not in (["in"], ["out"]):
        sys.stderr.write(f"{USAGE}\n")
        return 2
    report = Reporter(f"bucketrun stage-{args[0]}")
    try:
        if args == ["in"]:
            return stage_in(stage_in_config(environ), report)
        config = stage_out_config(environ)
        watcher = Watcher(
            config.state_dir, expires_at=config.grants_expire, start_timeout=config.run_start_timeout
        )
        return stage_out(config, report, watcher)
    except ConfigError as error:  # only the parsing raises it: the stages report their own failures
        report(f"bad configuration: {error}")
        return EXIT_FAILED
