"""The stager's configuration: the environment the Job template gives each stager container.

The variable names and value shapes are the ones ``dispatcher/rendering/context.py`` renders (documented
in ``job_templates/README.md``). Parsing is pure (a mapping in, a frozen object out) and every error names
the variable at fault, never its value: the values are presigned grants.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from job_templates.stager.contract import (
    DEFAULT_RUN_START_TIMEOUT,
    DOWNLOAD_INPUT,
    GRANTS_EXPIRE,
    INPUT_FILE_PATH,
    INPUT_URL,
    MOUNT,
    OUTPUTS,
    OUTPUTS_MANIFEST_URL,
    RUN_START_TIMEOUT,
    STATE_DIR,
    TMP_INPUT_DIR,
    TMP_OUTPUT_DIR,
    UPLOAD_OUTPUTS,
)


class ConfigError(ValueError):
    """The stager's environment is missing a variable or holds a malformed one (named in the message)."""


class UploadWhen(enum.Enum):
    """When stage-out uploads the script's outputs (``BUCKETRUN_UPLOAD_OUTPUTS``)."""

    ON_SUCCESS = "on_success"
    """Only when the script exited 0 (the default of every service)."""
    ALWAYS = "always"
    """Whatever the script left, however it ended."""


@dataclass(frozen=True)
class OutputTarget:
    """One output path and its presigned POST policy. ``url`` and ``fields`` never appear in a repr."""

    provider: str
    bucket: str
    folder: str
    prefix: tuple[str, ...]
    suffix: tuple[str, ...]
    url: str = field(repr=False)
    fields: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class MountObject:
    """One object of the service's ``mount``: its path under the mount directory, size and presigned GET."""

    path: str
    size: int
    url: str = field(repr=False)


@dataclass(frozen=True)
class MountConfig:
    """The service's ``mount`` (``BUCKETRUN_MOUNT``): what to stage where, within which bound, or why not."""

    directory: Path
    max_bytes: int
    objects: tuple[MountObject, ...]
    refused: str | None


@dataclass(frozen=True)
class StageInConfig:
    """What stage-in needs: where the input comes from and where it and the shared directories go."""

    input_url: str | None = field(repr=False)
    """The presigned GET of the input; None under ``file_stage_in`` (nothing to download)."""
    input_file: Path
    input_dir: Path
    output_dir: Path
    state_dir: Path
    mount: MountConfig | None = None
    """The service's ``mount`` to stage first; None when it has none."""


@dataclass(frozen=True)
class StageOutConfig:
    """What stage-out needs: the grants per output, the upload rule and the shared directories."""

    outputs: tuple[OutputTarget, ...]
    upload: UploadWhen
    output_dir: Path
    state_dir: Path
    grants_expire: datetime
    run_start_timeout: float = DEFAULT_RUN_START_TIMEOUT
    """Seconds to wait for the run container to start before giving up (optional variable)."""
    manifest_url: str | None = field(default=None, repr=False)
    """Presigned PUT of the outputs manifest in the Job's record (None: a Job rendered without one)."""


def stage_in_config(env: Mapping[str, str]) -> StageInConfig:
    """Read stage-in's configuration from ``env``; ``ConfigError`` names a missing or bad variable."""
    download = env.get(DOWNLOAD_INPUT, "true") != "false"
    return StageInConfig(
        input_url=_required(env, INPUT_URL) if download else None,
        input_file=_path(env, INPUT_FILE_PATH),
        input_dir=_path(env, TMP_INPUT_DIR),
        output_dir=_path(env, TMP_OUTPUT_DIR),
        state_dir=_path(env, STATE_DIR),
        mount=parse_mount(env[MOUNT]) if env.get(MOUNT) else None,
    )


