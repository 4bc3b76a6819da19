"""What a handler knows about the request it serves besides the message itself."""

from trioka.wire.protocol import RequestHeader


class Connection:
    """One client connection: where it came from and what the client said it is (KIP-511)."""
    __slots__ = ("peer", "listener", "client_software_name", "client_software_version",
                 "closing")

    def __init__(self, peer: str, listener):
        self.peer = peer
        self.listener = listener
        self.client_software_name: str | None = None
        self.client_software_version: str | None = None
        self.closing = False   # set by a handler that wants the connection closed after it


class RequestContext:
    __slots__ = ("header", "connection")

    def __init__(self, header: RequestHeader, connection: Connection):
        self.header = header
        self.connection = connection

    @property
    def api_version(self) -> int:
        return self.header.api_version

    @property
    def client_id(self) -> str:
        return self.header.client_id or ""
