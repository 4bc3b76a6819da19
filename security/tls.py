"""TLS for SSL and SASL_SSL listeners, and for a broker reaching another broker over TLS.

Kafka's settings, each overridable per listener (`listener.name.<listener>.ssl.*`):

- The broker's key and certificate chain, its keystore: `ssl.keystore.type` PKCS12 (a file at
  `ssl.keystore.location`, opened with `ssl.keystore.password`) or PEM (a file holding the key
  and the chain, or the inline text of `ssl.keystore.certificate.chain` and `ssl.keystore.key`;
  an encrypted key opens with `ssl.key.password`). Kafka's default type is JKS; as Java does,
  a PKCS12 file loads under that type, and a real JKS file is refused with a line saying so.
- The CAs trusted for peer certificates, its truststore: `ssl.truststore.type` PKCS12 or PEM,
  from `ssl.truststore.location` or the inline `ssl.truststore.certificates`.
- `ssl.client.auth`: `required` (a client without a certificate the truststore trusts fails the
  handshake), `requested` (a certificate is asked for; without one the client is ANONYMOUS),
  `none` (none is asked for).
- `ssl.enabled.protocols` (TLSv1.2, TLSv1.3) bound the versions; `ssl.protocol` names the
  newest version the context speaks (TLSv1.3 or TLS: both; TLSv1.2: 1.2 only).

The principal of a client that shows a certificate is `User:<name>`, the name drawn from the
certificate's subject DN (RFC 2253, as Java's X500Principal.getName() writes it:
`CN=client,OU=dev,O=trioka`) by `ssl.principal.mapping.rules` (KIP-371, Kafka's
SslPrincipalMapper): a comma-separated list of `RULE:pattern/replacement/[L|U]` and `DEFAULT`.
The first rule whose pattern matches the whole DN gives the name (its replacement with `$1`
group references, lower- or upper-cased by /L or /U); DEFAULT gives the DN itself; a DN no rule
matches fails the client's authentication.

PKCS12 stores need the `cryptography` package (the `tls` extra), imported only when one is
loaded; PEM stores use the standard library alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import tempfile

import trio

from trioka.node.threads import InThread

# --- ssl.principal.mapping.rules (Kafka's SslPrincipalMapper, same expressions) ---

_RULE = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_RULE_PARSER = re.compile(_RULE)
_RULE_SPLITTER = re.compile(r"\s*(" + _RULE + r")\s*(,\s*|$)")


class NoMatchingRule(ValueError):
    """No mapping rule applies to a certificate's DN: the client's authentication fails."""


class Rule:
    """One rule: DEFAULT (the DN as it is), or a pattern, its replacement and a case flag."""
    __slots__ = ("pattern", "replacement", "lower", "upper")

    def __init__(self, pattern: str | None = None, replacement: str = "", lower: bool = False,
                 upper: bool = False):
        self.pattern = None if pattern is None else re.compile(pattern)
        self.replacement = replacement
        self.lower = lower
        self.upper = upper

    @property
    def is_default(self) -> bool:
        return self.pattern is None

    def apply(self, dn: str) -> str | None:
        if self.pattern is None:
            return dn
        if self.pattern.fullmatch(dn) is None:
            return None
        result = self.pattern.sub(lambda m: _expand(self.replacement, m), dn)
        if self.lower:
            return result.lower()
        if self.upper:
            return result.upper()
        return result

    def __repr__(self) -> str:
        # Kafka's Rule.toString, which its tests compare against.
        if self.pattern is None:
            return "DEFAULT"
        flag = "/L" if self.lower else "/U" if self.upper else ""
        return f"RULE:{self.pattern.pattern}/{self.replacement}{flag}"


def _expand(replacement: str, match: re.Match) -> str:
    """Java's Matcher replacement text: `$n` is group n (a reference past the last group is
    literal, as Kafka escapes it), a backslash makes the next character literal."""
    out = []
    i, n = 0, len(replacement)
    groups = match.re.groups
    while i < n:
        c = replacement[i]
        if c == "\\" and i + 1 < n:
            out.append(replacement[i + 1])
            i += 2
        elif c == "$" and i + 1 < n and replacement[i + 1].isdigit():
            j = i + 2
            number = int(replacement[i + 1])
            while j < n and replacement[j].isdigit() and number * 10 + int(replacement[j]) <= groups:
                number = number * 10 + int(replacement[j])
                j += 1
            if number > groups:
                out.append(replacement[i:j])
            else:
                out.append(match.group(number) or "")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_rules(text: str) -> list[str]:
    """The rules of a `ssl.principal.mapping.rules` value, as Kafka splits it (empty ones
    included; parse_rules drops them)."""
    return [m.group(1) for m in _RULE_SPLITTER.finditer(text.strip())]


def parse_rules(text: str) -> list[Rule]:
    """`ssl.principal.mapping.rules` -> its rules; ValueError naming an invalid rule."""
    rules = []
    for item in split_rules(text):
        m = _RULE_PARSER.match(item)
        if m is None or m.end() != len(item):
            raise ValueError(f"ssl.principal.mapping.rules: invalid rule {item!r}")
        if m.group(1) is not None:
            rules.append(Rule())
        elif m.group(2) is not None:
            try:
                rules.append(Rule(m.group(2), m.group(4), m.group(6) == "L", m.group(6) == "U"))
            except re.error as e:
                raise ValueError(f"ssl.principal.mapping.rules: rule {item!r}: {e}") from None
    return rules


def principal_name(dn: str, rules: list[Rule]) -> str:
    """The principal name a DN maps to; NoMatchingRule when no rule applies."""
    for rule in rules:
        name = rule.apply(dn)
        if name is not None:
            return name
    raise NoMatchingRule(f"No rules apply to {dn}, rules {rules}")


# --- the subject DN of a peer certificate, as RFC 2253 writes it ---

# The attribute names of RFC 2253 (and Java's X500Principal) for Python's ssl keywords.
_DN_KEYWORDS = {
    "commonName": "CN", "countryName": "C", "localityName": "L",
    "stateOrProvinceName": "ST", "organizationName": "O", "organizationalUnitName": "OU",
    "streetAddress": "STREET", "domainComponent": "DC", "userId": "UID",
}
# Python's ssl names for the other attributes Java prints by OID.
_DN_OIDS = {"emailAddress": "1.2.840.113549.1.9.1", "serialNumber": "2.5.4.5",
            "title": "2.5.4.12", "givenName": "2.5.4.42", "surname": "2.5.4.4"}


def _escape_dn_value(value: str) -> str:
    out = []
    for i, c in enumerate(value):
        if c in ',+"\\<>;' or (c == "#" and i == 0) or (c == " " and i in (0, len(value) - 1)):
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def subject_dn(cert: dict) -> str:
    """The subject of `SSLObject.getpeercert()` as an RFC 2253 string, the most specific RDN
    first (the reverse of the certificate's order), attributes within an RDN joined by '+'."""
    rdns = []
    for rdn in reversed(cert.get("subject", ())):
        avas = []
        for key, value in rdn:
            name = _DN_KEYWORDS.get(key) or _DN_OIDS.get(key) or key
            avas.append(f"{name}={_escape_dn_value(value)}")
        rdns.append("+".join(avas))
    return ",".join(rdns)


# --- contexts ---

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL,
               "required": ssl.CERT_REQUIRED}


