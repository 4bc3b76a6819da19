"""`--command-config`'s client settings (cli/client/security.py), without sockets: Java's
properties syntax, the checks on the settings with the message naming the key, and each SASL
mechanism's client side run against the broker's own server side (PLAIN, SCRAM-SHA-256/512,
OAUTHBEARER's unsecured tokens) on a fixed clock."""

import pytest

from trioka.cli import client_security, default_command_config
from trioka.cli.client.connection import ClientError
from trioka.cli.client.security import (ClientSecurity, SaslClient, SaslExchangeError,
                                        SecurityConfigError, parse_properties)
from trioka.security.sasl import SaslAuthenticationError
from trioka.security.sasl.oauthbearer import OAuthBearerServer
from trioka.security.sasl.plain import PlainServer
from trioka.security.sasl.scram import BY_NAME, ScramCredential, ScramServer

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="alice" password="alice-secret";')


# --- properties syntax ---

def test_properties_separators_comments_and_continuations():
    text = ("# a comment\n! another\n\n  security.protocol = SASL_SSL\n"
            "sasl.mechanism:PLAIN\nssl.truststore.location /etc/ca.pem\n"
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \\\n"
            "    required username=\"a\" \\\n    password=\"b\";\n"
            "empty=\nkey\\ with\\ space=v\\tx\\u0041\nlast=1\nlast=2\n")
    assert parse_properties(text) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
        "ssl.truststore.location": "/etc/ca.pem",
        "sasl.jaas.config": 'org.apache.kafka.common.security.plain.PlainLoginModule '
                            'required username="a" password="b";',
        "empty": "", "key with space": "v\txA", "last": "2"}


def test_properties_escaped_backslash_does_not_continue():
    assert parse_properties("a=C:\\\\\nb=2\n") == {"a": "C:\\", "b": "2"}


def test_properties_bad_unicode_escape():
    with pytest.raises(SecurityConfigError, match="line 2: malformed"):
        parse_properties("a=1\nb=\\u00zz\n")


# --- the settings ---

def test_plaintext_by_default_and_unknown_keys_listed():
    s = ClientSecurity({"linger.ms": "5", "acks": "all"})
    assert s.is_plaintext and s.tls_context is None and s.mechanism is None
    assert s.unknown == ["acks", "linger.ms"]


@pytest.mark.parametrize("props,message", [
    ({"security.protocol": "TLS"}, "security.protocol: 'TLS' is not one of PLAINTEXT, SSL, "
                                   "SASL_PLAINTEXT, SASL_SSL"),
    ({"security.protocol": "SASL_PLAINTEXT"}, "sasl.mechanism: GSSAPI"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "DIGEST-MD5"},
     "sasl.mechanism: 'DIGEST-MD5' is not one of"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN"},
     "sasl.jaas.config: not set; PLAIN needs a username"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
      "sasl.jaas.config": "x required username=\"a\""},
     "sasl.jaas.config: JAAS config entry not terminated by semi-colon"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
      "sasl.jaas.config": "x required username=\"a\";"},
     "sasl.jaas.config: SCRAM-SHA-256 needs the options username and password"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
      "sasl.jaas.config": "x required;"},
     "unsecuredLoginStringClaim_sub"),
    ({"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "ldap"},
     "ssl.endpoint.identification.algorithm: 'ldap' is not supported"),
    ({"security.protocol": "SSL", "ssl.truststore.location": "/nonexistent/ca.pem",
      "ssl.truststore.type": "PEM"},
     "ssl.truststore.location: cannot read /nonexistent/ca.pem"),
    ({"security.protocol": "SSL", "ssl.keystore.type": "BKS"},
     "ssl.keystore.type: 'BKS' is not a supported store type"),
])
def test_bad_values_name_the_key(props, message):
    with pytest.raises(SecurityConfigError) as e:
        ClientSecurity(props)
    assert message in str(e.value)


def test_endpoint_identification_on_by_default_off_when_empty():
    assert ClientSecurity({"security.protocol": "SSL"}).tls_context.check_hostname
    off = ClientSecurity({"security.protocol": "SSL",
                          "ssl.endpoint.identification.algorithm": ""})
    assert not off.tls_context.check_hostname


def test_librdkafka_names_when_no_jaas_config():
    s = ClientSecurity({"security.protocol": "SASL_SSL", "sasl.mechanism": "scram-sha-512",
                        "sasl.username": "carol", "sasl.password": "pw"})
    assert (s.mechanism, s.options) == ("SCRAM-SHA-512", {"username": "carol", "password": "pw"})
    assert s.tls_context is not None


