"""`ssl.client.auth` as each listener applies it, without sockets. Kafka applies the broker-wide
key to SSL listeners only; a SASL_SSL listener asks for a client certificate only when its
listener-prefixed key says so (KIP-684), since its clients authenticate with SASL."""

import ssl

import pytest

from trioka.config import Config
from trioka.security import tls

LISTENERS = "SSL://:9093,SASL_SSL://:9094,EXTERNAL://:9095"
MAP = "SSL:SSL,SASL_SSL:SASL_SSL,EXTERNAL:SASL_SSL"


def config(**values) -> Config:
    return Config({"listeners": LISTENERS, "listener.security.protocol.map": MAP, **values})


@pytest.mark.parametrize("values, expected", [
    # Nothing set: Kafka's default, none, everywhere.
    ({}, {"SSL": "none", "SASL_SSL": "none", "EXTERNAL": "none"}),
    # Broker-wide: SSL listeners only.
    ({"ssl.client.auth": "required"}, {"SSL": "required", "SASL_SSL": "none",
                                       "EXTERNAL": "none"}),
    # Listener-prefixed: that listener, whatever its protocol.
    ({"ssl.client.auth": "required", "listener.name.sasl_ssl.ssl.client.auth": "requested"},
     {"SSL": "required", "SASL_SSL": "requested", "EXTERNAL": "none"}),
    ({"listener.name.external.ssl.client.auth": "REQUIRED",
      "listener.name.ssl.ssl.client.auth": "requested"},
     {"SSL": "requested", "SASL_SSL": "none", "EXTERNAL": "required"}),
])
def test_client_auth_per_listener(values, expected):
    c = config(**values)
    assert {name: tls.client_auth(c, name) for name in expected} == expected


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from trioka.cli.certs import write
    return write(str(tmp_path_factory.mktemp("certs")))


def test_server_contexts_ask_for_certificates_as_kafka_does(certs):
    c = config(**{"ssl.keystore.type": "PEM",
                  "ssl.keystore.location": certs["broker-keystore.pem"],
                  "ssl.truststore.type": "PEM", "ssl.truststore.location": certs["ca.pem"],
                  "ssl.client.auth": "required",
                  "listener.name.external.ssl.client.auth": "requested"})
    assert tls.server_context(c, "SSL").verify_mode == ssl.CERT_REQUIRED
    assert tls.server_context(c, "SASL_SSL").verify_mode == ssl.CERT_NONE
    assert tls.server_context(c, "EXTERNAL").verify_mode == ssl.CERT_OPTIONAL


def test_a_bad_prefixed_value_on_a_sasl_ssl_listener_is_refused(certs):
    c = config(**{"ssl.keystore.type": "PEM",
                  "ssl.keystore.location": certs["broker-keystore.pem"],
                  "listener.name.sasl_ssl.ssl.client.auth": "always"})
    with pytest.raises(tls.TlsConfigError, match="'always' is not one of required"):
        tls.server_context(c, "SASL_SSL")
