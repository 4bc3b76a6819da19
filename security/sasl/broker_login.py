"""How a broker logs in to the other nodes of its cluster on a SASL listener, as Kafka's do.

A broker is a client of the other nodes: its replica fetchers (Fetch with a replica id,
OffsetForLeaderEpoch) reach the partition leaders on the inter-broker listener
(`inter.broker.listener.name`, or the first listener of `security.inter.broker.protocol`), and
it reaches the controller (BrokerRegistration, BrokerHeartbeat, the `__cluster_metadata`
Fetch, AlterPartition, forwarded admin requests) on the first listener of
`controller.listener.names`. When that listener's protocol is SASL_PLAINTEXT or SASL_SSL the
broker authenticates as any client does (security/sasl/client.py), with Kafka's broker keys:

    listener        mechanism                                  Kafka's default
    inter-broker    sasl.mechanism.inter.broker.protocol       GSSAPI
    controller      sasl.mechanism.controller.protocol         GSSAPI

and its own credentials: the options `username` and `password` of that listener's JAAS entry
for the mechanism, `listener.name.<listener>.<mechanism>.sasl.jaas.config` (then the
listener's and the broker's `sasl.jaas.config`, Kafka's override order). It is the same entry
whose `user_<name>` options are PLAIN's users, as Kafka's PlainLoginModule reads it:

    listener.name.sasl_plaintext.plain.sasl.jaas.config=\\
        org.apache.kafka.common.security.plain.PlainLoginModule required \\
        username="broker" password="broker-secret" \\
        user_broker="broker-secret" user_alice="alice-secret";

For SCRAM (ScramLoginModule required username=... password=...;) the user needs a SCRAM
credential on the nodes it reaches (AlterUserScramCredentials; the metadata log carries it).

For OAUTHBEARER the broker logs in with an unsecured JWS, as Kafka's default login callback
handler (OAuthBearerUnsecuredLoginCallbackHandler) makes one from the JAAS options
(security/sasl/oauthbearer.py: `unsecuredLoginStringClaim_sub` names the principal), which the
other nodes' default validator (OAuthBearerUnsecuredValidatorCallbackHandler) accepts:

    listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config=\\
        org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \\
        unsecuredLoginStringClaim_sub="broker";

A token is made for each authentication, issued at the node's wall clock, so a re-authentication
(KIP-368) presents a fresh one. A listener that validates tokens against a JWKS
(`sasl.oauthbearer.jwks.endpoint.url`) refuses unsecured ones: there the broker asks the
identity provider for a token with client credentials, as Kafka's OAuthBearerLoginCallbackHandler
does (security/sasl/oauthbearer_login.py):

    listener.name.sasl_plaintext.oauthbearer.sasl.login.callback.handler.class=\\
        org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler
    listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.token.endpoint.url=https://idp/token
    listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config=\\
        org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \\
        clientId="broker" clientSecret="..." scope="kafka";

Without the login handler on a JWKS-validating listener, the start is refused saying so.

With an authorizer, the broker's principal (`User:<username>`) must be in `super.users`, as
Kafka requires: inter-broker requests are authorized like any other (a replica's Fetch and
BrokerRegistration need CLUSTER_ACTION on the cluster).

A configuration that cannot log in stops the start with one line naming the key (ValueError):
GSSAPI (Kafka's default; trioka serves no Kerberos) is refused; the mechanism must be enabled on
the listener (Kafka's KafkaConfig message); the JAAS entry must exist and name a username and a
password (PLAIN, SCRAM), the principal's claim (unsecured OAUTHBEARER) or the client
credentials and token endpoint (OAUTHBEARER with the login handler).
"""

from trioka.security.sasl.client import SaslClient
from trioka.security.sasl.jaas import parse_jaas_config
from trioka.security.sasl.oauthbearer import unsecured_login_principal, unsecured_login_token
from trioka.security.sasl.oauthbearer_login import login_endpoint