class TlsConfigError(ValueError):
    """A TLS setting that cannot be used; the message names the key (and listener)."""


def _setting(config, listener: str | None, key: str):
    return config.get(key) if listener is None else config.listener_value(listener, key)


def _where(listener: str | None, key: str) -> str:
    return key if listener is None else f"{key} (listener {listener})"


def _versions(config, listener: str | None) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    enabled_text = _setting(config, listener, "ssl.enabled.protocols")
    enabled = [p.strip() for p in enabled_text.split(",") if p.strip()]
    unknown = [p for p in enabled if p not in _VERSIONS]
    if unknown or not enabled:
        raise TlsConfigError(f"{_where(listener, 'ssl.enabled.protocols')}: "
                             f"{enabled_text!r}: only TLSv1.2 and TLSv1.3 are supported")
    protocol = _setting(config, listener, "ssl.protocol")
    if protocol not in ("TLS", "TLSv1.2", "TLSv1.3"):
        raise TlsConfigError(f"{_where(listener, 'ssl.protocol')}: {protocol!r} is not "
                             f"supported (TLSv1.3, TLSv1.2 or TLS)")
    lowest = min(_VERSIONS[p] for p in enabled)
    highest = max(_VERSIONS[p] for p in enabled)
    if protocol == "TLSv1.2":
        highest = min(highest, ssl.TLSVersion.TLSv1_2)
    if lowest > highest:
        raise TlsConfigError(f"{_where(listener, 'ssl.enabled.protocols')}: no enabled "
                             f"protocol at or below ssl.protocol {protocol}")
    return lowest, highest


