"""The API's own settings (``BUCKETRUN_API__*``), beside the dispatcher's ``Settings`` it also loads."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.fdl.names import check_bucket_name

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024


class ApiSettings(BaseSettings):
    """Who may call the API and how much it reads."""

    model_config = SettingsConfigDict(
        env_prefix="BUCKETRUN_API__", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    username: str = Field(min_length=1)
    """HTTP basic user every route but ``/health`` requires (OSCAR's ``OSCAR_USERNAME``). Required."""
    password: SecretStr = Field(min_length=1)
    """Its password (OSCAR's ``OSCAR_PASSWORD``). Required."""
    store_access_key: SecretStr | None = Field(default=None, min_length=3, max_length=20)
    """Access key of the MinIO user the API creates for its users and serves in ``/system/config``
    (put-file, get-file): it may read and write only the input and output folders of the API's
    services. Not bucketrun's own key. Default none: empty keys are served."""
    store_secret_key: SecretStr | None = Field(default=None, min_length=8, max_length=40)
    """Its secret key (MinIO: 8 to 40 characters); set both or neither. Default none."""
    host: str = "127.0.0.1"
    """Address to listen on. Default ``127.0.0.1``."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port to listen on (0: any free port). Default 8080, OSCAR's."""
    definitions_bucket: Annotated[str, AfterValidator(check_bucket_name)] = "bucketrun-api"
    """Bucket of the store where the API keeps the definitions it applied (``services/<name>.json``, no
    credentials): not the records bucket, and one that notifies nothing. Created when missing. Default
    ``bucketrun-api``."""
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    """Largest request body, in bytes, read; a bigger one is answered 413. Default 1 MiB (a service's
    script must fit a ConfigMap anyway)."""
    job_listing_limit: int = Field(default=70, ge=1, le=10_000)
    """Jobs per page of ``GET /system/logs/{service}`` (OSCAR's ``JOB_LISTING_LIMIT``). Default 70,
    OSCAR's."""
