"""The log pipeline: redaction of credentials wherever they hide, and library loggers routed through it."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
import structlog
from minio import Minio  # noqa: TID251 - a real presigned URL, made offline

from dispatcher.runtime import logs
from dispatcher.runtime.logs import REDACTED, Redactor, configure_logging, redact_text
from dispatcher.runtime.settings import Settings

SECRET_KEY = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def _presigned_url() -> str:
    client = Minio("s3.example.org:9000", access_key="AKIAEXAMPLE", secret_key=SECRET_KEY, region="us-east-1")
    return client.presigned_get_object("data", "in/photo one.jpg", expires=timedelta(minutes=5))


def test_a_presigned_url_keeps_its_path_and_loses_its_query() -> None:
    url = _presigned_url()
    assert "X-Amz-Signature=" in url  # the fixture is what it claims to be
    text = redact_text(f"GET {url} failed")
    assert "X-Amz-" not in text
    assert text == f"GET {url.split('?')[0]}?{REDACTED} failed"


@pytest.mark.parametrize(
    ("raw", "kept", "gone"),
    [
        ("amqp://bucketrun:s3cr3t%21@rabbit:5672/", "amqp://bucketrun:***@rabbit:5672/", "s3cr3t"),
        ("connect to https://user:pw@minio.local/x", "https://user:***@minio.local/x", ":pw@"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "Bearer ***", "eyJhbGciOi"),
        (
            "AWS4-HMAC-SHA256 Credential=AKIA/20261125/us-east-1/s3/aws4_request, Signature=abcdef",
            "AWS4-HMAC-SHA256 ***",
            "abcdef",
        ),
        ("http://old-style/?AWSAccessKeyId=AKIA&Signature=zz&Expires=1", "http://old-style/?***", "AKIA"),
    ],
)
def test_credentials_in_text_are_replaced(raw: str, kept: str, gone: str) -> None:
    text = redact_text(raw)
    assert kept in text
    assert gone not in text


def _every_pattern(text: str) -> str:
    """redact_text without its guards: every pattern searched on every text."""
    text = logs._SIGNED_QUERY.sub(lambda m: f"{m['url']}?{REDACTED}", text)
    text = logs._URL_PASSWORD.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    return logs._AUTH_TOKEN.sub(lambda m: f"{m['scheme'] or m['sigv4']}{REDACTED}", text)


@pytest.mark.parametrize(
    "raw",
    [
        "in/upper/photo-000123.txt",
        "2026-12-05T12:00:00.123456Z",
        "job created",
        "Bearer\u2003tok3n",  # Unicode whitespace is whitespace to the token pattern too
        "Basic\x1cdXNlcjpwdw==",
        "BEARER\ttok",
        "aws4-hmac-sha256\u00a0Credential=AKIA/x, Signature=ff",
        "Bearertok",  # no whitespace: no token
        "amqp://u:p@h:5672/",
        "s3://bucket/key?X-Amz-Signature=ff",
        "x:/ /y:pw@host",  # no '://': no URL
        "",
    ],
)
def test_the_guards_skip_only_text_a_pattern_cannot_match(raw: str) -> None:
    assert redact_text(raw) == _every_pattern(raw)


def test_known_secret_values_and_secret_named_fields_are_scrubbed_in_nested_values() -> None:
    redactor = Redactor()
    redactor.add_secrets([SECRET_KEY, "abc"])  # too short to scrub without shredding text: ignored
    event = {
        "event": f"storage said: bad key {SECRET_KEY}",
        "secret_key": "anything",
        "password": None,
        "fields": {"policy": "eyJleHBpcmF0aW9uIjoi", "key": "in/abc.txt", "x-amz-signature": "ff"},
        "urls": [_presigned_url()],
        "exception": f"Traceback ...\nValueError: {SECRET_KEY}",
        "key": "in/abc.txt",
        "size": 3,
    }
    out = redactor(None, "info", event)
    dumped = json.dumps(out)
    assert SECRET_KEY not in dumped
    assert "X-Amz-Signature" not in dumped
    assert out["secret_key"] == REDACTED
    assert out["password"] is None  # nothing there to hide: say so rather than mask it
    assert out["fields"] == {"policy": REDACTED, "key": "in/abc.txt", "x-amz-signature": REDACTED}
    assert (out["key"], out["size"]) == ("in/abc.txt", 3)  # an object key is not a secret


def test_settings_name_every_credential_they_hold() -> None:
    settings = Settings.load(
        amqp={"url": "amqp://app:p%40ss%2Fword@rabbit:5672/"},
        storage={"access_key": "AKIAEXAMPLE", "secret_key": SECRET_KEY},
    )
    values = set(settings.secret_values())
    assert {SECRET_KEY, "p%40ss%2Fword", "p@ss/word"} <= values


def test_library_lines_go_through_the_same_pipeline_with_context_and_redaction(capsys) -> None:
    configure_logging(level="INFO", json=True, secrets=[SECRET_KEY])
    with structlog.contextvars.bound_contextvars(service="upper", job="upper-abc"):
        logging.getLogger("aio_pika.robust_connection").warning(
            "Connection attempt to amqp://app:%s@rabbit/ failed", SECRET_KEY
        )
        logging.getLogger("aiohttp.access").info("below WARNING: a library's chatter stays out")
        structlog.get_logger("bucketrun.test").info("job created", url=_presigned_url())
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"].split(" ")[0] for line in lines] == ["Connection", "job"]
    library, own = lines
    assert library["logger"] == "aio_pika.robust_connection"
    assert library["level"] == "warning"
    for line in lines:
        assert (line["service"], line["job"]) == ("upper", "upper-abc")
        assert "timestamp" in line
    assert SECRET_KEY not in json.dumps(lines)
    assert own["url"].endswith(f"?{REDACTED}")


def test_debug_level_still_keeps_api_bodies_out(capsys) -> None:
    configure_logging(level="DEBUG", json=True)
    logging.getLogger("kubernetes_asyncio.client.rest").debug("response body: {'policy': 'eyJ...'}")
    logging.getLogger("aiormq.connection").debug("frame sent")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events == ["frame sent"]
