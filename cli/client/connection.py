"""One connection to one Kafka broker, as the tools' client makes it; and where to find the brokers.

Plain blocking sockets, every read and write bounded by a deadline; requests go one at a time, since
Kafka answers a connection's requests in order.

- Bootstrap: `parse_bootstrap` reads the `host:port[,host:port...]` list (Kafka's
  `bootstrap.servers`); the cluster client (cluster.py) connects to the first reachable one.
- Version negotiation, per connection: the first request is ApiVersions (at our newest; a broker
  that does not know it answers at v0 with UNSUPPORTED_VERSION and its own range, KIP-511, and we
  ask again). Each later request goes at min(our newest, the broker's newest) of its API, refused
  when the two ranges do not meet (`negotiate`).

Errors that the broker reports become `KafkaError` (`raise_for`: the code and the broker's message,
if any); failures on our side (no broker reachable, no version in common, a deadline passed)
`ClientError`.
"""

import itertools
import socket
import ssl
import struct
import time

from trioka.cli.client.security import ClientSecurity
from trioka.security.sasl.client import (SaslAuthenticationFailed, SaslClient,
                                         SaslExchangeError, exchange)
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

CLIENT_SOFTWARE_NAME = "trioka-cli"
CLIENT_SOFTWARE_VERSION = "0.1.0"
DEFAULT_BOOTSTRAP = "localhost:9092"

# The versions of each API this client knows how to fill in and read (min, max). Newer ones are
# left out where they change the shape we rely on: Produce v13 and Fetch v13+ name topics by id.
CLIENT_VERSIONS: dict[int, tuple[int, int]] = {
    ApiKey.PRODUCE: (3, 12),
    ApiKey.FETCH: (4, 12),
    ApiKey.LIST_OFFSETS: (1, 10),
    ApiKey.METADATA: (1, 12),
    ApiKey.OFFSET_COMMIT: (2, 9),
    ApiKey.OFFSET_FETCH: (1, 9),
    ApiKey.FIND_COORDINATOR: (1, 6),
    ApiKey.JOIN_GROUP: (2, 9),
    ApiKey.HEARTBEAT: (0, 4),
    ApiKey.LEAVE_GROUP: (0, 5),
    ApiKey.SYNC_GROUP: (0, 5),
    ApiKey.DESCRIBE_GROUPS: (0, 5),
    ApiKey.LIST_GROUPS: (0, 5),
    ApiKey.API_VERSIONS: (0, 3),
    ApiKey.CREATE_TOPICS: (2, 7),
    ApiKey.DELETE_TOPICS: (1, 6),
    ApiKey.DESCRIBE_CONFIGS: (1, 4),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    ApiKey.DESCRIBE_TRANSACTIONS: (0, 0),
    ApiKey.LIST_TRANSACTIONS: (0, 1),
    ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 0),
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: (0, 0),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.DELETE_RECORDS: (0, 2),
    ApiKey.DESCRIBE_CLUSTER: (0, 2),
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: (0, 0),
    ApiKey.DESCRIBE_CLIENT_QUOTAS: (0, 1),
    ApiKey.ALTER_CLIENT_QUOTAS: (0, 1),
    ApiKey.DESCRIBE_PRODUCERS: (0, 0),
    ApiKey.WRITE_TXN_MARKERS: (0, 1),
    ApiKey.OFFSET_DELETE: (0, 0),
    # v1+: resource pattern types (KIP-290), which `trioka acl` always sends.
    ApiKey.DESCRIBE_ACLS: (1, 3),
    ApiKey.CREATE_ACLS: (1, 3),
    ApiKey.DELETE_ACLS: (1, 3),
    ApiKey.SASL_HANDSHAKE: (1, 1),           # v1: the tokens go in SaslAuthenticate (KIP-152)
    ApiKey.SASL_AUTHENTICATE: (0, 2),
}

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


class ClientError(Exception):
    """A failure on the client's side: nothing reachable, no common version, a deadline passed."""


