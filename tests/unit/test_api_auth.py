"""`bucketrun api`'s auth: HTTP basic, and OIDC bearer tokens checked against a local issuer.

The issuer is a real HTTP server on 127.0.0.1 that the test runs (a thread): it serves an OIDC
discovery document and a JWKS made from keys generated here, and counts the requests it gets, so the
cache and the refetch bound are checked by what reached it. Tokens are signed here with pyjwt.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt  # noqa: TID251 - the test is the issuer: it signs the tokens
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from pydantic import ValidationError
from structlog.testing import capture_logs

from bucketrun.api.app import create_app
from bucketrun.api.auth import Authenticator, Caller, UnauthorisedError, bearer_token
from bucketrun.api.catalog import ServiceCatalog
from bucketrun.api.jwks import KeyCachePolicy, fetch_due
from bucketrun.api.settings import ApiSettings
from bucketrun.api.tokens import groups_of
from bucketrun.cli.main import main
from tests.backends import free_port
from tests.unit.test_api_oscar import settings

USER, PASSWORD = "oscar", "the-password"
AUDIENCE = "bucketrun"
WELL_KNOWN = "/.well-known/openid-configuration"
DISCOVERY = "/realms/test" + WELL_KNOWN
JWKS = "/protocol/openid-connect/certs"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Issuer:
    """A local OIDC issuer: discovery + JWKS over HTTP, keys made here, requests counted by path."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {"key-1": RSA_KEY}
        self.requests: Counter[str] = Counter()
        self.status = 200
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests[self.path] += 1
                # Any issuer path gets this issuer's discovery document (so another can be tried).
                path = DISCOVERY if self.path.endswith(WELL_KNOWN) else self.path
                documents = {DISCOVERY: issuer.discovery(), JWKS: issuer.jwks()}
                body = json.dumps(documents.get(path, {})).encode()
                status = issuer.status if path in documents else 404
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/realms/test"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.url, "jwks_uri": self.url.split("/realms")[0] + JWKS}

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else None
            public = key.public_key()
            jwk = json.loads(
                algorithm.to_jwk(public) if algorithm else jwt.algorithms.ECAlgorithm.to_jwk(public)
            )
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": keys}

    @property
    def jwks_fetches(self) -> int:
        return self.requests[JWKS]

    def token(self, kid: str = "key-1", key: Any = None, algorithm: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "user-42", "iat": now, "exp": now + 300, **claims}
        body = {name: value for name, value in body.items() if value is not None}
        signer = key if key is not None else self.keys[kid]
        return jwt.encode(body, signer, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    server = Issuer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def oidc_settings(issuer_url: str, **more: Any) -> ApiSettings:
    return ApiSettings(
        username=USER, password=PASSWORD, oidc_issuers=[issuer_url], oidc_audience=[AUDIENCE], **more
    )


@pytest.fixture
def api(issuer: Issuer) -> Iterator[TestClient]:
    with TestClient(app_for(oidc_settings(issuer.url))) as client:
        yield client


def app_for(api_settings: ApiSettings) -> Any:
    return create_app(settings(), api_settings, ServiceCatalog(settings(), "bucketrun-api"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(answer: Any) -> bool:
    return answer.status_code == 401 and answer.content == b""


def test_a_valid_token_is_accepted_and_names_its_subject(api: TestClient, issuer: Issuer) -> None:
    answer = api.get("/system/info", headers=bearer(issuer.token()))
    assert answer.status_code == 200
    assert answer.json()["version"]


async def test_the_caller_of_a_token_is_its_subject_and_issuer(issuer: Issuer) -> None:
    authenticator = Authenticator(oidc_settings(issuer.url))
    caller = await authenticator.authenticate(f"Bearer {issuer.token()}")
    assert caller == Caller(name="user-42", method="oidc", issuer=issuer.url)
    assert await authenticator.authenticate(basic(USER, PASSWORD)) == Caller(name=USER, method="basic")


def hs256_with_the_public_key(issuer: Issuer) -> str:
    """The classic key confusion: an HMAC signed with the issuer's public key as the secret."""
    public = (
        issuer.keys["key-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "kid": "key-1", "typ": "JWT"}
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 300}
    parts = [base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=") for part in (header, claims)]
    signature = hmac.new(public, b".".join(parts), hashlib.sha256).digest()
    return b".".join([*parts, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()


def alg_none(issuer: Issuer) -> str:
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 300}
    return jwt.encode(claims, None, algorithm="none", headers={"kid": "key-1"})


BAD_TOKENS = {
    "wrong audience": lambda issuer: issuer.token(aud="someone-else"),
    "no audience": lambda issuer: issuer.token(aud=None),
    "wrong issuer": lambda issuer: issuer.token(iss="https://elsewhere.example/realms/test"),
    "expired": lambda issuer: issuer.token(exp=int(time.time()) - 120),
    "not yet valid": lambda issuer: issuer.token(nbf=int(time.time()) + 120),
    "no subject": lambda issuer: issuer.token(sub=None),
    "bad signature": lambda issuer: issuer.token(key=OTHER_RSA_KEY),
    "tampered claims": lambda issuer: tampered(issuer.token()),
    "alg none": alg_none,
    "HS256 with the public key": hs256_with_the_public_key,
    "ES256 token against an RSA key": lambda issuer: issuer.token(
        key=ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"
    ),
    "not a JWT": lambda _: "not-a-jwt",
}


def tampered(token: str) -> str:
    header, claims, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    body["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_a_bad_token_gets_a_bare_401(api: TestClient, issuer: Issuer, case: str) -> None:
    token = BAD_TOKENS[case](issuer)
    with capture_logs() as logs:
        answer = api.get("/system/info", headers=bearer(token))
    assert refused(answer), case
    assert 'Bearer realm="bucketrun"' in answer.headers["www-authenticate"]
    (refusal,) = [line for line in logs if line["event"] == "api refused a credential"]
    assert refusal["log_level"] == "info"
    assert refusal["reason"].startswith("bearer token: ")
    assert token not in json.dumps(logs)
    assert api.get("/system/info", headers=bearer(issuer.token())).status_code == 200  # a good one passes


def test_what_a_token_names_is_logged_bounded(api: TestClient, issuer: Issuer) -> None:
    for token in (issuer.token("k" * 5000, RSA_KEY), issuer.token(iss="https://x.example/" + "i" * 5000)):
        with capture_logs() as logs:
            assert refused(api.get("/system/info", headers=bearer(token)))
        (refusal,) = [line for line in logs if line["event"] == "api refused a credential"]
        assert len(refusal["reason"]) < 400


def test_the_keys_are_fetched_once_for_many_requests(api: TestClient, issuer: Issuer) -> None:
    for _ in range(20):
        assert api.get("/system/info", headers=bearer(issuer.token())).status_code == 200
    assert issuer.requests == {DISCOVERY: 1, JWKS: 1}


def test_an_unknown_kid_is_refused(api: TestClient, issuer: Issuer) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    for kid in ("made-up-1", "made-up-2", "made-up-3"):
        answer = api.get("/system/info", headers=bearer(issuer.token(kid, stranger, "ES256")))
        assert refused(answer)
    assert issuer.jwks_fetches == 1  # the first one's fetch; the others come within the interval


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_unknown_kids_reach_the_issuer_at_most_once_per_interval(issuer: Issuer) -> None:
    clock = Clock()
    authenticator = Authenticator(oidc_settings(issuer.url, oidc_jwks_refetch_seconds=60), clock=clock)
    await authenticator.authenticate(f"Bearer {issuer.token()}")
    stranger = ec.generate_private_key(ec.SECP256R1())

    async def refused_kids(count: int) -> None:
        for n in range(count):
            with pytest.raises(UnauthorisedError):
                await authenticator.authenticate(f"Bearer {issuer.token(f'kid-{n}', stranger, 'ES256')}")

    clock.now += 61
    await refused_kids(5)
    assert issuer.jwks_fetches == 2  # refetched once for the first unknown kid, then refused
    clock.now += 30
    await refused_kids(5)
    assert issuer.jwks_fetches == 2
    clock.now += 31
    await refused_kids(5)
    assert issuer.jwks_fetches == 3
    assert await authenticator.authenticate(f"Bearer {issuer.token()}")  # the known key still works


async def test_a_rotated_key_is_picked_up_once_the_refetch_interval_passed(issuer: Issuer) -> None:
    clock = Clock()
    authenticator = Authenticator(oidc_settings(issuer.url, oidc_jwks_refetch_seconds=60), clock=clock)
    await authenticator.authenticate(f"Bearer {issuer.token()}")
    issuer.keys["key-2"] = ec.generate_private_key(ec.SECP256R1())
    rotated = f"Bearer {issuer.token('key-2', algorithm='ES256')}"
    clock.now += 30
    with pytest.raises(UnauthorisedError):  # too soon after the first fetch: not asked again
        await authenticator.authenticate(rotated)
    assert issuer.jwks_fetches == 1
    clock.now += 31
    assert (await authenticator.authenticate(rotated)).name == "user-42"
    assert issuer.jwks_fetches == 2


async def test_keys_are_fetched_again_after_their_ttl(issuer: Issuer) -> None:
    clock = Clock()
    api_settings = oidc_settings(issuer.url, oidc_jwks_cache_seconds=600, oidc_jwks_refetch_seconds=60)
    authenticator = Authenticator(api_settings, clock=clock)
    token = f"Bearer {issuer.token()}"
    await authenticator.authenticate(token)
    clock.now += 599
    await authenticator.authenticate(token)
    assert issuer.jwks_fetches == 1
    clock.now += 1
    await authenticator.authenticate(token)
    assert issuer.jwks_fetches == 2


async def test_concurrent_requests_on_a_cold_cache_share_one_fetch(issuer: Issuer) -> None:
    authenticator = Authenticator(oidc_settings(issuer.url))
    stranger = ec.generate_private_key(ec.SECP256R1())
    good = [f"Bearer {issuer.token()}" for _ in range(10)]
    unknown = [f"Bearer {issuer.token(f'kid-{n}', stranger, 'ES256')}" for n in range(10)]
    results = await asyncio.gather(
        *(authenticator.authenticate(t) for t in good + unknown), return_exceptions=True
    )
    assert [isinstance(result, Caller) for result in results] == [True] * 10 + [False] * 10
    assert all(isinstance(result, UnauthorisedError) for result in results[10:])
    assert issuer.requests == {DISCOVERY: 1, JWKS: 1}  # each waited for the one fetch in flight


def test_an_issuer_that_is_down_refuses_its_tokens_with_401(issuer: Issuer) -> None:
    down = f"http://127.0.0.1:{free_port()}/realms/test"
    with TestClient(app_for(oidc_settings(down, oidc_fetch_timeout_seconds=2))) as client:
        token = jwt.encode(
            {"iss": down, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
            issuer.keys["key-1"],
            algorithm="RS256",
            headers={"kid": "key-1"},
        )
        with capture_logs() as logs:
            answer = client.get("/system/info", headers=bearer(token))
        assert refused(answer)
        assert any(line["event"] == "oidc keys not fetched" for line in logs)
        assert client.get("/system/info", auth=(USER, PASSWORD)).status_code == 200


def test_an_issuer_that_never_answers_is_given_up_after_the_timeout(issuer: Issuer) -> None:
    silent = socket.socket()  # listens, so connections queue, but never reads or answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    hung = f"http://127.0.0.1:{silent.getsockname()[1]}/realms/test"
    try:
        with TestClient(app_for(oidc_settings(hung, oidc_fetch_timeout_seconds=0.5))) as client:
            started = time.monotonic()
            assert refused(client.get("/system/info", headers=bearer(issuer.token(iss=hung))))
            assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_an_issuer_answering_500_refuses_its_tokens_with_401(api: TestClient, issuer: Issuer) -> None:
    issuer.status = 500
    assert refused(api.get("/system/info", headers=bearer(issuer.token())))


def test_a_discovery_document_for_another_issuer_is_not_trusted(issuer: Issuer) -> None:
    lying = issuer.url + "-twin"  # the same server, whose discovery names issuer.url
    with TestClient(app_for(oidc_settings(lying))) as client:
        assert refused(client.get("/system/info", headers=bearer(issuer.token(iss=lying))))
    assert issuer.jwks_fetches == 0


@pytest.mark.parametrize(
    ("groups", "claims", "accepted"),
    [
        (["vo.example.eu"], {}, False),
        (["vo.example.eu"], {"groups": ["other", "vo.example.eu"]}, True),
        (["vo.example.eu"], {"entitlements": ["urn:mace:egi.eu:group:vo.example.eu:role=member#aai"]}, True),
        (["vo.example.eu"], {"eduperson_entitlement": ["urn:mace:egi.eu:group:VO.EXAMPLE.EU#aai"]}, True),
        (["vo.example.eu"], {"entitlements": ["urn:mace:egi.eu:group:vo.other.eu:vo.example.eu"]}, False),
        (["admins"], {"realm_access": {"roles": ["admins"]}}, True),
        (["admins"], {"group_membership": "admins"}, True),
    ],
)
def test_the_required_groups(
    issuer: Issuer, groups: list[str], claims: dict[str, Any], accepted: bool
) -> None:
    with TestClient(app_for(oidc_settings(issuer.url, oidc_groups=groups))) as client:
        answer = client.get("/system/info", headers=bearer(issuer.token(**claims)))
    assert answer.status_code == (200 if accepted else 401)
    assert accepted or answer.content == b""


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (basic(USER, PASSWORD), 200),
        (basic(USER, "wrong"), 401),
        (basic("someone", PASSWORD), 401),
        (basic(USER, PASSWORD + "x"), 401),
        ("Basic " + base64.b64encode(USER.encode()).decode(), 401),  # no colon
        ("Basic !!not-base64!!", 401),  # FastAPI's HTTPBasic would answer this with a body
        ("Bearer", 401),
        ("Digest whatever", 401),
        ("", 401),
    ],
)
def test_basic_auth_beside_oidc(api: TestClient, authorization: str, status: int) -> None:
    answer = api.get("/system/info", headers={"Authorization": authorization} if authorization else {})
    assert answer.status_code == status
    assert status == 200 or answer.content == b""


def test_without_basic_settings_only_tokens_are_accepted(issuer: Issuer) -> None:
    oidc_only = ApiSettings(oidc_issuers=issuer.url, oidc_audience=AUDIENCE)
    with TestClient(app_for(oidc_only)) as client:
        assert refused(client.get("/system/info", auth=(USER, PASSWORD)))
        assert client.get("/system/info", headers=bearer(issuer.token())).status_code == 200
        assert client.get("/health").status_code == 200
        answer = client.get("/system/services")
        assert refused(answer)
        assert answer.headers["www-authenticate"] == 'Bearer realm="bucketrun"'


def test_the_openapi_document_lists_the_configured_schemes(api: TestClient) -> None:
    assert refused(api.get("/openapi.json"))  # the document too needs the credential
    document = api.get("/openapi.json", auth=(USER, PASSWORD)).json()
    assert {"HTTPBasic", "HTTPBearer"} <= set(document["components"]["securitySchemes"])
    assert document["paths"]["/system/info"]["get"]["security"] == [{"HTTPBasic": []}, {"HTTPBearer": []}]
    with TestClient(app_for(ApiSettings(username=USER, password=PASSWORD))) as basic_only:
        document = basic_only.get("/openapi.json", auth=(USER, PASSWORD)).json()
    assert document["paths"]["/system/info"]["get"]["security"] == [{"HTTPBasic": []}]


def test_settings_read_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKETRUN_API__OIDC_ISSUERS", "https://a.example/realms/x, https://b.example")
    monkeypatch.setenv("BUCKETRUN_API__OIDC_AUDIENCE", '["bucketrun", "oscar"]')
    monkeypatch.setenv("BUCKETRUN_API__OIDC_GROUPS", "vo.example.eu")
    read = ApiSettings()
    assert read.oidc_issuers == ("https://a.example/realms/x", "https://b.example")
    assert read.oidc_audience == ("bucketrun", "oscar")
    assert read.oidc_groups == ("vo.example.eu",)
    assert read.username is None


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({}, "no credential: set BUCKETRUN_API__USERNAME and BUCKETRUN_API__PASSWORD"),
        ({"username": USER}, "set both BUCKETRUN_API__USERNAME and BUCKETRUN_API__PASSWORD"),
        ({"oidc_issuers": "https://a.example"}, "BUCKETRUN_API__OIDC_AUDIENCE is required"),
        ({"oidc_issuers": "ftp://a.example", "oidc_audience": "x"}, "'ftp://a.example' is not an issuer URL"),
        ({"username": USER, "password": PASSWORD, "oidc_algorithms": "RS256,HS256"}, "['HS256']: choose"),
        ({"username": USER, "password": PASSWORD, "oidc_algorithms": "none"}, "['none']: choose"),
    ],
)
def test_settings_refuse_what_cannot_authenticate_safely(given: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as refusal:
        ApiSettings(**given)
    assert named in str(refusal.value)


def test_bearer_token_reads_the_header() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token(None) is None
    assert bearer_token("Bearer ") is None


def test_groups_of_reads_every_claim_oscar_knows() -> None:
    claims = {
        "groups": ["a"],
        "group_membership": ["b"],
        "realm_access": {"roles": ["c"]},
        "entitlements": ["urn:mace:egi.eu:group:vo.d.eu:role=member#aai.egi.eu", "plain-e"],
        "eduperson_entitlement": "urn:mace:egi.eu:group:vo.f.eu",
    }
    assert groups_of(claims) == {"a", "b", "c", "vo.d.eu", "plain-e", "vo.f.eu"}


POLICY = KeyCachePolicy(ttl=600, refetch_interval=60, timeout=5)


@pytest.mark.parametrize(
    "case",
    [
        # fetched, fetched_at, attempted_at, key_known, now -> due
        ((False, 0, None, False, 0), True),  # never tried
        ((False, 0, 100, False, 130), False),  # the issuer was down 30 s ago
        ((False, 0, 100, False, 160), True),
        ((True, 100, 100, True, 500), False),  # fresh, key known
        ((True, 100, 100, True, 700), True),  # stale
        ((True, 100, 100, False, 130), False),  # unknown kid, too soon
        ((True, 100, 100, False, 160), True),  # unknown kid, interval passed
        ((True, 100, 690, True, 720), False),  # stale, but the last attempt failed 30 s ago
    ],
)
def test_fetch_due(case: tuple[tuple[bool, float, float | None, bool, float], bool]) -> None:
    (fetched, fetched_at, attempted_at, key_known, now), due = case
    state = {"fetched": fetched, "fetched_at": fetched_at, "attempted_at": attempted_at}
    assert fetch_due(**state, key_known=key_known, now=now, policy=POLICY) is due


def test_the_command_help_names_the_auth_and_metrics_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["api", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for text in (
        "BUCKETRUN_API__OIDC_ISSUERS",
        "BUCKETRUN_API__OIDC_AUDIENCE",
        "BUCKETRUN_METRICS__PORT",
        "/metrics",
    ):
        assert text in shown
