"""The TLS transport of SSL and SASL_SSL listeners (security/tls.py): the handshake, batched
decryption of what arrives, and responses (bytes and file regions) cut into pieces that are
encrypted while the piece before them is sent. In-process, over a socket pair, with trio's own
SSLStream as the client."""

import os
import ssl

import pytest
import trio

from trioka.log.files import FileRegion
from trioka.security import tls

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from trioka.cli.certs import write
    return write(str(tmp_path_factory.mktemp("certs")))


def contexts(certs, *, client_certificate: bool = False, maximum=ssl.TLSVersion.MAXIMUM_SUPPORTED):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.maximum_version = maximum
    server.load_cert_chain(certs["broker.pem"], certs["broker.key"])
    client = ssl.create_default_context(cafile=certs["ca.pem"])
    if client_certificate:
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(certs["ca.pem"])
        client.load_cert_chain(certs["client.pem"], certs["client.key"])
    return server, client


async def connected(certs, **kwargs):
    server_context, client_context = contexts(certs, **kwargs)
    a, b = trio.socket.socketpair()
    client = trio.SSLStream(trio.SocketStream(b), client_context, server_hostname="localhost")
    results = {}

    async def accept():
        results["server"] = await tls.accept_tls(trio.SocketStream(a), server_context,
                                                 tls.parse_rules("DEFAULT"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        await client.do_handshake()
    return results["server"], client


async def receive_exactly(stream, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        data = await stream.receive_some(n - got)
        assert data, "closed early"
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def test_pieces_join_small_parts_and_cut_large_ones():
    big = bytes(range(256)) * 4096          # 1 MiB
    pieces = tls._pieces([b"head", b"er", big, b"tail"], FileRegion)
    assert b"".join(bytes(p) for p in pieces) == b"header" + big + b"tail"
    assert all(len(p) <= tls._CHUNK for p in pieces)
    assert tls._pieces([], FileRegion) == [b""]


async def test_large_request_and_response_round_trip(certs, tmp_path):
    (transport, name), client = await connected(certs)
    assert name is None
    # 3 MiB from the client: most of it decrypted in worker threads, in large passes.
    payload = os.urandom(3 * 1024 * 1024)
    received = bytearray()
    buffer = bytearray(512 * 1024)

    async def read_all():
        while len(received) < len(payload):
            n = await transport.recv_into(buffer)
            assert n
            received.extend(buffer[:n])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await client.send_all(payload)
    assert bytes(received) == payload

    # A response of bytes, a file region of 2.5 MiB and more bytes, pipelined in pieces.
    stored = os.urandom(2_621_440 + 1000)
    path = tmp_path / "segment.log"
    path.write_bytes(stored)
    fd = os.open(path, os.O_RDONLY)
    try:
        region = FileRegion(fd, 1000, len(stored) - 1000)
        chunks = [b"size", b"header" * 10, region, b"trailer"]
        expected = b"size" + b"header" * 10 + stored[1000:] + b"trailer"
        got = {}

        async def read_response():
            got["data"] = await receive_exactly(client, len(expected))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_response)
            await transport.send_all(chunks)
        assert got["data"] == expected
        assert region.fd == -1          # let go once sent
    finally:
        os.close(fd)


async def test_a_region_cut_short_breaks_the_connection(certs, tmp_path):
    (transport, _), client = await connected(certs)
    path = tmp_path / "short.log"
    path.write_bytes(b"x" * 100_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        region = FileRegion(fd, 0, 200_000)      # claims more than the file holds
        with pytest.raises(trio.BrokenResourceError, match="ended early"):
            await transport.send_all([region])
        assert region.fd == -1
    finally:
        os.close(fd)


async def test_client_certificate_names_the_principal(certs):
    (transport, name), client = await connected(certs, client_certificate=True)
    assert name == "CN=client,OU=development,O=trioka" or name.startswith("CN=client")
    await client.send_all(b"ping")
    buffer = bytearray(16)
    n = await transport.recv_into(buffer)
    assert bytes(buffer[:n]) == b"ping"


async def test_client_close_is_end_of_stream(certs):
    # TLS 1.2: no session tickets left unread by the client (its close would reset the socket).
    (transport, _), client = await connected(certs, maximum=ssl.TLSVersion.TLSv1_2)
    await client.send_all(b"last")
    await client.aclose()
    buffer = bytearray(16)
    got = b""
    with trio.fail_after(10):
        while True:
            n = await transport.recv_into(buffer)
            if not n:
                break
            got += bytes(buffer[:n])
    assert got == b"last"


async def test_untrusted_server_fails_the_handshake(certs, tmp_path):
    from trioka.cli.certs import write
    other = write(str(tmp_path / "other"))
    server_context, _ = contexts(certs)
    client_context = ssl.create_default_context(cafile=other["ca.pem"])
    a, b = trio.socket.socketpair()
    client = trio.SSLStream(trio.SocketStream(b), client_context, server_hostname="localhost")
    server_failure = []

    async def accept():
        try:
            await tls.accept_tls(trio.SocketStream(a), server_context, [])
        except (ssl.SSLError, trio.BrokenResourceError, OSError) as e:
            server_failure.append(e)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            with pytest.raises(trio.BrokenResourceError) as failed:
                await client.do_handshake()
            await client.aclose()
    assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)
    assert server_failure       # the client's alert or its close ends the server's handshake