def raise_for(code: int, message: str | None = None, what: str = "") -> None:
    """KafkaError for a non-zero error code, with the broker's message when it gave one."""
    if code:
        try:
            known = ErrorCode(code)
        except ValueError:   # a code newer than this client: reported as Kafka's unknown error
            known = None
        name = known.name if known is not None else f"error code {code}"
        text = f"{what}: {name}" if what else name
        if message:
            text += f" ({message})"
        raise KafkaError(known if known is not None else ErrorCode.UNKNOWN_SERVER_ERROR, text)


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """`host:port[,host:port...]` -> addresses; an IPv6 host may be written in brackets."""
    out = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        if "://" in item:    # a listener spec such as PLAINTEXT://host:port
            item = item.split("://", 1)[1]
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise ClientError(f"bad bootstrap server {item!r}: expected HOST:PORT")
        out.append((host.strip("[]") or "localhost", int(port)))
    if not out:
        raise ClientError("no bootstrap servers given")
    return out


def negotiate(ours: dict[int, tuple[int, int]],
              theirs: dict[int, tuple[int, int]]) -> dict[int, int]:
    """The version to use per API: the newest both sides serve. APIs without a common version
    are left out."""
    out = {}
    for key, (lo, hi) in ours.items():
        if key not in theirs:
            continue
        their_lo, their_hi = theirs[key]
        if max(lo, their_lo) <= min(hi, their_hi):
            out[key] = min(hi, their_hi)
    return out


def api_name(key: int) -> str:
    try:
        return schema.api(key).name
    except KeyError:
        return f"api {key}"


# --------------------------------------------------------------------------------------------
# One connection
# --------------------------------------------------------------------------------------------

