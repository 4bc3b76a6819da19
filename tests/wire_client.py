"""The handlers as a client sees them, without sockets: each request is encoded as a client sends
it, decoded as the server reads it, handled by an in-memory broker, and the response encoded and
decoded again, so every assertion is on what a client would read.

Test modules import it by name (`from wire_client import WireClient, memory_broker`); see
record_batches.py for why that works under pytest.
"""

from trioka.apis import APIS
from trioka.apis.context import Connection, RequestContext
from trioka.broker import BrokerState
from trioka.config import Config, Listener
from trioka.log.files import FileRegion
from trioka.wire import protocol

# Advertised in Metadata and FindCoordinator answers; nothing listens there.
ADVERTISED = Listener("PLAINTEXT", "127.0.0.1", 9999)


def memory_broker(configs: dict | None = None, *, clock=None) -> BrokerState:
    """An opened broker keeping its logs in memory; close it with `close()`."""
    broker = BrokerState(Config({"memory": True, "listeners": "PLAINTEXT://127.0.0.1:0",
                                 **(configs or {})}), clock=clock)
    broker.open()
    broker.set_listeners([ADVERTISED])
    return broker


def sent_bytes(chunk) -> bytes:
    """A response chunk as the socket would carry it: a disk log's file region (sendfile) is
    read, then let go of, as the server does once it is sent."""
    if isinstance(chunk, FileRegion):
        try:
            return chunk.read()
        finally:
            chunk.close()
    return chunk


class WireClient:
    def __init__(self, broker: BrokerState):
        self.broker = broker
        self.correlation = 0

    async def call(self, api_key: int, version: int, client_id: str = "wire-client", **fields):
        """The decoded response to one request built from `fields` (None when none is due)."""
        request = protocol.request_class(api_key)(**fields)
        self.correlation += 1
        frame = protocol.encode_request(api_key, version, self.correlation, client_id,
                                        request)[4:]
        header, pos = protocol.parse_request_header(frame)
        decoded = protocol.decode_request_body(header, frame, pos)
        ctx = RequestContext(header, Connection("10.1.2.3:40000", None))
        response = await APIS[api_key].handle(self.broker, decoded, ctx)
        if response is None:
            return None
        chunks = protocol.encode_response(api_key, version, self.correlation, response)
        data = b"".join(sent_bytes(c) for c in chunks)
        correlation, message = protocol.decode_response(api_key, version, data[4:])
        assert correlation == self.correlation
        return message
