"""Stage-in (the init container): prepare the shared directories and download the input object."""

from __future__ import annotations

from job_templates.stager.config import StageInConfig
from job_templates.stager.contract import EXIT_FAILED, EXIT_INPUT_FORBIDDEN, EXIT_INPUT_MISSING, EXIT_OK
from job_templates.stager.mount import stage_mount
from job_templates.stager.paths import UnsafePathError, checked_input_file, make_shared_dir
from job_templates.stager.redact import url_secrets
from job_templates.stager.report import Reporter
from job_templates.stager.transfer import (
    PermanentTransferError,
    RetryPolicy,
    TransferError,
    download_with_retries,
)


def download_exit_code(error: TransferError) -> int:
    """The exit code for a download that failed with ``error`` (see ``exit_codes``)."""
    if isinstance(error, PermanentTransferError):
        if error.status == 404 or error.code in {"NoSuchKey", "NoSuchBucket", "NoSuchVersion"}:
            return EXIT_INPUT_MISSING
        if error.status in {401, 403}:
            return EXIT_INPUT_FORBIDDEN
    return EXIT_FAILED


def stage_in(config: StageInConfig, report: Reporter, policy: RetryPolicy | None = None) -> int:
    """Create the shared directories (mode 0777) and download the input (nothing under ``file_stage_in``);
    the container's exit code."""
    policy = policy or RetryPolicy()
    try:
        for directory in (config.input_dir, config.output_dir, config.state_dir):
            make_shared_dir(directory)
    except UnsafePathError as error:
        report(f"refusing to prepare the work directories: {error}")
        return EXIT_INPUT_FORBIDDEN
    except OSError as error:
        report(f"cannot prepare the work directories: {error}")
        return EXIT_FAILED
    if config.mount is not None:
        # First: a mount that cannot be staged fails the Job before the input is fetched.
        code = stage_mount(config.mount, report, policy)
        if code != EXIT_OK:
            return code
    if config.input_url is None:
        report("file_stage_in: the script downloads its input itself; nothing downloaded")
        return EXIT_OK
    return _download(config.input_url, config, report, policy)


def _download(url: str, config: StageInConfig, report: Reporter, policy: RetryPolicy) -> int:
    report.redactor.add(url_secrets(url))
    try:
        destination = checked_input_file(config.input_file, config.input_dir)
        destination.parent.mkdir(parents=True, exist_ok=True)
    except UnsafePathError as error:
        report(f"refusing to download: {error}")
        return EXIT_INPUT_FORBIDDEN
    except OSError as error:
        report(f"cannot prepare the work directories: {error}")
        return EXIT_FAILED

    try:
        size = download_with_retries(url, destination, policy, announce=report)
    except TransferError as error:
        code = download_exit_code(error)
        report(f"cannot download the input object: {error} (exit code {code})")
        return code
    except OSError as error:  # the local side: a full or read-only volume
        report(f"cannot write the input file {str(destination)!r}: {error.strerror or error}")
        return EXIT_FAILED
    report(f"downloaded the input object ({size} bytes) to {destination}")
    return EXIT_OK
