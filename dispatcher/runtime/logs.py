"""structlog set-up for the processes: JSON lines in production, readable lines on a terminal.

One pipeline for every line a process writes: bucketrun's own (structlog) and the libraries' (aio-pika,
aiormq, aiohttp, kubernetes-asyncio, minio log through the standard library's ``logging``). Processors
are plain functions over the event dict: context bound per unit of work (contextvars: ``event_id``,
``service``, ``bucket``, ``key``, ``job``) comes first, **redaction** just before rendering, so nothing
added on the way (a formatted traceback included) escapes it.

Redaction removes, wherever they appear in a value (nested dicts and lists, exception text):

- presigned-URL and POST-policy credentials: the query string of any URL carrying ``X-Amz-Signature``,
  ``X-Amz-Credential``, ``X-Amz-Security-Token``, ``Signature=`` or ``AWSAccessKeyId=``;
- passwords in URLs (``amqp://user:password@host``);
- ``Authorization``-style tokens (``Bearer …``, ``AWS4-HMAC-SHA256 Credential=…``);
- the values of fields whose *name* says secret (``password``, ``secret_key``, ``token``, ``policy``…);
- every secret value the process was configured with (``Settings.secret_values()``), verbatim.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED: Final = "***"
_SECRET_FIELD: Final = re.compile(
    r"(passw(or)?d|secret|token|credential|authorization|api[_-]?key|signature|x-amz-policy|^policy$)",
    re.IGNORECASE,
)
_SIGNED_QUERY: Final = re.compile(
    r"(?P<url>[a-z][a-z0-9+.-]*://[^\s?#'\"<>]+)\?(?P<query>[^\s#'\"<>]*"
    r"(?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature=|AWSAccessKeyId=)[^\s#'\"<>]*)",
    re.IGNORECASE,
)
_URL_PASSWORD: Final = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^\s:/@'\"<>]*):(?P<password>[^\s@/'\"<>]+)@"
)
_AUTH_TOKEN: Final = re.compile(
    r"(?P<scheme>\b(?:Bearer|Basic)\s+)[^\s'\"]+|(?P<sigv4>AWS4-HMAC-SHA256\s+)[^\n'\"]+", re.IGNORECASE
)
"""A bearer/basic token (one word), or a SigV4 Authorization value (the rest of the line)."""
_MIN_SECRET_CHARS: Final = 4
"""Shorter configured secrets (``guest`` is five) are still scrubbed; shorter than this would shred text."""

LIBRARY_LOGGERS: Final = (
    "aio_pika",
    "aiormq",
    "aiohttp",
    "kubernetes_asyncio",
    "urllib3",
    "minio",
    "asyncio",
)
"""Library loggers routed through the pipeline, quiet below WARNING unless the level asks for DEBUG."""
_BODY_LOGGERS: Final = frozenset({"kubernetes_asyncio"})
"""Never below INFO: at DEBUG they log whole API bodies, and a Job's body holds its presigned grants
(POST policies are JSON inside a string, beyond what redaction can see reliably)."""


_WHITESPACE: Final = re.compile(r"\s")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* with URL credentials, tokens and each of *secrets* replaced by ``***``.

    A pattern runs only on text it can match: both URL patterns need a literal ``://``, both token
    patterns a whitespace character after their scheme. Most values of a line (keys, names, timestamps)
    have neither, and the three searches were most of a log line's cost."""
    if "://" in text:
        text = _SIGNED_QUERY.sub(lambda m: f"{m['url']}?{REDACTED}", text)
        text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    if _WHITESPACE.search(text):
        text = _AUTH_TOKEN.sub(lambda m: f"{m['scheme'] or m['sigv4']}{REDACTED}", text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


@functools.lru_cache(maxsize=1024)
def _secret_field(name: str) -> bool:
    """True when a field's *name* says its value is a secret (field names are few: cached)."""
    return _SECRET_FIELD.search(name) is not None


class Redactor:
    """The redaction processor; secrets known to the process are added with `add_secrets`."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()

    def add_secrets(self, values: Iterable[str]) -> None:
        """Scrub each of *values* from every later line (longest first, so no secret leaves a tail)."""
        known = {*self._secrets, *(value for value in values if len(value) >= _MIN_SECRET_CHARS)}
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        """Redact every value of *event_dict* (a structlog processor)."""
        return {name: self._value(name, value) for name, value in event_dict.items()}

    def _value(self, name: str, value: Any) -> Any:
        if _secret_field(name) and value not in (None, "", False):
            return REDACTED
        if isinstance(value, str):
            return redact_text(value, self._secrets)
        if isinstance(value, Mapping):
            return {str(key): self._value(str(key), item) for key, item in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self._value(name, item) for item in value]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return redact_text(str(value), self._secrets)


REDACTOR: Final = Redactor()
"""The process's redaction processor (one set of known secrets per process)."""


def shared_processors() -> list[Processor]:
    """Processors every line goes through before redaction and rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]


def configure_logging(*, level: str = "INFO", json: bool | None = None, secrets: Iterable[str] = ()) -> None:
    """Configure structlog and the standard library's logging once per process; *json* defaults to "not a
    terminal"; *secrets* (the configured credentials) never appear in a line."""
    REDACTOR.add_secrets(secrets)
    render_json = not sys.stderr.isatty() if json is None else json
    renderer: Processor = (
        structlog.processors.JSONRenderer() if render_json else structlog.dev.ConsoleRenderer()
    )
    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared_processors(), REDACTOR, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        # Not cached: a module's logger then follows a later configure() (tests, reloads) for a few
        # microseconds per line, next to milliseconds of work per event.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared_processors()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, REDACTOR, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    library_level = numeric_level if numeric_level <= logging.DEBUG else max(numeric_level, logging.WARNING)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(
            max(library_level, logging.INFO) if name in _BODY_LOGGERS else library_level
        )
