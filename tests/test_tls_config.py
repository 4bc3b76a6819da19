"""Listener security configuration without sockets: ssl.principal.mapping.rules as Kafka's
SslPrincipalMapperTest defines them, certificate subjects as RFC 2253 DNs, the protocol map and
the inter-broker listener, per-listener overrides, and the TLS settings refused at startup."""

import ssl

import pytest

from trioka.config import (Config, inter_broker_listener, is_sensitive, listeners_of,
                           security_protocol_map)
from trioka.security import tls
from trioka.security.tls import NoMatchingRule, parse_rules, principal_name, subject_dn

# --- ssl.principal.mapping.rules (Kafka's SslPrincipalMapperTest) ---


@pytest.mark.parametrize("rules", [
    "DEFAULT",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
    "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
    "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
    "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
    "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
    "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
])
def test_valid_rules(rules):
    assert parse_rules(rules)


@pytest.mark.parametrize("rules", [
    "default", "DEFAUL", "DEFAULT/L", "DEFAULT/U",
    "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
    "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
])
def test_invalid_rules(rules):
    with pytest.raises(ValueError, match="ssl.principal.mapping.rules: invalid rule"):
        parse_rules(rules)


def test_principal_mapper():
    rules = parse_rules(", ".join([
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
        "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
        "DEFAULT"]))
    assert principal_name("CN=Duke,OU=ServiceUsers,O=Org,C=US", rules) == "duke"
    assert principal_name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US", rules) == "duke@sme"
    assert principal_name("cn=duke,ou=sme,dc=mycp,dc=com", rules) == "DUKE@SME"
    assert principal_name("cN=duke,OU=JavaSoft,O=Sun Microsystems", rules) == "DUKE"
    assert principal_name("OU=JavaSoft,O=Sun Microsystems,C=US", rules) == \
        "OU=JavaSoft,O=Sun Microsystems,C=US"


@pytest.mark.parametrize("expected, rules", [
    ("[]", ""),
    ("[DEFAULT]", "DEFAULT"),
    ("[RULE:/]", "RULE://"),
    ("[RULE:/.*]", "RULE:/.*/"),
    ("[RULE:/.*/L]", "RULE:/.*/L"),
    ("[RULE:/, DEFAULT]", "RULE://,DEFAULT"),
    ("[RULE:/, DEFAULT]", "  RULE:// ,  DEFAULT  "),
    ("[RULE:   /     , DEFAULT]", "  RULE:   /     / ,  DEFAULT  "),
    ("[RULE:  /     /U, DEFAULT]", "  RULE:  /     /U   ,DEFAULT  "),
    ("[RULE:([A-Z]*)/$1/U, RULE:([a-z]+)/$1, DEFAULT]",
     "  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  "),
    # empty rules are ignored
    ("[]", ",   , , ,      , , ,   "),
    ("[RULE:/, DEFAULT]", ",,RULE://,,,DEFAULT,,"),
    ("[RULE: /   , DEFAULT]", ",  , RULE: /   /    ,,,   DEFAULT, ,   "),
    ("[RULE:   /  , DEFAULT]", "     ,  , RULE:   /  /    ,,  ,DEFAULT, ,"),
    # escape sequences
    ("[RULE:\\/\\\\\\(\\)\\n\\t/\\/\\/]", "RULE:\\/\\\\\\(\\)\\n\\t/\\/\\//"),
    ("[RULE:\\**\\/+/*/L, RULE:\\/*\\**/**]", "RULE:\\**\\/+/*/L,RULE:\\/*\\**/**/"),
])
def test_rules_splitting(expected, rules):
    assert str(parse_rules(rules)) == expected


def test_comma_with_whitespace():
    rules = parse_rules("RULE:^CN=((\\\\, *|\\w)+)(,.*|$)/$1/,DEFAULT")
    assert principal_name("CN=Tkac\\, Adam,OU=ITZ,DC=geodis,DC=cz", rules) == "Tkac\\, Adam"


def test_no_matching_rule_fails_the_client():
    with pytest.raises(NoMatchingRule, match="No rules apply to CN=x,O=y"):
        principal_name("CN=x,O=y", parse_rules("RULE:^CN=(.*?),OU=.*$/$1/"))


def test_back_reference_past_the_last_group_is_literal():
    assert principal_name("CN=a", parse_rules("RULE:^CN=(.*)$/$1-$2/")) == "a-$2"


# --- certificate subjects ---

