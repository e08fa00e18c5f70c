"""Stage-out (a container beside ``run``): wait for the script, then upload its outputs.

Every regular file under ``TMP_OUTPUT_DIR`` goes to every output whose filters accept its relative path,
as ``<output folder>/<relative path>``, through that output's presigned POST policy. What was uploaded is
listed in ``$BUCKETRUN_STATE_DIR/outputs.json`` (``[{"bucket", "key", "size"}]``).
"""

from __future__ import annotations

import json
import mimetypes
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from watcher.staging.completion import Expired, Finished, Killed, NeverStarted, Verdict, Watcher
from watcher.staging.config import OutputTarget, StageOutConfig, UploadWhen
from watcher.staging.exit_codes import (
    EXIT_OK,
    EXIT_RUN_KILLED,
    EXIT_RUN_NEVER_STARTED,
    EXIT_UPLOAD_FAILED,
)
from watcher.staging.multipart import form_envelope
from watcher.staging.paths import (
    OutputFile,
    UnsafePathError,
    open_output,
    output_key,
    real_dir,
    scan_outputs,
    targets_for,
)
from watcher.staging.redact import url_secrets
from watcher.staging.report import UPLOADED_EVENT, Reporter
from watcher.staging.transfer import (
    RetryPolicy,
    TransferError,
    TransientTransferError,
    post_file,
    with_retries,
)

MANIFEST_FILE: Final = "outputs.json"
_DEFAULT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Uploaded:
    """One object stage-out wrote."""

    bucket: str
    key: str
    size: int


@dataclass
class UploadReport:
    """What the uploads came to: the objects written, and how many uploads failed."""

    uploaded: list[Uploaded] = field(default_factory=list)
    failures: int = 0


def should_upload(verdict: Verdict, when: UploadWhen) -> bool:
    """Whether the outputs are uploaded after the run container ended as ``verdict``."""
    if isinstance(verdict, Expired | NeverStarted):
        return False  # the grants no longer work; the script never ran
    if when is UploadWhen.ALWAYS:
        return True
    return isinstance(verdict, Finished) and verdict.exit_code == 0


def stage_out_exit_code(verdict: Verdict, upload_failures: int) -> int:
    """The container's exit code: a failed upload first, then a run that ended without an exit code."""
    if upload_failures:
        return EXIT_UPLOAD_FAILED
    if isinstance(verdict, NeverStarted):
        return EXIT_RUN_NEVER_STARTED
    if isinstance(verdict, Killed | Expired):
        return EXIT_RUN_KILLED
    return EXIT_OK


def describe(verdict: Verdict) -> str:
    """A line saying how the run container ended."""
    if isinstance(verdict, Finished):
        return f"the script exited with code {verdict.exit_code}"
    if isinstance(verdict, Killed):
        return f"the run container's process {verdict.pid} ended without an exit code (killed)"
    if isinstance(verdict, NeverStarted):
        return (
            f"the run container did not start within {verdict.waited:.0f} s (no run.pid, no exit code): "
            "its image cannot be pulled, a Secret, ConfigMap or key it needs is missing, or it cannot run"
        )
    return "the grants expired before the script ended"


def stage_out(
    config: StageOutConfig, report: Reporter, watcher: Watcher, policy: RetryPolicy | None = None
) -> int:
    """Wait for the run container, upload as ``config.upload`` says, write the manifest; the exit code."""
    for target in config.outputs:
        report.redactor.add([*url_secrets(target.url), *target.fields.values()])
    verdict = watcher.wait()
    report(describe(verdict))
    result = UploadReport()
    if should_upload(verdict, config.upload):
        result = upload_all(config, report, policy or RetryPolicy())
    elif isinstance(verdict, Expired):
        report("nothing uploaded: the grants have expired")
    elif isinstance(verdict, NeverStarted):
        report("nothing uploaded: the script never ran")
    else:
        report(f"nothing uploaded: outputs are uploaded only on success ({config.upload.value})")
    try:
        write_manifest(config.state_dir / MANIFEST_FILE, result.uploaded)
    except (OSError, UnsafePathError) as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        report(f"cannot write {MANIFEST_FILE}: {detail}")
        result.failures += 1
    if result.failures:
        report(f"{result.failures} upload(s) failed")
    return stage_out_exit_code(verdict, result.failures)


def upload_all(config: StageOutConfig, report: Reporter, policy: RetryPolicy) -> UploadReport:
    """Upload every file under ``TMP_OUTPUT_DIR`` to each output that accepts it."""
    result = UploadReport()
    files, skipped = scan_outputs(config.output_dir)
    for item in skipped:
        if item.unreadable:
            result.failures += 1
            report(f"FAILED to read {item.relative!r}: {item.reason}")
        else:
            report(f"skipped {item.relative!r}: {item.reason}")
    for file in files:
        targets = targets_for(file.relative, config.outputs)
        if not targets:
            report(f"skipped {file.relative!r}: no output path's prefix/suffix filters accept it")
        for target in targets:
            try:
                result.uploaded.append(upload_one(file, target, config.output_dir, report, policy))
            except (TransferError, ValueError, OSError) as error:  # ValueError: UnsafePathError, a bad form
                result.failures += 1
                detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                report(f"FAILED to upload {file.relative!r} to bucket {target.bucket!r}: {detail}")
    return result


def upload_one(
    file: OutputFile, target: OutputTarget, output_dir: Path, report: Reporter, policy: RetryPolicy
) -> Uploaded:
    """POST ``file`` to ``target`` (retrying transient failures); the object written."""
    key = output_key(target.folder, file.relative)
    envelope = form_envelope(target.fields, key=key, file_type=content_type(file.relative))
    descriptor = open_output(file, output_dir)
    try:
        size = os.fstat(descriptor).st_size

        def retrying(error: TransientTransferError, delay: float) -> None:
            report(f"upload of {file.relative!r} failed ({error}); retrying in {delay:.1f} s")

        status = with_retries(
            lambda: post_file(target.url, envelope, descriptor, size, timeout=policy.timeout),
            policy,
            on_retry=retrying,
        )
    finally:
        os.close(descriptor)
    report(f"uploaded {file.relative!r} ({size} bytes) to bucket {target.bucket!r} as {key!r}, HTTP {status}")
    report.event(UPLOADED_EVENT, bucket=target.bucket, key=key, size=size)
    return Uploaded(target.bucket, key, size)


def content_type(relative: str) -> str:
    """The Content-Type an output is stored with, guessed from its name."""
    guessed, _ = mimetypes.guess_type(relative, strict=False)
    return guessed or _DEFAULT_TYPE


def write_manifest(path: Path, uploaded: list[Uploaded]) -> None:
    """Write ``outputs.json`` atomically (temporary file, then rename), readable by every UID."""
    document = [{"bucket": u.bucket, "key": u.key, "size": u.size} for u in uploaded]
    # The script shares the volume: a state dir it replaced by a symlink must not move the write.
    directory = real_dir(path.parent, "BUCKETRUN_STATE_DIR")
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".outputs-")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as sink:
            json.dump(document, sink, ensure_ascii=False, indent=1)
            os.fchmod(sink.fileno(), 0o644)
        Path(temporary).replace(directory / path.name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
