"""SCRAM-SHA-256/512 server (security/sasl/scram.py) against RFC 7677's test vector, the checks of
the exchange, and the credential store of AlterUserScramCredentials."""

import base64

import pytest

from trioka.log.files import DiskFiles
from trioka.security.sasl import IllegalSaslStateError, SaslAuthenticationError
from trioka.security.sasl.credentials import ScramCredentialStore
from trioka.security.sasl.scram import (SCRAM_SHA_256, SCRAM_SHA_512, ScramCredential,
                                        ScramServer, client_proof, decode_username)
from trioka.wire.errors import ErrorCode

# RFC 7677 section 3.
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
GENERIC = ("Authentication failed during authentication due to invalid credentials with SASL "
           "mechanism SCRAM-SHA-256")


def rfc_server(users=None):
    users = users if users is not None else {
        "user": ScramCredential.from_password(SCRAM_SHA_256, "pencil", 4096, SALT)}
    return ScramServer(SCRAM_SHA_256, users.get, nonce=SERVER_NONCE)


def test_rfc_7677_exchange():
    server = rfc_server()
    assert server.evaluate(CLIENT_FIRST) == SERVER_FIRST
    assert not server.complete
    assert server.evaluate(CLIENT_FINAL) == SERVER_FINAL
    assert server.complete and server.principal_name == "user"
    assert server.lifetime_ms is None
    with pytest.raises(IllegalSaslStateError):
        server.evaluate(CLIENT_FINAL)


def test_the_client_proof_matches_the_rfc():
    auth_message = (CLIENT_FIRST[3:] + b"," + SERVER_FIRST + b","
                    + CLIENT_FINAL[:CLIENT_FINAL.index(b",p=")])
    proof = client_proof(SCRAM_SHA_256, "pencil", SALT, 4096, auth_message)
    assert base64.b64encode(proof) == b"dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="


def test_wrong_password_and_unknown_user_fail_alike():
    wrong = rfc_server({"user": ScramCredential.from_password(SCRAM_SHA_256, "other", 4096,
                                                              SALT)})
    wrong.evaluate(CLIENT_FIRST)
    with pytest.raises(SaslAuthenticationError) as a:
        wrong.evaluate(CLIENT_FINAL)
    unknown = rfc_server({})
    with pytest.raises(SaslAuthenticationError) as b:
        unknown.evaluate(CLIENT_FIRST)
    assert str(a.value) == str(b.value) == GENERIC


def test_a_final_message_from_another_exchange_fails():
    server = ScramServer(SCRAM_SHA_256, {"user": ScramCredential.from_password(
        SCRAM_SHA_256, "pencil", 4096, SALT)}.get)     # a random server nonce
    server.evaluate(CLIENT_FIRST)
    with pytest.raises(SaslAuthenticationError, match="invalid credentials"):
        server.evaluate(CLIENT_FINAL)


def test_malformed_messages_fail():
    for first in (b"p=tls-unique,,n=user,r=x", b"n,,r=x,n=user", b"garbage", b"\xff\xfe"):
        with pytest.raises(SaslAuthenticationError):
            rfc_server().evaluate(first)
    server = rfc_server()
    server.evaluate(CLIENT_FIRST)
    with pytest.raises(SaslAuthenticationError):
        server.evaluate(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")


def test_an_authorization_id_other_than_the_user_fails():
    with pytest.raises(SaslAuthenticationError, match="authorization id"):
        rfc_server().evaluate(b"n,a=admin,n=user,r=rOprNGfwEbeRWgbNEkqO")


def test_usernames_decode_rfc_5802_escapes():
    assert decode_username("a=2Cb=3Dc") == "a,b=c"
    with pytest.raises(SaslAuthenticationError):
        decode_username("a=4Fb")


def test_sha_512_round_trip():
    credential = ScramCredential.from_password(SCRAM_SHA_512, "secret", 4096)
    server = ScramServer(SCRAM_SHA_512, {"u": credential}.get)
    first = server.evaluate(b"n,,n=u,r=abc").decode()
    attrs = dict(a.split("=", 1) for a in first.split(","))
    without_proof = f"c=biws,r={attrs['r']}"
    auth = f"n=u,r=abc,{first},{without_proof}".encode()
    proof = client_proof(SCRAM_SHA_512, "secret", base64.b64decode(attrs["s"]), 4096, auth)
    final = server.evaluate(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
    assert final.startswith(b"v=") and server.complete


class Op:
    def __init__(self, name, mechanism, iterations=4096, salt=b"s" * 16, salted=b"p" * 32):
        self.name, self.mechanism, self.iterations = name, mechanism, iterations
        self.salt, self.salted_password = salt, salted


def test_store_checks_and_applies_as_kafka(tmp_path):
    store = ScramCredentialStore(DiskFiles(str(tmp_path)))
    out = store.alter([], [Op("alice", 1), Op("bob", 2, iterations=100),
                           Op("carol", 1, iterations=20000), Op("", 1), Op("dave", 9)])
    assert out == {"alice": (0, None),
                   "bob": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations"),
                   "carol": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations"),
                   "": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"),
                   "dave": (ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism")}
    assert store.users() == ["alice"]
    # A user's operations all succeed or none applies.
    out = store.alter([Op("alice", 1), Op("erin", 2)], [Op("alice", 1)])
    assert out["alice"][0] == ErrorCode.DUPLICATE_RESOURCE
    assert out["erin"][0] == ErrorCode.RESOURCE_NOT_FOUND
    assert store.lookup("alice", 1) is not None
    # Persisted without the salted password, and read back.
    store.write(store.snapshot())
    text = (tmp_path / "scram-credentials.json").read_text()
    assert base64.b64encode(b"p" * 32).decode() not in text
    again = ScramCredentialStore(DiskFiles(str(tmp_path)))
    kept, loaded = store.lookup("alice", 1), again.lookup("alice", 1)
    assert (loaded.salt, loaded.stored_key, loaded.server_key, loaded.iterations) == \
        (kept.salt, kept.stored_key, kept.server_key, 4096)
    assert store.alter([Op("alice", 1)], []) == {"alice": (0, None)}
    assert store.users() == []


def test_the_metadata_image_keeps_credentials_from_records():
    from trioka.metadata import records as r
    from trioka.metadata.image import MetadataImage
    image = MetadataImage()
    credential = ScramCredential.from_password(SCRAM_SHA_512, "pw", 4096, SALT)
    for record in (r.user_scram_credential_record("bob", 2, credential),
                   r.user_scram_credential_record("bob", 1, credential)):
        back = r.MetadataRecord.decode(record.encode())     # as written to the log
        image.replay(back.record_type, back.message)
    kept = image.scram_credentials["bob"][2]
    assert (kept.salt, kept.stored_key, kept.server_key, kept.iterations) == \
        (credential.salt, credential.stored_key, credential.server_key, 4096)
    removal = r.remove_user_scram_credential_record("bob", 2)
    image.replay(removal.record_type, removal.message)
    assert list(image.scram_credentials["bob"]) == [1]
    image.replay(r.REMOVE_USER_SCRAM_CREDENTIAL_RECORD,
                 r.remove_user_scram_credential_record("bob", 1).message)
    assert image.scram_credentials == {}
    with pytest.raises(ValueError, match="no such SCRAM credential"):
        image.replay(removal.record_type, removal.message)