class BrokerConnection:
    """One TCP connection to one broker; requests go one at a time (Kafka answers in order)."""

    def __init__(self, host: str, port: int, *, client_id: str = CLIENT_SOFTWARE_NAME,
                 timeout: float = 30.0, sock: socket.socket | None = None,
                 security: ClientSecurity | None = None):
        self.host, self.port = host, port
        self.client_id = client_id
        self.timeout = timeout
        self._correlation = itertools.count(1)
        if sock is None:
            try:
                sock = socket.create_connection((host, port), timeout=timeout)
            except OSError as e:
                raise ClientError(f"cannot connect to {host}:{port}: {e}") from None
        self.sock = sock
        self.broker_versions: dict[int, tuple[int, int]] = {}
        self.versions: dict[int, int] = {}
        try:
            if security is not None and security.tls_context is not None:
                self._tls_handshake(security)
            self._api_versions()
            if security is not None and security.mechanism is not None:
                self._authenticate(security)
        except BaseException:
            self.close()
            raise

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- security (security.py): TLS first, then ApiVersions, then SASL, as Kafka's clients --

    def _tls_handshake(self, security: ClientSecurity) -> None:
        self.sock.settimeout(self.timeout)
        try:
            self.sock = security.wrap(self.sock, self.host)
        except ssl.SSLCertVerificationError as e:
            raise ClientError(f"SSL handshake with {self} failed: certificate verify failed: "
                              f"{e.verify_message}") from None
        except (ssl.SSLError, OSError) as e:
            # A broker that refuses our certificate (ssl.client.auth) closes the connection.
            raise ClientError(f"SSL handshake with {self} failed: {e}") from None

    def _authenticate(self, security: ClientSecurity) -> None:
        """KIP-152: SaslHandshake v1 names the mechanism, then its tokens travel in
        SaslAuthenticate requests until the exchange is complete (security/sasl/client.py)."""
        steps = exchange(SaslClient(security))
        response = None
        try:
            while True:
                api_key, version, request = steps.send(response)
                response = self.call(api_key, request, version=version)
        except StopIteration:
            return
        except SaslAuthenticationFailed as e:
            # As Kafka's client reports it: the broker's message (SASL_AUTHENTICATION_FAILED
            # says why), else the error's name.
            try:
                code = ErrorCode(e.code)
            except ValueError:      # a code newer than this client
                raise_for(e.code, e.message, what=e.api)
            if e.api == "SaslHandshake" and e.message is None:
                raise_for(e.code, what=e.api)
            raise KafkaError(code, e.message) from None
        except SaslExchangeError as e:
            raise ClientError(f"{self}: {e}") from None

    # -- version negotiation --

    def _api_versions(self) -> None:
        """KIP-511: ask at our newest; a broker that does not serve it answers at v0 with
        UNSUPPORTED_VERSION and its own ApiVersions range, and we ask once more within it."""
        Request = protocol.request_class(ApiKey.API_VERSIONS)
        request = Request(client_software_name=CLIENT_SOFTWARE_NAME,
                          client_software_version=CLIENT_SOFTWARE_VERSION)
        version = CLIENT_VERSIONS[ApiKey.API_VERSIONS][1]
        for _ in range(2):
            frame = self._round_trip(ApiKey.API_VERSIONS, version, request)
            (code,) = _INT16.unpack_from(frame, 4)
            if code == ErrorCode.UNSUPPORTED_VERSION:
                # The error answer is always a v0 body: error code and the broker's ranges.
                _, response = protocol.decode_response(ApiKey.API_VERSIONS, 0, frame)
                theirs = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
                common = negotiate({ApiKey.API_VERSIONS: CLIENT_VERSIONS[ApiKey.API_VERSIONS]},
                                   theirs)
                if ApiKey.API_VERSIONS not in common or common[ApiKey.API_VERSIONS] == version:
                    raise ClientError(f"{self.host}:{self.port}: no ApiVersions version in common")
                version = common[ApiKey.API_VERSIONS]
                continue
            _, response = protocol.decode_response(ApiKey.API_VERSIONS, version, frame)
            raise_for(response.error_code, what="ApiVersions")
            self.broker_versions = {k.api_key: (k.min_version, k.max_version)
                                    for k in response.api_keys}
            self.versions = negotiate(CLIENT_VERSIONS, self.broker_versions)
            return
        raise ClientError(f"{self.host}:{self.port}: ApiVersions negotiation failed")

    def version(self, api_key: int) -> int:
        """The version this connection uses for an API; ClientError when there is none."""
        v = self.versions.get(api_key)
        if v is None:
            if api_key not in self.broker_versions:
                raise ClientError(f"the broker at {self.host}:{self.port} does not support "
                                  f"{api_name(api_key)}")
            lo, hi = self.broker_versions[api_key]
            ours = CLIENT_VERSIONS.get(api_key)
            raise ClientError(f"no {api_name(api_key)} version in common with {self.host}:"
                              f"{self.port} (broker {lo}-{hi}, client "
                              f"{'none' if ours is None else f'{ours[0]}-{ours[1]}'})")
        return v

    # -- requests --

    def call(self, api_key: int, message, *, version: int | None = None,
             timeout: float | None = None, expect_response: bool = True):
        """Send one request and return the decoded response (None when none is due)."""
        if version is None:
            version = self.version(api_key)
        frame = self._round_trip(api_key, version, message, timeout=timeout,
                                 expect_response=expect_response)
        if frame is None:
            return None
        _, response = protocol.decode_response(api_key, version, frame)
        return response

    def _round_trip(self, api_key: int, version: int, message, *, timeout: float | None = None,
                    expect_response: bool = True):
        correlation_id = next(self._correlation)
        data = protocol.encode_request(api_key, version, correlation_id, self.client_id, message)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            self._settimeout(deadline)
            self.sock.sendall(data)
            if not expect_response:
                return None
            (size,) = _INT32.unpack(self._read_exactly(4, deadline))
            frame = self._read_exactly(size, deadline)
        except socket.timeout:
            self.close()
            raise ClientError(f"{api_name(api_key)} to {self}: timed out") from None
        except OSError as e:
            self.close()
            raise ClientError(f"{api_name(api_key)} to {self}: {e}") from None
        except BaseException:
            # Interrupted (Ctrl-C) between request and answer: the answer would come in front
            # of the next request's, so this connection is done.
            self.close()
            raise
        (got,) = _INT32.unpack_from(frame, 0)
        if got != correlation_id:
            self.close()
            raise ClientError(f"{self.host}:{self.port} answered correlation id {got}, "
                              f"expected {correlation_id}")
        return frame

    def _settimeout(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)

    def _read_exactly(self, n: int, deadline: float) -> bytes:
        chunks, got = [], 0
        while got < n:
            self._settimeout(deadline)
            chunk = self.sock.recv(min(n - got, 1 << 20))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