def test_subject_dn_is_rfc2253_most_specific_first():
    cert = {"subject": ((("countryName", "US"),), (("organizationName", "Acme, Inc"),),
                        (("organizationalUnitName", "eng"),), (("commonName", "client"),))}
    assert subject_dn(cert) == "CN=client,OU=eng,O=Acme\\, Inc,C=US"


def test_subject_dn_multi_valued_rdn():
    cert = {"subject": ((("commonName", "a"), ("userId", "7")),)}
    assert subject_dn(cert) == "CN=a+UID=7"


# --- listeners and the protocol map ---

def test_default_map_gives_each_protocol_its_name():
    config = Config({"listeners": "PLAINTEXT://:9092,SSL://:9093,SASL_SSL://:9094"})
    assert [(lst.name, lst.security_protocol) for lst in listeners_of(config)] == [
        ("PLAINTEXT", "PLAINTEXT"), ("SSL", "SSL"), ("SASL_SSL", "SASL_SSL")]


def test_named_listeners_through_the_map():
    config = Config({"listeners": "INTERNAL://:9092,EXTERNAL://:9093",
                     "listener.security.protocol.map": "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL"})
    listeners = listeners_of(config)
    assert [lst.security_protocol for lst in listeners] == ["PLAINTEXT", "SASL_SSL"]
    assert [lst.uses_tls for lst in listeners] == [False, True]
    assert [lst.uses_sasl for lst in listeners] == [False, True]


def test_controller_listener_defaults_to_plaintext_only_with_the_default_map():
    config = Config({"listeners": "PLAINTEXT://:9092,CONTROLLER://:9093",
                     "controller.listener.names": "CONTROLLER"})
    assert security_protocol_map(config)["CONTROLLER"] == "PLAINTEXT"
    config.set("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT")
    with pytest.raises(ValueError, match="No security protocol defined for listener CONTROLLER"):
        listeners_of(config)


@pytest.mark.parametrize("text, message", [
    ("PLAINTEXT:TLS", "unknown security protocol 'TLS' for listener PLAINTEXT"),
    ("PLAINTEXT", "'PLAINTEXT' is not NAME:PROTOCOL"),
    ("A:SSL,A:PLAINTEXT", "listener A appears twice"),
])
def test_bad_protocol_maps(text, message):
    config = Config({"listener.security.protocol.map": text})
    with pytest.raises(ValueError, match=message):
        security_protocol_map(config)


def test_unknown_listener_name():
    with pytest.raises(ValueError, match="No security protocol defined for listener FOO"):
        listeners_of(Config({"listeners": "FOO://:1"}))


def test_inter_broker_listener():
    listeners = "PLAINTEXT://:9092,SSL://:9093"
    config = Config({"listeners": listeners})
    assert inter_broker_listener(config, listeners_of(config)) == "PLAINTEXT"
    config = Config({"listeners": listeners, "security.inter.broker.protocol": "SSL"})
    assert inter_broker_listener(config, listeners_of(config)) == "SSL"
    config = Config({"listeners": listeners, "inter.broker.listener.name": "ssl"})
    assert inter_broker_listener(config, listeners_of(config)) == "SSL"
    config = Config({"listeners": listeners, "inter.broker.listener.name": "SSL",
                     "security.inter.broker.protocol": "SSL"})
    with pytest.raises(ValueError, match="Only one of inter.broker.listener.name and "
                                         "security.inter.broker.protocol"):
        inter_broker_listener(config, listeners_of(config))
    config = Config({"listeners": "PLAINTEXT://:1", "security.inter.broker.protocol": "SSL"})
    with pytest.raises(ValueError, match="no listener .* uses that protocol"):
        inter_broker_listener(config, listeners_of(config))


# --- per-listener settings ---

def test_listener_value_order():
    config = Config({"ssl.client.auth": "requested",
                     "listener.name.external.ssl.client.auth": "required",
                     "listener.name.sasl_ssl.plain.sasl.jaas.config": "plain-jaas",
                     "listener.name.sasl_ssl.sasl.jaas.config": "listener-jaas"})
    assert config.warnings == []
    assert config.listener_value("EXTERNAL", "ssl.client.auth") == "required"
    assert config.listener_value("INTERNAL", "ssl.client.auth") == "requested"
    assert config.listener_value("X", "ssl.enabled.protocols") == "TLSv1.2,TLSv1.3"
    assert config.listener_value("SASL_SSL", "sasl.jaas.config",
                                 mechanism="PLAIN") == "plain-jaas"
    assert config.listener_value("SASL_SSL", "sasl.jaas.config",
                                 mechanism="SCRAM-SHA-256") == "listener-jaas"
    assert config.listener_value("OTHER", "sasl.jaas.config", "none") == "none"


