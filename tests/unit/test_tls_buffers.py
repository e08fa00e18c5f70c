"""Each TLS connection's receive buffer is asyncio's SSLProtocol.max_size, set once per process."""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from collections.abc import Iterator
from pathlib import Path

import pytest

from bucketrun.devtools.kube_pki import ClusterPki
from dispatcher.runtime.tls_buffers import TLS_READ_BUFFER_BYTES, limit_tls_read_buffers


@pytest.fixture(autouse=True)
def asyncio_default() -> Iterator[int]:
    """Put asyncio's own size back after each test (the setting is process-wide)."""
    default = sslproto.SSLProtocol.max_size
    yield default
    sslproto.SSLProtocol.max_size = default


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A serving certificate for 127.0.0.1, its key, and the CA that signed it (the local stack's PKI)."""
    pki = ClusterPki(tmp_path_factory.mktemp("pki"))
    serving = pki.issue_serving_cert("127.0.0.1", ["127.0.0.1"])
    return serving.cert, serving.key, pki.ca.cert


async def client_buffer(cert: Path, key: Path, ca: Path) -> int:
    """Open a TLS connection to a local server: the size of the client's receive buffer."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(ca))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context)
        try:
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            protocol = writer.transport._ssl_protocol  # type: ignore[attr-defined]
            return len(protocol.get_buffer(-1))  # what a read of any size may fill
        finally:
            writer.close()
            await writer.wait_closed()


async def test_connections_opened_afterwards_read_into_the_smaller_buffer(
    asyncio_default: int, certificate: tuple[Path, Path, Path]
) -> None:
    assert await client_buffer(*certificate) == asyncio_default == 256 * 1024  # CPython's own
    assert limit_tls_read_buffers() == asyncio_default
    assert await client_buffer(*certificate) == TLS_READ_BUFFER_BYTES == 16 * 1024


def test_it_never_raises_asyncio_s_own_size_and_refuses_nonsense(asyncio_default: int) -> None:
    limit_tls_read_buffers(1 << 30)
    assert sslproto.SSLProtocol.max_size == asyncio_default
    with pytest.raises(ValueError, match="got 0"):
        limit_tls_read_buffers(0)
    assert sslproto.SSLProtocol.max_size == asyncio_default
