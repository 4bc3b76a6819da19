"""What a handler knows about the request it serves besides the message itself."""

from trioka.wire.protocol import RequestHeader

ANONYMOUS = "User:ANONYMOUS"   # Kafka's KafkaPrincipal.ANONYMOUS


class Connection:
    """One client connection: where it came from and what the client said it is (KIP-511)."""
    __slots__ = ("peer", "listener", "client_software_name", "client_software_version",
                 "closing", "id", "muted_until", "principal", "security_protocol",
                 "authenticator")

    def __init__(self, peer: str, listener, connection_id: str = ""):
        self.peer = peer
        self.listener = listener
        # Kafka's connection id, "local address-peer address-index" (the request log's).
        self.id = connection_id
        self.client_software_name: str | None = None
        self.client_software_version: str | None = None
        self.closing = False   # set by a handler that wants the connection closed after it
        # Set by a throttle control (KIP-219): nothing more is read from the connection until
        # this time of the broker's monotonic clock; 0: not muted.
        self.muted_until = 0.0
        # The listener's security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) and who
        # the client is, as Kafka's KafkaPrincipal "User:<name>": ANONYMOUS until a client
        # certificate (SSL listeners with ssl.client.auth, security/tls.py) or SASL names it;
        # under SASL_SSL the SASL identity wins, as in Kafka.
        self.security_protocol: str = getattr(listener, "security_protocol", "PLAINTEXT")
        self.principal = ANONYMOUS
        # On a SASL listener, the connection's SASL state (security/sasl/authenticator.py),
        # set by the server; None elsewhere.
        self.authenticator = None


class RequestContext:
    __slots__ = ("header", "connection", "log_entry", "large_response")

    def __init__(self, header: RequestHeader, connection: Connection):
        self.header = header
        self.connection = connection
        self.log_entry = None   # the request's entry in the request log (observe/), when on
        # Set by a handler whose response holds thousands of elements (a Fetch or Metadata of
        # 10,000 partitions): the server encodes it in a worker thread, not on the event loop.
        self.large_response = False

    @property
    def api_version(self) -> int:
        return self.header.api_version

    @property
    def client_id(self) -> str:
        return self.header.client_id or ""
