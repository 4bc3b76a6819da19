"""How the tools' client secures a connection: Kafka's client security settings, TLS and SASL.

Kafka's tools take their client settings from a properties file (`--command-config FILE`,
`$TRIOKA_COMMAND_CONFIG`), in Java's `.properties` syntax (`parse_properties`). The keys, with
Kafka's names and defaults:

    security.protocol                      PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL
    ssl.truststore.location / .password    the CAs that sign the brokers' certificates (PEM or
    ssl.truststore.type                    PKCS12; without a truststore the system's CAs)
    ssl.keystore.location / .password      a client certificate and its key (PEM: key and chain
    ssl.keystore.type / ssl.key.password   in one file; or PKCS12), for ssl.client.auth
    ssl.endpoint.identification.algorithm  https (default): the broker's host name must match
                                           its certificate; empty: not checked
    ssl.protocol, ssl.enabled.protocols    the TLS versions (TLSv1.3, TLSv1.2)
    sasl.mechanism                         GSSAPI (Kafka's default; not served), PLAIN,
                                           SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER
    sasl.jaas.config                       one JAAS login module entry, with the credentials
    sasl.username / sasl.password          librdkafka's names, used when sasl.jaas.config is
                                           not set (PLAIN and SCRAM)

A key Kafka's clients would not know is reported (Kafka's "was supplied but isn't a known
config") and has no effect; a value that cannot be used is a `SecurityConfigError` naming the key.

A connection then goes as the Java client's: TCP, the TLS handshake (SSL, SASL_SSL), ApiVersions,
and on SASL listeners SaslHandshake v1 naming the mechanism followed by the mechanism's tokens in
SaslAuthenticate requests (KIP-152). The broker's SASL_AUTHENTICATION_FAILED ends it with the
broker's message. The exchange and the mechanisms' client sides are security/sasl/client.py's:
  PLAIN        one token `authzid NUL username NUL password` (RFC 4616)
  SCRAM-SHA-*  client-first, client-final with the proof; the server's signature is checked, so
               a broker that does not hold the credential cannot pretend (RFC 5802)
  OAUTHBEARER  an unsecured JWS built from the JAAS options, as Kafka's
               OAuthBearerUnsecuredLoginCallbackHandler: unsecuredLoginStringClaim_<name>,
               unsecuredLoginNumberClaim_<name>, unsecuredLoginListClaim_<name> (the first
               character separates the items), unsecuredLoginExtension_<name>,
               unsecuredLoginPrincipalClaimName (sub), unsecuredLoginLifetimeSeconds (3600)
"""

import ssl
import time