# The mechanisms a trioka broker can log in with to another node.
BROKER_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")

INTER_BROKER_KEY = "sasl.mechanism.inter.broker.protocol"
CONTROLLER_KEY = "sasl.mechanism.controller.protocol"


class BrokerLogin:
    """The broker's own SASL credentials for one listener of the other nodes: the `mechanism`
    and the JAAS `options` (username and password, or OAUTHBEARER's unsecuredLogin* options),
    what SaslClient reads."""

    __slots__ = ("listener", "mechanism", "options", "key", "failing", "endpoint")

    def __init__(self, listener: str, mechanism: str, options: dict[str, str], key: str,
                 endpoint=None):
        self.listener = listener
        self.mechanism = mechanism
        self.options = options
        self.key = key          # the config key that chose the mechanism, for messages
        # Whether the last login with these credentials was refused: a node says so once (one
        # ERROR line for all its channels to that listener), not at every retry.
        self.failing = False
        # OAUTHBEARER with Kafka's login handler: the identity provider the tokens come from
        # (security/sasl/oauthbearer_login.py's TokenEndpoint); None: unsecured tokens.
        self.endpoint = endpoint

    def __repr__(self) -> str:      # never the password
        return f"BrokerLogin({self.listener}, {self.mechanism}, user {self.username!r})"

    @property
    def username(self) -> str:
        if self.mechanism == "OAUTHBEARER":
            if self.endpoint is not None:
                token = self.endpoint.token
                return token.principal if token is not None else self.endpoint.client_id
            return unsecured_login_principal(self.options)
        return self.options["username"]

    @property
    def principal(self) -> str:
        """The KafkaPrincipal the other nodes see (Kafka's DefaultKafkaPrincipalBuilder)."""
        return f"User:{self.username}"

    def client(self, wall_seconds=None) -> SaslClient:
        """A fresh exchange's client side (one per authentication); `wall_seconds()` is the
        node's wall clock, which an OAUTHBEARER token's iat and exp are taken from."""
        return SaslClient(self, clock=wall_seconds)

    async def prepare(self, clock) -> None:
        """Before an exchange: OAUTHBEARER with a token endpoint gets a token that is fresh at
        the node's `clock` (OSError or ValueError when the identity provider gives none)."""
        if self.endpoint is not None:
            await self.endpoint.current(clock)

    def oauthbearer_token(self, now: float) -> tuple[str, dict[str, str]]:
        """OAUTHBEARER's token and extensions: the identity provider's (`prepare` got it), or
        an unsecured one issued at `now` (wall seconds)."""
        if self.endpoint is not None:
            return self.endpoint.token.value, {}
        return unsecured_login_token(self.options, now)

    def describe(self) -> str:
        """How log lines name this login: `sasl.mechanism.inter.broker.protocol=PLAIN as
        User:broker`."""
        return f"{self.key}={self.mechanism} as {self.principal}"

    def refused(self) -> bool:
        """Note a refused login; True when it is news (the previous one succeeded)."""
        news, self.failing = not self.failing, True
        return news

    def accepted(self) -> None:
        self.failing = False