def test_command_config_file_errors_are_client_errors(tmp_path):
    missing = str(tmp_path / "none.properties")
    with pytest.raises(ClientError) as e:
        client_security(missing)
    assert str(e.value) == (f"--command-config {missing}: cannot read {missing}: "
                            f"No such file or directory")
    from_env = default_command_config({"TRIOKA_COMMAND_CONFIG": missing})
    with pytest.raises(ClientError, match=r"\(from \$TRIOKA_COMMAND_CONFIG\)"):
        client_security(from_env)
    assert default_command_config({"TRIOKA_COMMAND_CONFIG": " "}) is None


def test_command_config_unknown_key_warns(tmp_path, capsys):
    path = tmp_path / "c.properties"
    path.write_text("security.protocol=PLAINTEXT\nretries=3\n")
    assert client_security(str(path)) is None
    assert capsys.readouterr().err == (
        f"Warning: The configuration 'retries' was supplied but isn't a known config "
        f"(--command-config {path})\n")


# --- the mechanisms against the broker's server side ---

def exchange(client: SaslClient, server) -> None:
    token = client.first()
    while token is not None:
        token = client.next(server.evaluate(token))


def sasl(mechanism: str, jaas: str) -> ClientSecurity:
    return ClientSecurity({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
                           "sasl.jaas.config": jaas})


def test_plain_against_the_broker():
    server = PlainServer({"alice": "alice-secret"})
    exchange(SaslClient(sasl("PLAIN", PLAIN_JAAS)), server)
    assert server.complete and server.principal_name == "alice"
    with pytest.raises(SaslAuthenticationError, match="Invalid username or password"):
        exchange(SaslClient(sasl("PLAIN", PLAIN_JAAS.replace("alice-secret", "no"))),
                 PlainServer({"alice": "alice-secret"}))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_against_the_broker(mechanism):
    m = BY_NAME[mechanism]
    credential = ScramCredential.from_password(m, "pw", iterations=4096, salt=b"s" * 16)
    jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
            'username="bob,=x" password="pw";')
    server = ScramServer(m, {"bob,=x": credential}.get)
    exchange(SaslClient(sasl(mechanism, jaas)), server)
    assert server.complete and server.principal_name == "bob,=x"
    wrong = ScramServer(m, {"bob,=x": credential}.get)
    with pytest.raises(SaslAuthenticationError, match="invalid credentials"):
        exchange(SaslClient(sasl(mechanism, jaas.replace('"pw"', '"nope"'))), wrong)


def test_scram_client_checks_the_server():
    m = BY_NAME["SCRAM-SHA-256"]
    jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
            'username="bob" password="pw";')
    # A server that does not hold the credential cannot produce the right signature.
    client = SaslClient(sasl("SCRAM-SHA-256", jaas))
    server = ScramServer(m, {"bob": ScramCredential.from_password(m, "pw")}.get)
    final = client.next(server.evaluate(client.first()))
    server.evaluate(final)
    with pytest.raises(SaslExchangeError, match="invalid server signature"):
        client.next(b"v=" + b"A" * 44)
    # A server nonce that does not extend ours, or too few iterations.
    client = SaslClient(sasl("SCRAM-SHA-256", jaas))
    client.first()
    with pytest.raises(SaslExchangeError, match="nonce"):
        client.next(b"r=other,s=c2FsdA==,i=4096")
    client = SaslClient(sasl("SCRAM-SHA-256", jaas))
    nonce = client.first().decode().rsplit("r=", 1)[1]
    with pytest.raises(SaslExchangeError, match="iterations 100"):
        client.next(f"r={nonce}x,s=c2FsdA==,i=100".encode())


def test_oauthbearer_unsecured_token_against_the_broker():
    jaas = ('org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required '
            'unsecuredLoginStringClaim_sub="alice" unsecuredLoginListClaim_scope=",read,write" '
            'unsecuredLoginLifetimeSeconds="60";')
    now = 1_800_000_000.0
    server = OAuthBearerServer({"unsecuredValidatorRequiredScope": "read"},
                               lambda: int(now * 1000))
    exchange(SaslClient(sasl("OAUTHBEARER", jaas), clock=lambda: now), server)
    assert server.complete and server.principal_name == "alice"
    assert server.lifetime_ms == int((now + 60) * 1000)
    # An expired token: the broker's JSON challenge is acknowledged, then it fails with it.
    late = OAuthBearerServer({}, lambda: int((now + 61) * 1000))
    with pytest.raises(SaslAuthenticationError, match="invalid_token"):
        exchange(SaslClient(sasl("OAUTHBEARER", jaas), clock=lambda: now), late)