def _read(path: str, key: str, listener: str | None) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TlsConfigError(f"{_where(listener, key)}: cannot read {path}: "
                             f"{e.strerror}") from None


def _pkcs12(data: bytes, password: str, key: str, listener: str | None):
    """(private key, certificate, other certificates) of a PKCS12 store."""
    try:
        from cryptography.hazmat.primitives.serialization import pkcs12
    except ImportError:
        raise TlsConfigError(f"{_where(listener, key)}: PKCS12 stores need the cryptography "
                             f"package (pip install 'trioka[tls]')") from None
    try:
        return pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError as e:
        if data[:4] == b"\xfe\xed\xfe\xed":
            raise TlsConfigError(f"{_where(listener, key)}: a JKS store cannot be read here: "
                                 f"convert it to PKCS12 (keytool -importkeystore "
                                 f"-deststoretype pkcs12) or use PEM") from None
        raise TlsConfigError(f"{_where(listener, key)}: not a PKCS12 store, or a wrong "
                             f"password ({e})") from None


def _store_type(config, listener: str | None, key: str) -> str:
    kind = _setting(config, listener, key).upper()
    if kind not in ("JKS", "PKCS12", "PEM"):
        raise TlsConfigError(f"{_where(listener, key)}: {kind!r} is not a supported store "
                             f"type (PKCS12, PEM, or JKS for a PKCS12 file)")
    return kind


def load_keystore(context: ssl.SSLContext, config, listener: str | None) -> bool:
    """Load the keystore into `context`; False when none is configured."""
    kind = _store_type(config, listener, "ssl.keystore.type")
    location = _setting(config, listener, "ssl.keystore.location")
    key_password = _setting(config, listener, "ssl.key.password") or None
    if kind == "PEM":
        chain = _setting(config, listener, "ssl.keystore.certificate.chain")
        key = _setting(config, listener, "ssl.keystore.key")
        if location and (chain or key):
            raise TlsConfigError(f"{_where(listener, 'ssl.keystore.location')}: set either "
                                 f"the location or ssl.keystore.certificate.chain/key, not both")
        if location:
            _read(location, "ssl.keystore.location", listener)    # a clear error first
            _load_chain(context, location, None, key_password, listener)
            return True
        if chain or key:
            if not (chain and key):
                raise TlsConfigError(f"{_where(listener, 'ssl.keystore.key')}: inline PEM "
                                     f"needs both ssl.keystore.certificate.chain and "
                                     f"ssl.keystore.key")
            _load_inline(context, chain, key, key_password, listener)
            return True
        return False
    if not location:
        return False
    data = _read(location, "ssl.keystore.location", listener)
    password = _setting(config, listener, "ssl.keystore.password")
    private_key, cert, extra = _pkcs12(data, password, "ssl.keystore.location", listener)
    if private_key is None or cert is None:
        raise TlsConfigError(f"{_where(listener, 'ssl.keystore.location')}: {location} holds "
                             f"no private key with its certificate")
    from cryptography.hazmat.primitives import serialization
    # The key goes to load_cert_chain encrypted with a one-time password: it never reaches
    # the disk in the clear.
    one_time = os.urandom(24).hex()
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time.encode())).decode()
    chain_pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                        for c in [cert, *(extra or [])])
    _load_inline(context, chain_pem, key_pem, one_time, listener)
    return True


def _load_chain(context, certfile: str, keyfile: str | None, password: str | None,
                listener: str | None) -> None:
    try:
        context.load_cert_chain(certfile, keyfile, password=password)
    except ssl.SSLError as e:
        raise TlsConfigError(f"{_where(listener, 'ssl.keystore.location')}: no usable key and "
                             f"certificate chain ({e.reason or e}); an encrypted key needs "
                             f"ssl.key.password") from None


