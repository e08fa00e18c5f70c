"""How much memory each TLS connection of the process reads into.

asyncio gives every TLS connection a receive buffer of ``asyncio.sslproto.SSLProtocol.max_size`` bytes
(256 KiB in CPython 3.11 to 3.13), allocated whole when the connection opens and kept while it is
pooled. The dispatcher keeps as many connections to the API server as it has creates in flight (up to
the API client's pool of 100), so on a TLS API server those buffers alone were about 25 MiB of its RSS
(bench/README.md, "Memory on the real stack"). A TLS record carries at most 16 KiB of data, so a 16 KiB
buffer still takes a whole record per read; what a smaller buffer costs is more reads of a large answer
(a page of a LIST): about 0.5 ms more CPU per MiB than at 64 KiB (both ends of a local connection, on
this machine), where a created Job's answer is 7 KiB and fits in one read either way.

Process-wide, so it is set by the process entry point (``bucketrun dispatcher|watcher|serve|poll``)
before the first connection opens; connections opened before keep their buffer.
"""

from __future__ import annotations

from asyncio import sslproto

TLS_READ_BUFFER_BYTES = 16 * 1024
"""The receive buffer of each TLS connection the processes open (asyncio's default is 256 KiB)."""


def limit_tls_read_buffers(size: int = TLS_READ_BUFFER_BYTES) -> int | None:
    """Make each TLS connection opened from now on read into at most *size* bytes (never raises asyncio's
    own size). The size before, or None where this Python's asyncio has no such attribute (then nothing
    changed)."""
    if size <= 0:
        raise ValueError(f"a TLS read buffer needs a positive size, got {size}")
    previous = getattr(sslproto.SSLProtocol, "max_size", None)
    if not isinstance(previous, int):
        return None
    sslproto.SSLProtocol.max_size = min(previous, size)
    return previous
