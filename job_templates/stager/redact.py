"""Keep presigned URLs, POST policies and signatures out of everything the stager prints.

A presigned URL or policy is a bearer credential until it expires: anyone reading the pod's logs (which
bucketrun keeps in the job records) could use it. The stager never formats a URL into a message on
purpose; this is the second line of defence for text it does not control (exception messages).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

REDACTED = "[redacted]"
# Values shorter than this are not secrets (an algorithm name, a date) and would redact common words.
_MIN_SECRET_LENGTH = 8


def url_secrets(url: str) -> list[str]:
    """The parts of a presigned URL that grant access: the whole URL, its query, and each query value."""
    parts = urlsplit(url)
    values = [value for _, value in parse_qsl(parts.query, keep_blank_values=False)]
    return [url, parts.query, *values]


class Redactor:
    """Replaces every known secret in a text with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        """Start with ``secrets`` (strings too short to be secrets are ignored)."""
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also redact ``secrets`` from now on."""
        self._secrets.update(s for s in secrets if len(s) >= _MIN_SECRET_LENGTH)

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced, longest first (a URL before its query)."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text
