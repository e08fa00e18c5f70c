"""Stage-out (a container beside ``run``): wait for the script, then upload its outputs.

Every regular file under ``TMP_OUTPUT_DIR`` goes to every output whose filters accept its relative path,
as ``<output folder>/<relative path>``, through that output's presigned POST policy. What was uploaded is
listed in ``$BUCKETRUN_STATE_DIR/outputs.json`` (``[{"bucket", "key", "size"}]``, one object per line) and,
through the presigned PUT in ``BUCKETRUN_OUTPUTS_MANIFEST_URL``, as ``outputs.json`` in the Job's record
folder: the watcher takes the record's output keys from there, complete, however many there are and
however long the log.
"""

from __future__ import annotations

import json
import mimetypes
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from job_templates.stager.completion import Expired, Finished, Killed, NeverStarted, Verdict, Watcher
from job_templates.stager.config import OutputTarget, StageOutConfig, UploadWhen
from job_templates.stager.contract import (
    EXIT_OK,
    EXIT_RUN_KILLED,
    EXIT_RUN_NEVER_STARTED,
    EXIT_UPLOAD_FAILED,
    UPLOADED_EVENT,
)
from job_templates.stager.multipart import form_envelope
from job_templates.stager.paths import (
    OutputFile,
    UnsafePathError,
    open_output,
    output_key,
    real_dir,
    scan_outputs,
    targets_for,
)
from job_templates.stager.redact import url_secrets
from job_templates.stager.report import Reporter
from job_templates.stager.transfer import (
    RetryPolicy,
    TransferError,
    TransientTransferError,
    post_file,
    put_bytes,
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
    if config.manifest_url is not None:
        report.redactor.add(url_secrets(config.manifest_url))
    policy = policy or RetryPolicy()
    verdict = watcher.wait()
    report(describe(verdict))
    result = UploadReport()
    if should_upload(verdict, config.upload):
        result = upload_all(config, report, policy)
    elif isinstance(verdict, Expired):
        report("nothing uploaded: the grants have expired")
    elif isinstance(verdict, NeverStarted):
        report("nothing uploaded: the script never ran")
    else:
        report(f"nothing uploaded: outputs are uploaded only on success ({config.upload.value})")
    document = manifest_bytes(result.uploaded)
    try:
        write_manifest(config.state_dir / MANIFEST_FILE, document)
    except (OSError, UnsafePathError) as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        report(f"cannot write {MANIFEST_FILE}: {detail}")
        result.failures += 1
    if not isinstance(verdict, Expired):  # an expired grant would only be refused
        store_manifest(config.manifest_url, document, len(result.uploaded), report, policy)
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


def manifest_bytes(uploaded: Sequence[Uploaded]) -> bytes:
    """``outputs.json``: a JSON array of ``{"bucket", "key", "size"}``, one object per line.

    JSON strings escape every newline, so each object is exactly one line: a reader that has only the
    beginning of a long manifest (``watcher.records`` reads a bounded prefix) still uses every whole line.
    """
    lines = [
        json.dumps({"bucket": u.bucket, "key": u.key, "size": u.size}, ensure_ascii=False) for u in uploaded
    ]
    return ("[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n").encode("utf-8")


def store_manifest(
    url: str | None, document: bytes, count: int, report: Reporter, policy: RetryPolicy
) -> None:
    """PUT the manifest into the Job's record folder (retrying transient failures). A failure is reported,
    not fatal: the outputs themselves are in place, and the record then says its list came from the log."""
    if url is None:
        report("no grant for the outputs list in the job record: the record takes it from this log")
        return

    def retrying(error: TransientTransferError, delay: float) -> None:
        report(f"storing the outputs list failed ({error}); retrying in {delay:.1f} s")

    try:
        with_retries(
            lambda: put_bytes(url, document, content_type="application/json", timeout=policy.timeout),
            policy,
            on_retry=retrying,
        )
    except TransferError as error:
        report(f"FAILED to store the outputs list in the job record: {error}")
        return
    report(f"stored the list of {count} uploaded object(s) in the job record")


def write_manifest(path: Path, document: bytes) -> None:
    """Write ``outputs.json`` (``manifest_bytes``) atomically (temporary file, then rename), readable by
    every UID."""
    # The script shares the volume: a state dir it replaced by a symlink must not move the write.
    directory = real_dir(path.parent, "BUCKETRUN_STATE_DIR")
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".outputs-")
    try:
        with os.fdopen(descriptor, "wb") as sink:
            sink.write(document)
            os.fchmod(sink.fileno(), 0o644)
        Path(temporary).replace(directory / path.name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