def broker_login(config, listener_name: str, protocol: str, *,
                 controller: bool = False) -> BrokerLogin | None:
    """The login a broker uses to reach the other nodes' `listener_name` listener, whose
    security protocol is `protocol`; None when the listener does not use SASL. `controller`:
    the listener is the controller's (sasl.mechanism.controller.protocol), else the
    inter-broker one (sasl.mechanism.inter.broker.protocol). ValueError, one line naming the
    key, when the broker cannot log in with that configuration."""
    if protocol.upper() not in SASL_PROTOCOLS:
        return None
    key = CONTROLLER_KEY if controller else INTER_BROKER_KEY
    mechanism = str(config.get(key)).strip().upper()
    if mechanism == "GSSAPI":
        raise ValueError(f"{key}: GSSAPI (Kerberos, Kafka's default) is not supported: set "
                         f"{', '.join(BROKER_MECHANISMS)} for listener {listener_name}")
    if mechanism not in BROKER_MECHANISMS:
        raise ValueError(f"{key}: {mechanism or 'empty'} is not a mechanism a broker can log in "
                         f"with to another node (one of {', '.join(BROKER_MECHANISMS)})")
    enabled = [m.strip().upper() for m in
               str(config.listener_value(listener_name, "sasl.enabled.mechanisms")).split(",")
               if m.strip()]
    if mechanism not in enabled:
        # Kafka's KafkaConfig words it so.
        traffic = "controller" if controller else "inter-broker"
        raise ValueError(f"{key} must be included in sasl.enabled.mechanisms when SASL is used "
                         f"for {traffic} communication (listener {listener_name} enables "
                         f"{', '.join(enabled) or 'none'})")
    jaas_key = f"listener.name.{listener_name.lower()}.{mechanism.lower()}.sasl.jaas.config"
    jaas = config.listener_value(listener_name, "sasl.jaas.config", mechanism=mechanism)
    if not jaas or not jaas.strip():
        raise ValueError(f"{jaas_key}: not set; the broker logs in to the other nodes' "
                         f"{listener_name} listener with its username and password from it "
                         f"({key}={mechanism})")
    try:
        options = parse_jaas_config(jaas).options
    except ValueError as e:
        raise ValueError(f"{jaas_key}: {e}") from None
    if mechanism == "OAUTHBEARER":
        endpoint = login_endpoint(config, listener_name, options, jaas_key)
        if endpoint is not None:
            return BrokerLogin(listener_name, mechanism, {}, key, endpoint)
        handler = str(config.listener_value(listener_name, "sasl.server.callback.handler.class",
                                            mechanism=mechanism) or "").strip()
        from trioka.security.sasl.oauthbearer_jwks import uses_validator
        try:
            validating = uses_validator(handler)
        except ValueError:
            validating = False      # the listener's own check names the class (startup)
        if validating:
            raise ValueError(f"{key}=OAUTHBEARER: listener {listener_name} validates tokens "
                             f"against a JWKS ({handler}), which refuses the unsecured tokens "
                             f"a broker makes without sasl.login.callback.handler.class="
                             f"OAuthBearerLoginCallbackHandler and "
                             f"sasl.oauthbearer.token.endpoint.url")
        try:
            unsecured_login_token(options, 0)
        except ValueError as e:
            raise ValueError(f"{jaas_key}: {e} ({key}=OAUTHBEARER)") from None
        return BrokerLogin(listener_name, mechanism, dict(options), key)
    missing = [name for name in ("username", "password") if not options.get(name)]
    if missing:
        raise ValueError(f"{jaas_key}: no {' and no '.join(missing)} option: the broker's own "
                         f"credentials for its connections to the other nodes "
                         f"({key}={mechanism})")
    return BrokerLogin(listener_name, mechanism,
                       {"username": options["username"], "password": options["password"]}, key)


def cluster_logins(config) -> dict[str, BrokerLogin]:
    """The logins of a cluster node's links to the other nodes, by listener name: its
    inter-broker listener and its controller listener, each when it uses SASL. ValueError, one
    line naming the key, for a configuration that cannot log in."""
    from trioka.config import inter_broker_listener, listeners_of, security_protocol_map
    protocols = security_protocol_map(config)
    controllers = [n.strip().upper() for n in config.controller_listener_names.split(",")
                   if n.strip()]
    out: dict[str, BrokerLogin] = {}
    for name in controllers:     # Kafka's brokers use the first; each is checked alike
        login = broker_login(config, name, protocols.get(name, "PLAINTEXT"), controller=True)
        if login is not None:
            out[name] = login
    name = inter_broker_listener(config, listeners_of(config))
    if name not in out:
        login = broker_login(config, name, protocols.get(name, "PLAINTEXT"))
        if login is not None:
            out[name] = login
    return out
