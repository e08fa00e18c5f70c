"""AWS Signature Version 4 for presigned URLs and POST policies, without the SDK's generic machinery.

Presigning is pure computation on every event: one presigned GET and a POST policy per output. The
minio SDK's presigning builds the signing key (four HMACs) on every call, although it depends only on
(secret, day, region, service), and goes through generic request-signing helpers. Here the key is made
once per day (`SigningKeys`) and the two strings to sign are built directly, following the same
specification byte for byte: `tests/unit/test_sigv4.py` checks the results equal the SDK's for the same
inputs (hostile keys included), and the integration tests check moto and the stager accept them.

No I/O and no SDK import: `dispatcher.adapters.s3.storage` (the adapter) supplies the URL to sign,
built by the SDK's own URL builder (path or virtual-host style, object-name quoting).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from urllib.parse import SplitResult, quote, urlunsplit

ALGORITHM: Final = "AWS4-HMAC-SHA256"
SERVICE: Final = "s3"


def _hmac(key: bytes, data: str) -> bytes:
    return hmac.new(key, data.encode(), hashlib.sha256).digest()


def amz_date(moment: datetime) -> str:
    """``20260102T030405Z`` (*moment* must be UTC)."""
    return moment.strftime("%Y%m%dT%H%M%SZ")


@dataclass(slots=True)
class SigningKeys:
    """The SigV4 signing key of one secret and region, made once per UTC day (it changes daily).

    The secret stays in this object (never in its repr); only derived, day-scoped keys are cached.
    """

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str
    _day: str = field(default="", repr=False)
    _key: bytes = field(default=b"", repr=False)

    def scope(self, day: str) -> str:
        """The credential scope of *day* (``YYYYMMDD``): ``day/region/s3/aws4_request``."""
        return f"{day}/{self.region}/{SERVICE}/aws4_request"

    def key(self, day: str) -> bytes:
        """The signing key of *day* (``YYYYMMDD``), derived once and reused until the day changes."""
        if day != self._day:
            date_key = _hmac(f"AWS4{self.secret_key}".encode(), day)
            self._key = _hmac(_hmac(_hmac(date_key, self.region), SERVICE), "aws4_request")
            self._day = day
        return self._key

    def sign(self, day: str, string_to_sign: str) -> str:
        """Hex signature of *string_to_sign* with the key of *day*."""
        return hmac.new(self.key(day), string_to_sign.encode(), hashlib.sha256).hexdigest()


def _canonical_query(query: str) -> str:
    # Parameters sorted by name, then value, as already encoded (the SDK's URL builder encoded them).
    pairs = sorted(param.split("=") for param in query.split("&"))
    return "&".join("=".join(pair) for pair in pairs)


def presign(keys: SigningKeys, method: str, url: SplitResult, *, now: datetime, expires_s: int) -> str:
    """*url* (scheme, host, encoded path and query) presigned for *method*, valid *expires_s* seconds
    from *now* (UTC); the only signed header is ``host``, the payload is unsigned."""
    stamp = amz_date(now)
    day = stamp[:8]
    credential = quote(f"{keys.access_key}/{keys.scope(day)}", safe="")
    query = f"{url.query}&" if url.query else ""
    query += (
        f"X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date={stamp}"
        f"&X-Amz-Expires={expires_s}&X-Amz-SignedHeaders=host"
    )
    canonical_request = (
        f"{method}\n{url.path or '/'}\n{_canonical_query(query)}\nhost:{url.netloc}\n\nhost\nUNSIGNED-PAYLOAD"
    )
    string_to_sign = (
        f"{ALGORITHM}\n{stamp}\n{keys.scope(day)}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    )
    signature = keys.sign(day, string_to_sign)
    return urlunsplit((url.scheme, url.netloc, url.path, f"{query}&X-Amz-Signature={signature}", ""))


def post_policy_fields(
    keys: SigningKeys,
    *,
    bucket: str,
    key_prefix: str,
    max_bytes: int,
    now: datetime,
    expires_at: datetime,
) -> dict[str, str]:
    """Form fields of a POST policy: *bucket*, keys starting with *key_prefix*, any Content-Type, at
    most *max_bytes*, until *expires_at* (UTC), signed at *now* (UTC)."""
    stamp = amz_date(now)
    day = stamp[:8]
    credential = f"{keys.access_key}/{keys.scope(day)}"
    expiration = expires_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{expires_at.microsecond // 1000:03d}Z"
    policy = {
        "expiration": expiration,
        "conditions": [
            ["eq", "$bucket", bucket],
            ["starts-with", "$key", key_prefix],
            # The stager may label what it uploads; S3 requires every form field to be named by a condition.
            ["starts-with", "$Content-Type", ""],
            ["content-length-range", 0, max_bytes],
            ["eq", "$x-amz-algorithm", ALGORITHM],
            ["eq", "$x-amz-credential", credential],
            ["eq", "$x-amz-date", stamp],
        ],
    }
    encoded = base64.b64encode(json.dumps(policy).encode()).decode("ascii")
    return {
        "x-amz-algorithm": ALGORITHM,
        "x-amz-credential": credential,
        "x-amz-date": stamp,
        "policy": encoded,
        "x-amz-signature": keys.sign(day, encoded),
    }