def _load_inline(context, chain: str, key: str, password: str | None,
                 listener: str | None) -> None:
    """load_cert_chain reads files only: inline PEM goes through a file private to this
    process (mode 0600 in a 0700 directory), removed at once."""
    with tempfile.TemporaryDirectory(prefix="trioka-tls-") as tmp:
        path = os.path.join(tmp, "keystore.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.strip() + "\n" + chain.strip() + "\n")
        try:
            context.load_cert_chain(path, password=password)
        except ssl.SSLError as e:
            raise TlsConfigError(f"{_where(listener, 'ssl.keystore.key')}: no usable key and "
                                 f"certificate chain ({e.reason or e}); an encrypted key needs "
                                 f"ssl.key.password") from None


def load_truststore(context: ssl.SSLContext, config, listener: str | None) -> bool:
    """Load the trusted CAs into `context`; False when none are configured."""
    kind = _store_type(config, listener, "ssl.truststore.type")
    location = _setting(config, listener, "ssl.truststore.location")
    inline = _setting(config, listener, "ssl.truststore.certificates")
    if kind == "PEM" and inline:
        cadata = inline
    elif location:
        data = _read(location, "ssl.truststore.location", listener)
        if kind == "PEM":
            cadata = data.decode("ascii", "replace")
        else:
            password = _setting(config, listener, "ssl.truststore.password")
            key, cert, extra = _pkcs12(data, password, "ssl.truststore.location", listener)
            from cryptography.hazmat.primitives import serialization
            certs = ([cert] if cert is not None else []) + list(extra or [])
            if not certs:
                raise TlsConfigError(f"{_where(listener, 'ssl.truststore.location')}: "
                                     f"{location} holds no certificate")
            cadata = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
    else:
        return False
    try:
        context.load_verify_locations(cadata=cadata)
    except (ssl.SSLError, ValueError) as e:
        key = "ssl.truststore.certificates" if inline and kind == "PEM" \
            else "ssl.truststore.location"
        raise TlsConfigError(f"{_where(listener, key)}: no usable certificate ({e})") from None
    return True


def client_auth(config, listener: str) -> str:
    """`ssl.client.auth` as a listener applies it (lower-cased). On a SASL_SSL listener Kafka
    applies only the listener-prefixed key, `listener.name.<listener>.ssl.client.auth` (KIP-684):
    its clients authenticate with SASL, and a broker-wide `ssl.client.auth=required` written for
    the SSL listeners asks them for no certificate."""
    from trioka.config import LISTENER_PREFIX, security_protocol_map
    if security_protocol_map(config).get(listener.upper()) == "SASL_SSL":
        prefixed = f"{LISTENER_PREFIX}{listener.lower()}.ssl.client.auth"
        return str(config.listener_overrides().get(prefixed, "none")).strip().lower()
    return _setting(config, listener, "ssl.client.auth").lower()


def server_context(config, listener: str) -> ssl.SSLContext:
    """The context a TLS listener serves with; TlsConfigError (one line) when it cannot be
    made. A listener with client authentication needs a truststore."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = _versions(config, listener)
    auth = client_auth(config, listener)
    if auth not in CLIENT_AUTH:
        raise TlsConfigError(f"{_where(listener, 'ssl.client.auth')}: {auth!r} is not one of "
                             f"required, requested, none")
    if not load_keystore(context, config, listener):
        raise TlsConfigError(f"listener {listener} uses TLS but has no keystore: set "
                             f"ssl.keystore.location (ssl.keystore.type PKCS12 or PEM) or "
                             f"ssl.keystore.certificate.chain and ssl.keystore.key")
    has_trust = load_truststore(context, config, listener)
    if auth != "none" and not has_trust:
        raise TlsConfigError(f"{_where(listener, 'ssl.client.auth')} is {auth}, but no "
                             f"truststore is set to check client certificates: set "
                             f"ssl.truststore.location or ssl.truststore.certificates")
    context.verify_mode = CLIENT_AUTH[auth]
    return context


def client_context(config, listener: str | None) -> ssl.SSLContext:
    """The context a broker connects to another broker's TLS listener with: the broker's own
    keystore as its client certificate (as Kafka brokers do), its truststore for the peer's
    certificate (the system CAs when none is set), and host name checking unless
    `ssl.endpoint.identification.algorithm` is empty."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version, context.maximum_version = _versions(config, listener)
    load_keystore(context, config, listener)
    if not load_truststore(context, config, listener):
        context.load_default_certs()
    algorithm = _setting(config, listener, "ssl.endpoint.identification.algorithm")
    context.check_hostname = bool(algorithm)
    return context


class JaasSslOptions:
    """JAAS options read as TLS client settings, Kafka's JaasOptionsUtils.createSSLSocketFactory:
    an https JWKS or token endpoint is reached with the `ssl.*` options of the OAUTHBEARER login
    module's JAAS entry (`ssl.truststore.location="ca.pem" ssl.truststore.type="PEM"`), Kafka's
    client defaults for the others (the system's CAs when no truststore is named)."""

    def __init__(self, options: dict[str, str]):
        self.options = options

    def get(self, key: str):
        if key in self.options:
            return self.options[key]
        from trioka.config import KEYS
        return KEYS[key][1]


def https_context(options: dict[str, str], where: str) -> ssl.SSLContext:
    """The TLS context for an https endpoint of OAUTHBEARER, from the JAAS `options`;
    TlsConfigError naming `where` (the JAAS entry's key) and the option at fault."""
    try:
        return client_context(JaasSslOptions(options), None)
    except TlsConfigError as e:
        raise TlsConfigError(f"{where}: option {e}") from None


def mapping_rules(config, listener: str) -> list[Rule]:
    return parse_rules(config.listener_value(listener, "ssl.principal.mapping.rules"))


def check_config(config) -> None:
    """Everything about listeners and TLS that would stop a start, checked before it: the
    protocol map, the inter-broker listener, each TLS listener's stores and mapping rules.
    ValueError, one line naming the key."""
    from trioka.config import inter_broker_listener, listeners_of
    listeners = listeners_of(config)
    inter_broker_listener(config, listeners)
    for listener in listeners:
        if listener.uses_tls:
            server_context(config, listener.name)
            mapping_rules(config, listener.name)


# --- serving a TLS connection ---
#
# A TLS connection is the ssl module's SSLObject over two memory BIOs, driven here rather than
# through trio.SSLStream, for two reasons:
# - Batching: OpenSSL unwraps one TLS record (at most 16 KiB of plaintext) per read call. The
#   socket is read in large pieces and every whole record they hold is decrypted in one pass, so
#   a 1 MB produce request costs a handful of socket reads and event-loop turns, not 64.
# - Off the loop: OpenSSL releases the GIL while it encrypts and decrypts, so (de)cryption of a
#   large piece (a batch arriving, a fetch response leaving) runs in a worker thread, beside the
#   event loop rather than on it: other connections keep being served while a large response is
#   encrypted, and the broker's TLS throughput can use a second core.
# One connection's requests are read, handled and answered one after another (server.py), so its
# SSLObject is used by one thread at a time.

_RECEIVE = 256 * 1024      # ciphertext read from the socket at once, at most
_IN_THREAD = 64 * 1024     # (de)cryption of this much or more happens in a worker thread
# File regions (stored batches of a Fetch) are read into memory and encrypted this much at a
# time: sendfile cannot go through TLS.
_CHUNK = 256 * 1024


class TlsTransport:
    """A client connection after its TLS handshake, with the socket's two calls the server
    uses: `recv_into` and `send_all` (a response's chunks: bytes and file regions)."""

    __slots__ = ("sock", "tls", "incoming", "outgoing")

    def __init__(self, sock, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO):
        self.sock = sock
        self.tls = tls
        self.incoming = incoming
        self.outgoing = outgoing

    def getpeercert(self) -> dict | None:
        return self.tls.getpeercert()

    # Reading.

    async def recv_into(self, buffer) -> int:
        """Plaintext into `buffer`: as much as the ciphertext received so far holds, at least one
        byte; 0 once the client has closed the connection."""
        view = memoryview(buffer)
        while True:
            if self.incoming.pending >= _IN_THREAD:
                got = await trio.to_thread.run_sync(self._decrypt_into, view)
            else:
                got = self._decrypt_into(view)
            if self.outgoing.pending:      # a TLS 1.3 KeyUpdate answer, an alert
                data = self.outgoing.read()
                if not self.incoming.eof:
                    await self.send_ciphertext(data)
                else:
                    # Our close_notify answering the client's (as Kafka's SslTransportLayer
                    # answers on close): a client that waits for it (asyncio's, aiokafka)
                    # closes at once. One that already closed its socket is not waited for.
                    with contextlib.suppress(OSError, trio.BrokenResourceError):
                        await self.send_ciphertext(data)
            if got:
                return got
            if self.incoming.eof:
                return 0
            if not await self.receive_ciphertext():
                return 0

    def _decrypt_into(self, view: memoryview) -> int:
        """Every whole record the incoming BIO holds, decrypted into `view` (up to its size)."""
        got, size = 0, len(view)
        while got < size:
            try:
                n = self.tls.read(size - got, view[got:])
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                n = 0
            if not n:
                # The client's close_notify (which the ssl module reads as 0 bytes): the end of
                # the stream, answered with ours.
                with contextlib.suppress(ssl.SSLError):
                    self.tls.unwrap()
                self.incoming.write_eof()
                break
            got += n
        return got

    async def receive_ciphertext(self) -> bool:
        """Ciphertext from the socket into the incoming BIO; False at the end of the stream."""
        data = await self.sock.recv(_RECEIVE)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    # Writing.

    async def send_all(self, chunks: list) -> None:
        """A response: its in-memory parts and file regions cut into pieces of at most _CHUNK
        bytes, each encrypted while the one before it goes out on the socket (pipelined, so the
        client can decrypt one piece while the broker encrypts the next)."""
        from trioka.log.files import FileRegion
        try:
            pieces = _pieces(chunks, FileRegion)
            ciphertext = await self._encrypt_piece(pieces[0], None)
            for piece in pieces[1:]:
                ciphertext = await self._encrypt_piece(piece, ciphertext)
            await self.send_ciphertext(ciphertext)
        finally:
            for chunk in chunks:
                if type(chunk) is FileRegion:
                    chunk.close()

    async def _encrypt_piece(self, piece, previous: bytes | None) -> bytes:
        """`piece` encrypted, while the `previous` piece's ciphertext is sent. Pieces of
        _IN_THREAD bytes or more are read and encrypted in a worker thread."""
        size = len(piece) if type(piece) is not tuple else piece[2]
        if size < _IN_THREAD:
            if previous is not None:
                await self.send_ciphertext(previous)
            return self._encrypt_plaintext_or_region(piece)
        job = InThread(self._encrypt_plaintext_or_region, piece)
        if previous is not None:
            await self.send_ciphertext(previous)
        return await job.result()

    def _encrypt_plaintext_or_region(self, piece) -> bytes:
        if type(piece) is tuple:      # (fd, offset, size): a part of a file region
            fd, offset, size = piece
            piece = os.pread(fd, size, offset)
            if len(piece) < size:
                raise trio.BrokenResourceError("the file region ended early")
        self.tls.write(piece)
        return self.outgoing.read()

    async def send_ciphertext(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = await self.sock.send(view)
            view = view[sent:]


def _pieces(chunks: list, region_type) -> list:
    """A response's chunks as pieces to encrypt: runs of in-memory parts joined, and every piece
    (joined bytes, or an (fd, offset, size) part of a file region) at most _CHUNK bytes."""
    pieces: list = []
    pending: list = []
    for chunk in chunks:
        if type(chunk) is region_type:
            if pending:
                pieces += _cut(b"".join(pending))
                pending = []
            for at in range(0, chunk.length, _CHUNK):
                pieces.append((chunk.fd, chunk.offset + at, min(_CHUNK, chunk.length - at)))
        else:
            pending.append(chunk)
    if pending or not pieces:
        pieces += _cut(b"".join(pending))
    return pieces


def _cut(data: bytes) -> list:
    if len(data) <= _CHUNK:
        return [data]
    view = memoryview(data)
    return [view[at:at + _CHUNK] for at in range(0, len(data), _CHUNK)]


async def accept_tls(stream: trio.SocketStream, context: ssl.SSLContext,
                     rules: list[Rule]) -> tuple[TlsTransport, str | None]:
    """The TLS handshake of a new connection: the transport and the principal name drawn from
    the client's certificate (None: the client showed none). ssl.SSLError,
    trio.BrokenResourceError or NoMatchingRule when the client cannot be let in."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    transport = TlsTransport(stream.socket, tls, incoming, outgoing)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                await transport.send_ciphertext(outgoing.read())
            if not await transport.receive_ciphertext():
                raise trio.BrokenResourceError("the client closed the connection during the "
                                               "TLS handshake") from None
        except ssl.SSLError:
            # The alert that tells the client why (unknown CA, no certificate), then the error.
            if outgoing.pending:
                with trio.move_on_after(1):
                    await transport.send_ciphertext(outgoing.read())
            raise
    if outgoing.pending:      # the server's last flight; TLS 1.3 session tickets
        await transport.send_ciphertext(outgoing.read())
    cert = tls.getpeercert()
    name = principal_name(subject_dn(cert), rules) if cert else None
    return transport, name
