"""``bucketrun api``: serve the OSCAR-compatible API (``bucketrun.api``) for the real oscar-cli."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from bucketrun.cli.common import EXIT_OK, Commands, UsageError, load_settings
from dispatcher.runtime.logs import configure_logging

DESCRIPTION = """\
Serve an OSCAR-compatible HTTP API, so the unmodified oscar-cli manages bucketrun's services:
  oscar-cli cluster add bucketrun http://127.0.0.1:8080 USER PASSWORD --disable-ssl
  oscar-cli apply services.yaml; oscar-cli service list | get NAME | remove NAME
Routes (OSCAR's paths, methods, status codes and JSON): GET /health (no auth), GET /system/info,
GET /system/config (the store's endpoint and the API users' store keys, never the admin's; also
/system/config/, as oscar-python asks), GET|POST|PUT /system/services,
GET|DELETE /system/services/NAME, GET|DELETE /system/logs/NAME and /system/logs/NAME/JOB (as
`bucketrun jobs` reads them, where Jobs run, then the records: the service's Jobs newest first, paged;
a Job's log; deleting one, the succeeded ones, or with all=true every one, with their records).
Create and update check the service as `bucketrun services
validate` does (400 with its message), then do what `services apply` does; delete does what
`services delete` does. POST /job/NAME (201): an asynchronous invocation, the body as the event
(a MinIO event for an input of NAME, else the input file: JSON as it is, anything else base64), handed
to the dispatcher through NAME's queue, exactly once per X-Request-ID (answered back; a UUID when not
sent); it takes `Authorization: Bearer TOKEN`, the token the API issued with the service (its `token`
field, kept in the Secret bucketrun-NAME-token), or the credential of the other routes.
Every route but /health takes HTTP basic (the configured user and password) or an OIDC bearer token of
a configured issuer (signature from its JWKS, iss, aud, exp, nbf, sub, and a group when one is asked);
anything else gets a bare 401, its reason logged at info. Metrics (bucketrun_api_requests_total and
bucketrun_api_request_duration_seconds, by route template) are served on the metrics port with
/healthz and /readyz, as the dispatcher's, not on the API's port.
A create that fails part-way is undone, and its 500 says what was undone (an update: what it
changed). Not served: /run, buckets, volumes, quotas, federation."""

EPILOG = """\
settings (environment):
  BUCKETRUN_API__USERNAME, BUCKETRUN_API__PASSWORD   HTTP basic credential (required unless OIDC is set)
  BUCKETRUN_API__OIDC_ISSUERS, BUCKETRUN_API__OIDC_AUDIENCE: issuers whose bearer tokens are accepted
    (comma-separated; keys from ISSUER/.well-known/openid-configuration) and the audiences a token must
    name one of (required with issuers)
  BUCKETRUN_API__OIDC_GROUPS (none): groups a token must hold one of (groups, realm roles, EGI entitlements)
  BUCKETRUN_API__OIDC_ALGORITHMS (RS256,ES256; asymmetric only), BUCKETRUN_API__OIDC_LEEWAY_SECONDS (30),
  BUCKETRUN_API__OIDC_JWKS_CACHE_SECONDS (600), BUCKETRUN_API__OIDC_JWKS_REFETCH_SECONDS (60: at most one
    fetch of an issuer's keys in that time, whatever kid tokens name), _OIDC_FETCH_TIMEOUT_SECONDS (5)
  BUCKETRUN_METRICS__HOST (0.0.0.0), BUCKETRUN_METRICS__PORT (8000; 0 picks a free port): /metrics,
    /healthz, /readyz
  BUCKETRUN_API__HOST (127.0.0.1), BUCKETRUN_API__PORT (8080; 0 picks a free port)
  BUCKETRUN_API__MAX_BODY_BYTES (1048576; a bigger request body is answered 413)
  BUCKETRUN_API__SERVICES_DIR or BUCKETRUN_API__SERVICES_SECRET: where it writes each service it applied
    as NAME.yaml for the dispatcher (a directory the dispatcher's BUCKETRUN_SERVICES__PATHS lists, or a
    Secret its pod mounts there); neither: a warning, and no dispatcher runs the API's services
  BUCKETRUN_API__DEFINITIONS_BUCKET (bucketrun-api): where the definitions it applied are kept
  BUCKETRUN_API__STORE_ACCESS_KEY, BUCKETRUN_API__STORE_SECRET_KEY: a MinIO user the API creates at
    startup for put-file, get-file and oscar-python, allowed only the input and output folders of its
    services (unset, or no MinIO admin API: a warning, and /system/config serves empty keys)
  BUCKETRUN_API__JOB_LISTING_LIMIT (70): Jobs per page of GET /system/logs/NAME
  and the store and cluster as for `bucketrun services apply` (BUCKETRUN_STORAGE__*, BUCKETRUN_CLUSTER__*),
  and for POST /job the broker as for the dispatcher (BUCKETRUN_AMQP__*).
It prints `bucketrun api listening on http://HOST:PORT` and `bucketrun api metrics on
http://HOST:PORT/metrics` to stderr once it accepts connections. On
SIGINT or SIGTERM it finishes the requests in flight, then ends by that signal (uvicorn's way).
The definitions it applied are kept as services/NAME.json (no credentials) in that bucket, which
must notify nothing and not be the records bucket; services applied with `bucketrun services apply`
are not listed by it.
exit codes: 2 settings error, or the metrics port taken (nothing served)."""


def add_commands(commands: Commands) -> None:
    """Add ``api``."""
    api = commands.add_parser(
        "api",
        help="serve the OSCAR-compatible API for oscar-cli",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    api.add_argument("--host", help="address to listen on (default BUCKETRUN_API__HOST, else 127.0.0.1)")
    api.add_argument("--port", type=int, help="port to listen on (default BUCKETRUN_API__PORT, else 8080)")
    api.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> tuple[str, int]:
    # Imported here: FastAPI and uvicorn are the `api` extra, needed by this command only.
    try:
        from bucketrun.api.catalog import DefinitionsBucketError  # noqa: PLC0415
        from bucketrun.api.server import MetricsPortError, serve  # noqa: PLC0415
        from bucketrun.api.settings import ApiSettings  # noqa: PLC0415
        from bucketrun.api.store_user import StoreUserError  # noqa: PLC0415
    except ModuleNotFoundError as error:
        raise UsageError(
            f"error: bucketrun api needs {error.name}, of the api extra: pip install 'bucketrun[api]'"
        ) from None

    settings = load_settings()
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    try:
        api = ApiSettings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"BUCKETRUN_API__{'.'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
            if problem["loc"]
            else problem["msg"]  # a rule over several settings names them itself
            for problem in error.errors()
        )
        raise UsageError(f"error: {problems}") from None
    credentials = (
        settings.storage.secret_key.get_secret_value(),
        *api.secret_values(),
        *([api.store_secret_key.get_secret_value()] if api.store_secret_key else []),
    )
    configure_logging(level=settings.log.level, json=settings.log.json_lines, secrets=credentials)
    try:
        serve(settings, api)
    except (DefinitionsBucketError, StoreUserError, MetricsPortError) as error:
        raise UsageError(f"error: {error}") from None
    return "", EXIT_OK