def parse_mount(text: str) -> MountConfig:
    """The ``BUCKETRUN_MOUNT`` JSON; errors name the field, never a grant."""
    try:
        document = json.loads(text)
    except ValueError:
        raise ConfigError(f"{MOUNT} is not valid JSON") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{MOUNT} must be a JSON object, got {type(document).__name__}")
    directory = document.get("directory")
    if not isinstance(directory, str) or not directory.startswith("/"):
        raise ConfigError(f"{MOUNT}.directory must be an absolute path")
    max_bytes = document.get("max_bytes")
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise ConfigError(f"{MOUNT}.max_bytes must be a byte count")
    refused = document.get("refused")
    if refused is not None and not isinstance(refused, str):
        raise ConfigError(f"{MOUNT}.refused must be a string or null")
    entries = document.get("objects", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{MOUNT}.objects must be a list")
    return MountConfig(
        Path(directory), max_bytes, tuple(_mount_object(i, e) for i, e in enumerate(entries)), refused
    )


def _mount_object(index: int, entry: Any) -> MountObject:
    where = f"{MOUNT}.objects[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be an object")
    path, size, url = entry.get("path"), entry.get("size"), entry.get("url")
    if not isinstance(path, str) or not isinstance(url, str):
        raise ConfigError(f"{where}.path and .url must be strings")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ConfigError(f"{where}.size must be a byte count")
    return MountObject(path, size, url)


def stage_out_config(env: Mapping[str, str]) -> StageOutConfig:
    """Read stage-out's configuration from ``env``; ``ConfigError`` names a missing or bad variable."""
    upload = _required(env, UPLOAD_OUTPUTS)
    try:
        when = UploadWhen(upload)
    except ValueError:
        choices = ", ".join(w.value for w in UploadWhen)
        raise ConfigError(f"{UPLOAD_OUTPUTS} must be one of {choices}, got {upload!r}") from None
    return StageOutConfig(
        outputs=parse_outputs(_required(env, OUTPUTS)),
        upload=when,
        output_dir=_path(env, TMP_OUTPUT_DIR),
        state_dir=_path(env, STATE_DIR),
        grants_expire=parse_expiry(_required(env, GRANTS_EXPIRE)),
        run_start_timeout=parse_seconds(env.get(RUN_START_TIMEOUT) or str(DEFAULT_RUN_START_TIMEOUT)),
        manifest_url=env.get(OUTPUTS_MANIFEST_URL) or None,
    )


def parse_seconds(text: str) -> float:
    """A positive, finite number of seconds (``BUCKETRUN_RUN_START_TIMEOUT``)."""
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(f"{RUN_START_TIMEOUT} must be a number of seconds, got {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{RUN_START_TIMEOUT} must be a positive number of seconds, got {text!r}")
    return seconds


def parse_expiry(text: str) -> datetime:
    """An RFC 3339 instant (``2026-01-02T03:04:05Z``) as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{GRANTS_EXPIRE} must be an RFC 3339 time, got {text!r}") from None
    if moment.tzinfo is None:
        raise ConfigError(f"{GRANTS_EXPIRE} must carry a time zone, got {text!r}")
    return moment.astimezone(UTC)


def parse_outputs(text: str) -> tuple[OutputTarget, ...]:
    """The ``BUCKETRUN_OUTPUTS`` JSON list; errors name the entry and field, not the grant's values."""
    try:
        document = json.loads(text)
    except ValueError:
        raise ConfigError(f"{OUTPUTS} is not valid JSON") from None
    if not isinstance(document, list):
        raise ConfigError(f"{OUTPUTS} must be a JSON list, got {type(document).__name__}")
    return tuple(_output(index, entry) for index, entry in enumerate(document))


def _output(index: int, entry: Any) -> OutputTarget:
    where = f"{OUTPUTS}[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be an object, got {type(entry).__name__}")

    def text(name: str) -> str:
        value = entry.get(name)
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{name} must be a string")
        return value

    def strings(name: str) -> tuple[str, ...]:
        value = entry.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}.{name} must be a list of strings")
        return tuple(value)

    fields = entry.get("fields", {})
    if not isinstance(fields, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
    ):
        raise ConfigError(f"{where}.fields must be an object of strings")
    if not text("bucket"):
        raise ConfigError(f"{where}.bucket must not be empty")
    return OutputTarget(
        provider=text("provider"),
        bucket=text("bucket"),
        folder=text("folder").strip("/"),
        prefix=strings("prefix"),
        suffix=strings("suffix"),
        url=text("url"),
        fields=dict(fields),
    )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def _path(env: Mapping[str, str], name: str) -> Path:
    path = Path(_required(env, name))
    if not path.is_absolute():
        raise ConfigError(f"{name} must be an absolute path, got {str(path)!r}")
    return path
