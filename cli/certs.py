"""`trioka certs DIR`: a development CA with a broker and a client certificate, so that a TLS
listener is one command away.

    trioka certs DIR [--hostname HOST] [--days N] [--password PASSWORD]

writes into DIR (created when missing):

    ca.pem, ca.key            the CA (CN=trioka development CA), which signs the two others
    broker.pem, broker.key    the broker's certificate (CN=<hostname>; subject alternative names
                              localhost, 127.0.0.1 and the hostname), its chain ending in the CA
    client.pem, client.key    a client certificate, CN=client (principal User:CN=client, or
                              User:client with ssl.principal.mapping.rules)
    broker-keystore.pem       the broker's key and chain in one file: a PEM keystore
    broker.p12                the broker's key and chain as a PKCS12 keystore
    truststore.p12            the CA as a PKCS12 truststore

The keys are unencrypted (mode 0600); the PKCS12 stores are opened with --password (default
`trioka-dev`). It then prints the broker's settings and those of confluent-kafka, kafka-python
and kcat for mutual TLS. These are for development and tests: the CA key is on disk next to
everything it signed. Certificates are made with the `cryptography` package (the `tls` extra).
Exit status 0, or 1 when DIR cannot be written or cryptography is missing.
"""

import datetime
import ipaddress
import os
import sys

DEFAULT_PASSWORD = "trioka-dev"


def add_parser(sub) -> None:
    p = sub.add_parser("certs", help="write a development CA, broker and client certificates",
                       description="Write a development CA and a broker and a client "
                                   "certificate signed by it, for TLS listeners.")
    p.add_argument("dir", metavar="DIR", help="the directory to write into")
    p.add_argument("--hostname", default="localhost",
                   help="the broker's host name, in its certificate (default localhost)")
    p.add_argument("--days", type=int, default=365,
                   help="how long the certificates are valid (default 365)")
    p.add_argument("--password", default=DEFAULT_PASSWORD,
                   help=f"the password of the PKCS12 stores (default {DEFAULT_PASSWORD})")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.days < 1:
        print(f"trioka certs: error: --days must be 1 or more, not {args.days}",
              file=sys.stderr)
        return 2
    try:
        paths = write(args.dir, hostname=args.hostname, days=args.days, password=args.password)
    except ImportError:
        print("Error: trioka certs needs the cryptography package "
              "(pip install 'trioka[tls]')", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"Error: {e.filename or args.dir}: {e.strerror}", file=sys.stderr)
        return 1
    print(instructions(paths, args.password))
    return 0


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trioka"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject, key, issuer, issuer_key, days: int, *, ca: bool, sans=None,
                 server: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
        # The broker's certificate also serves as its client certificate towards other brokers.
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH]
                                                      if server else [])
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: str, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write(directory: str, *, hostname: str = "localhost", days: int = 365,
          password: str = DEFAULT_PASSWORD) -> dict[str, str]:
    """Write the CA, broker and client files into `directory`: {name: path}."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
    os.makedirs(directory, exist_ok=True)
    pem = serialization.Encoding.PEM

    def key_pem(key) -> bytes:
        return key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = _key()
    ca_name = x509.Name([*_name("trioka development CA")])
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, days, ca=True)
    sans: list = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(hostname)))
    except ValueError:
        if hostname != "localhost":
            sans.append(x509.DNSName(hostname))
    broker_key = _key()
    broker = _certificate(_name(hostname), broker_key, ca_name, ca_key, days, ca=False,
                          sans=sans, server=True)
    client_key = _key()
    client = _certificate(_name("client"), client_key, ca_name, ca_key, days, ca=False)
    paths = {name: os.path.join(directory, name) for name in (
        "ca.pem", "ca.key", "broker.pem", "broker.key", "broker-keystore.pem", "client.pem",
        "client.key", "broker.p12", "truststore.p12")}
    _write(paths["ca.pem"], ca.public_bytes(pem))
    _write(paths["ca.key"], key_pem(ca_key), private=True)
    _write(paths["broker.pem"], broker.public_bytes(pem) + ca.public_bytes(pem))
    _write(paths["broker.key"], key_pem(broker_key), private=True)
    _write(paths["broker-keystore.pem"],
           key_pem(broker_key) + broker.public_bytes(pem) + ca.public_bytes(pem), private=True)
    _write(paths["client.pem"], client.public_bytes(pem))
    _write(paths["client.key"], key_pem(client_key), private=True)
    encryption = serialization.BestAvailableEncryption(password.encode())
    _write(paths["broker.p12"], pkcs12.serialize_key_and_certificates(
        b"broker", broker_key, broker, [ca], encryption), private=True)
    _write(paths["truststore.p12"], pkcs12.serialize_key_and_certificates(
        b"ca", None, None, [ca], encryption))
    return paths


def instructions(paths: dict[str, str], password: str) -> str:
    """The settings that use the files, for the broker and for the usual clients."""
    p = {name: os.path.abspath(path) for name, path in paths.items()}
    return f"""\
Wrote {', '.join(sorted(p))} to {os.path.dirname(p['ca.pem'])}

Broker (server.properties, or --override KEY=VALUE each):
  listeners=PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093
  ssl.keystore.type=PKCS12
  ssl.keystore.location={p['broker.p12']}
  ssl.keystore.password={password}
  ssl.truststore.type=PKCS12
  ssl.truststore.location={p['truststore.p12']}
  ssl.truststore.password={password}
  ssl.client.auth=required
  ssl.principal.mapping.rules=RULE:^CN=(.*?),O=.*$/$1/,DEFAULT
or with PEM files:
  ssl.keystore.type=PEM
  ssl.keystore.location={p['broker-keystore.pem']}
  ssl.truststore.type=PEM
  ssl.truststore.location={p['ca.pem']}

confluent-kafka (librdkafka):
  {{"bootstrap.servers": "localhost:9093", "security.protocol": "SSL",
   "ssl.ca.location": "{p['ca.pem']}",
   "ssl.certificate.location": "{p['client.pem']}", "ssl.key.location": "{p['client.key']}"}}

kafka-python:
  KafkaProducer(bootstrap_servers="localhost:9093", security_protocol="SSL",
                ssl_cafile="{p['ca.pem']}", ssl_certfile="{p['client.pem']}",
                ssl_keyfile="{p['client.key']}")

kcat:
  kcat -b localhost:9093 -X security.protocol=ssl -X ssl.ca.location={p['ca.pem']} \\
       -X ssl.certificate.location={p['client.pem']} -X ssl.key.location={p['client.key']} -L"""
