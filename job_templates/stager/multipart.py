"""The ``multipart/form-data`` body of an S3 POST upload, built around a file streamed from disk.

S3 (and MinIO) read the form fields in order and take the file from the last part, so the body is the
grant's fields, ``key`` and ``Content-Type``, then the file. Only the bytes before and after the file
are built here; the file itself is streamed between them, so no upload is held in memory.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

# Form field names appear unquoted-in-quotes in a header; the grant's names are S3's own (x-amz-*, policy).
_FIELD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FILE_FIELD = "file"
# S3 ignores the part's file name when the form has a key; a fixed name keeps user file names out of headers.
_FILE_NAME = "upload"


@dataclass(frozen=True)
class FormEnvelope:
    """The bytes around the file in a multipart body, and the request's Content-Type header."""

    head: bytes
    tail: bytes
    content_type: str

    def content_length(self, file_size: int) -> int:
        """Length of the whole body with a file of ``file_size`` bytes."""
        return len(self.head) + file_size + len(self.tail)


def form_envelope(
    fields: Mapping[str, str], *, key: str, file_type: str, boundary: str | None = None
) -> FormEnvelope:
    """The body around a file uploaded as ``key``: ``fields`` (the grant's), ``key``, ``Content-Type``.

    A ``key`` or ``Content-Type`` among ``fields`` is replaced by the given one. ``ValueError`` for a field
    name that is not a plain token, or a value that contains the boundary.
    """
    boundary = boundary or f"bucketrun-{secrets.token_hex(16)}"
    form = {
        name: value for name, value in fields.items() if name.lower() not in {"key", "content-type", "file"}
    }
    form["key"] = key
    form["Content-Type"] = file_type
    marker = f"--{boundary}".encode("ascii")
    head = bytearray()
    for name, value in form.items():
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"form field name {name!r} is not a plain token")
        data = value.encode("utf-8")
        if marker in data:
            raise ValueError(f"form field {name!r} contains the multipart boundary")
        head += marker + b"\r\n"
        head += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode("ascii")
        head += data + b"\r\n"
    head += marker + b"\r\n"
    disposition = f'form-data; name="{_FILE_FIELD}"; filename="{_FILE_NAME}"'
    head += f"Content-Disposition: {disposition}\r\n".encode("ascii")
    head += f"Content-Type: {_header_safe(file_type)}\r\n\r\n".encode("ascii")
    tail = b"\r\n" + marker + b"--\r\n"
    return FormEnvelope(bytes(head), tail, f"multipart/form-data; boundary={boundary}")


def _header_safe(value: str) -> str:
    if not value.isascii() or any(ch in value for ch in "\r\n"):
        raise ValueError(f"content type {value!r} is not a valid header value")
    return value