def test_listener_values_are_typed_by_their_key():
    config = Config({"listener.name.a.connections.max.idle.ms": "5"})
    assert config.listener_value("A", "connections.max.idle.ms") == 5


def test_secrets_are_sensitive():
    assert is_sensitive("ssl.keystore.password")
    assert is_sensitive("ssl.keystore.key")
    assert is_sensitive("listener.name.sasl_ssl.plain.sasl.jaas.config")
    assert is_sensitive("listener.name.ssl.ssl.key.password")
    assert not is_sensitive("ssl.keystore.location")


# --- TLS settings refused at startup ---

def _ssl_config(**values):
    return Config({"listeners": "SSL://:9093", **{k.replace("_", "."): v
                                                  for k, v in values.items()}})


def test_a_tls_listener_needs_a_keystore():
    with pytest.raises(tls.TlsConfigError, match="listener SSL uses TLS but has no keystore"):
        tls.check_config(_ssl_config())


@pytest.mark.parametrize("key, value, message", [
    ("ssl.enabled.protocols", "TLSv1.1", "only TLSv1.2 and TLSv1.3 are supported"),
    ("ssl.protocol", "SSLv3", "'SSLv3' is not supported"),
    ("ssl.client.auth", "always", "'always' is not one of required, requested, none"),
    ("ssl.keystore.type", "BKS", "'BKS' is not a supported store type"),
])
def test_bad_tls_values(key, value, message):
    config = Config({"listeners": "SSL://:9093", key: value})
    with pytest.raises(tls.TlsConfigError, match=message):
        tls.server_context(config, "SSL")


def test_tls_1_2_protocol_caps_the_version():
    config = Config({"ssl.protocol": "TLSv1.2"})
    assert tls._versions(config, None) == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    assert tls._versions(Config(), None) == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from trioka.cli.certs import write
    return write(str(tmp_path_factory.mktemp("certs")))


def test_keystores_load_in_every_form(certs):
    pem = Config({"ssl.keystore.type": "PEM",
                  "ssl.keystore.location": certs["broker-keystore.pem"],
                  "ssl.truststore.type": "PEM", "ssl.truststore.location": certs["ca.pem"],
                  "ssl.client.auth": "required"})
    assert tls.server_context(pem, "SSL").verify_mode == ssl.CERT_REQUIRED
    with open(certs["broker.pem"]) as chain, open(certs["broker.key"]) as key, \
            open(certs["ca.pem"]) as ca:
        inline = Config({"ssl.keystore.type": "PEM", "ssl.keystore.certificate.chain":
                         chain.read(), "ssl.keystore.key": key.read(),
                         "ssl.truststore.type": "PEM", "ssl.truststore.certificates": ca.read(),
                         "ssl.client.auth": "requested"})
    assert tls.server_context(inline, "SSL").verify_mode == ssl.CERT_OPTIONAL
    # PKCS12 under Kafka's default type (JKS), as Java reads it.
    p12 = Config({"ssl.keystore.location": certs["broker.p12"],
                  "ssl.keystore.password": "trioka-dev"})
    assert tls.server_context(p12, "SSL").verify_mode == ssl.CERT_NONE


def test_wrong_pkcs12_password(certs):
    config = Config({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": certs["broker.p12"],
                     "ssl.keystore.password": "wrong"})
    with pytest.raises(tls.TlsConfigError, match="not a PKCS12 store, or a wrong password"):
        tls.server_context(config, "SSL")


def test_client_auth_needs_a_truststore(certs):
    config = Config({"ssl.keystore.type": "PEM",
                     "ssl.keystore.location": certs["broker-keystore.pem"],
                     "listener.name.ssl.ssl.client.auth": "required"})
    with pytest.raises(tls.TlsConfigError, match="ssl.client.auth \\(listener SSL\\) is required"):
        tls.server_context(config, "SSL")


def test_describe_configs_hides_secrets():
    from types import SimpleNamespace
    from trioka.apis.describe_configs import broker_config_entries
    config = Config({"ssl.keystore.password": "hunter2", "ssl.keystore.location": "/k.p12"})
    entries = {e[0]: e for e in broker_config_entries(SimpleNamespace(node_id=1, config=config),
                                                      "1")}
    assert entries["ssl.keystore.password"][1] is None
    assert all(v is None for _, v, _ in entries["ssl.keystore.password"][3])
    assert entries["ssl.keystore.location"][1] == "/k.p12"