from trioka.security import tls
# The mechanisms' client side lives with SASL (security/sasl/client.py): nodes use it too.
from trioka.security.sasl.client import SaslClient, SaslExchangeError  # noqa: F401
from trioka.security.sasl.jaas import parse_jaas_config

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("GSSAPI", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")

# Kafka's client defaults for the keys honoured here.
DEFAULTS = {
    "security.protocol": "PLAINTEXT",
    "ssl.truststore.location": "", "ssl.truststore.password": "", "ssl.truststore.type": "JKS",
    "ssl.truststore.certificates": "",
    "ssl.keystore.location": "", "ssl.keystore.password": "", "ssl.keystore.type": "JKS",
    "ssl.key.password": "", "ssl.keystore.certificate.chain": "", "ssl.keystore.key": "",
    "ssl.endpoint.identification.algorithm": "https",
    "ssl.protocol": "TLSv1.3", "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
    "sasl.mechanism": "GSSAPI", "sasl.jaas.config": "",
    "sasl.username": "", "sasl.password": "",
}


class SecurityConfigError(ValueError):
    """A client security setting that cannot be used; the message names the key."""


# --------------------------------------------------------------------------------------------
# Java's .properties syntax
# --------------------------------------------------------------------------------------------

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _logical_lines(text: str):
    """(line number, logical line): comments and blank lines dropped, a line ending in an odd
    number of backslashes continued on the next with its leading white space removed."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1:
            line = line[:-1]
            if i >= len(lines):
                break
            line += lines[i].lstrip(" \t\f")
            i += 1
        yield number, line


def _unescape(text: str, number: int) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 >= len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2:i + 6]
            try:
                out.append(chr(int(digits, 16)) if len(digits) == 4 else "")
            except ValueError:
                digits = ""
            if len(digits) != 4:
                raise SecurityConfigError(f"line {number}: malformed \\uxxxx encoding")
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """A `.properties` file's keys and values, as java.util.Properties reads them: `key=value`,
    `key: value` or `key value`; `#` and `!` start comments; backslash escapes and line
    continuations. A later key wins."""
    out: dict[str, str] = {}
    for number, line in _logical_lines(text):
        i = 0
        while i < len(line) and line[i] not in "=: \t\f":
            i += 2 if line[i] == "\\" else 1
        key, rest = line[:i], line[i:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        out[_unescape(key, number)] = _unescape(rest, number)
    return out


def read_properties(path: str) -> dict[str, str]:
    """A properties file's settings; SecurityConfigError (one line) when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_properties(f.read())
    except OSError as e:
        raise SecurityConfigError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SecurityConfigError(f"cannot read {path}: not UTF-8 text") from None
    except SecurityConfigError as e:
        raise SecurityConfigError(f"{path}: {e}") from None


# --------------------------------------------------------------------------------------------
# The settings
# --------------------------------------------------------------------------------------------

class ClientSecurity:
    """A client's security settings, checked: the TLS context (or None) and the SASL mechanism
    with its credentials (or None)."""

    def __init__(self, properties: dict[str, str] | None = None):
        props = dict(properties or {})
        self.unknown = sorted(k for k in props if k not in DEFAULTS)
        self.settings = {**DEFAULTS, **{k: v.strip() for k, v in props.items()
                                        if k in DEFAULTS and k != "sasl.jaas.config"}}
        self.settings["sasl.jaas.config"] = props.get("sasl.jaas.config", "")
        self.protocol = self.settings["security.protocol"].upper()
        if self.protocol not in PROTOCOLS:
            raise SecurityConfigError(
                f"security.protocol: {self.settings['security.protocol']!r} is not one of "
                f"{', '.join(PROTOCOLS)}")
        self.tls_context = self._tls() if self.protocol in ("SSL", "SASL_SSL") else None
        self.mechanism: str | None = None
        self.options: dict[str, str] = {}
        if self.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            self._sasl()

    @property
    def is_plaintext(self) -> bool:
        return self.protocol == "PLAINTEXT"

    def _tls(self) -> ssl.SSLContext:
        algorithm = self.settings["ssl.endpoint.identification.algorithm"]
        if algorithm not in ("", "https", "HTTPS"):
            raise SecurityConfigError(f"ssl.endpoint.identification.algorithm: {algorithm!r} is "
                                      f"not supported (https, or empty for none)")
        try:
            return tls.client_context(self.settings, None)
        except tls.TlsConfigError as e:
            raise SecurityConfigError(str(e)) from None

    def _sasl(self) -> None:
        mechanism = self.settings["sasl.mechanism"].upper()
        if mechanism == "GSSAPI":
            raise SecurityConfigError("sasl.mechanism: GSSAPI (Kerberos, Kafka's default) is not "
                                      "supported: set PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or "
                                      "OAUTHBEARER")
        if mechanism not in MECHANISMS:
            raise SecurityConfigError(f"sasl.mechanism: {mechanism!r} is not one of "
                                      f"{', '.join(MECHANISMS[1:])}")
        self.mechanism = mechanism
        jaas = self.settings["sasl.jaas.config"]
        if jaas.strip():
            try:
                self.options = parse_jaas_config(jaas).options
            except ValueError as e:
                raise SecurityConfigError(f"sasl.jaas.config: {e}") from None
        elif self.settings["sasl.username"]:
            self.options = {"username": self.settings["sasl.username"],
                            "password": self.settings["sasl.password"]}
        elif mechanism != "OAUTHBEARER":
            raise SecurityConfigError(f"sasl.jaas.config: not set; {mechanism} needs a username "
                                      f"and password (or sasl.username and sasl.password)")
        if mechanism == "OAUTHBEARER":
            self.oauthbearer_token(time.time())    # a bad option is reported now, not later
        elif "username" not in self.options or "password" not in self.options:
            raise SecurityConfigError(f"sasl.jaas.config: {mechanism} needs the options "
                                      f"username and password")

    def wrap(self, sock, host: str):
        """The TLS handshake over a connected socket (its timeout bounds it)."""
        return self.tls_context.wrap_socket(sock, server_hostname=host)

    # -- the mechanisms' tokens --

    def oauthbearer_token(self, now: float | None = None) -> tuple[str, dict[str, str]]:
        """Kafka's OAuthBearerUnsecuredLoginCallbackHandler: (the unsecured JWS, extensions),
        issued at `now` (wall seconds; the system clock when None)."""
        from trioka.security.sasl.oauthbearer import unsecured_login_token
        try:
            return unsecured_login_token(self.options, time.time() if now is None else now)
        except ValueError as e:
            raise SecurityConfigError(f"sasl.jaas.config: {e}") from None
