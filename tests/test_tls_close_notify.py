"""The end of a TLS connection as Kafka's SslTransportLayer ends it: the client's close_notify is
the end of the stream, and the broker answers it with its own, so that a client which waits for
the answer before closing its socket (asyncio's SSL transport, hence aiokafka) is not left
waiting for its shutdown timeout. In-process over a socket pair; trio's SSLStream.unwrap() is
such a client: it sends close_notify and waits for the peer's."""

import ssl

import pytest
import trio

from trioka.security import tls

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from trioka.cli.certs import write
    return write(str(tmp_path_factory.mktemp("certs")))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_close_notify_is_answered(certs, version):
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.maximum_version = version
    server_context.load_cert_chain(certs["broker.pem"], certs["broker.key"])
    client_context = ssl.create_default_context(cafile=certs["ca.pem"])
    a, b = trio.socket.socketpair()
    client = trio.SSLStream(trio.SocketStream(b), client_context, server_hostname="localhost")
    accepted = {}

    async def accept():
        accepted["transport"], _ = await tls.accept_tls(trio.SocketStream(a), server_context,
                                                        tls.parse_rules("DEFAULT"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        await client.do_handshake()
    transport = accepted["transport"]
    await client.send_all(b"last")
    read = []

    async def serve():
        buffer = bytearray(64)
        while n := await transport.recv_into(buffer):
            read.append(bytes(buffer[:n]))
        read.append(None)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            raw, trailing = await client.unwrap()    # once the broker's close_notify came
    assert read == [b"last", None] and trailing == b""
    await raw.aclose()
    a.close()
