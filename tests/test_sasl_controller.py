"""SCRAM credentials in a cluster: the controller's AlterUserScramCredentials writes
UserScramCredentialRecords (and removals) to the metadata log, with Kafka's checks, and its image
(the brokers' too, replaying the same records) authenticates against them. No sockets."""

import base64

from trioka.clock import ManualClock
from trioka.config import Config
from trioka.controller.quorum_controller import QuorumController
from trioka.metadata import records as r
from trioka.security.sasl.credentials import ImageScramCredentials
from trioka.security.sasl.scram import SCRAM_SHA_256, ScramServer, client_proof
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import request_class

Request = request_class(ApiKey.ALTER_USER_SCRAM_CREDENTIALS)
SALT = b"0123456789abcdef"


def new_controller() -> QuorumController:
    controller = QuorumController(Config({"node.id": 1}), ManualClock(), None,
                                  cluster_id="q1Yh2v7rRdu7Dq4kTSLvxw")
    controller.open()
    return controller


def upsert(name, password, iterations=4096, mechanism=1):
    return Request.ScramCredentialUpsertion(
        name=name, mechanism=mechanism, iterations=iterations, salt=SALT,
        salted_password=SCRAM_SHA_256.salted_password(password.encode(), SALT,
                                                      max(iterations, 1)))



async def test_alter_writes_records_the_image_authenticates_against():
    controller = new_controller()
    before = controller.next_offset
    response = await controller.alter_user_scram_credentials(Request(
        deletions=[], upsertions=[upsert("bob", "bob-secret"), upsert("eve", "x", 10)]), 0)
    assert {(x.user, x.error_code, x.error_message) for x in response.results} == {
        ("bob", 0, None), ("eve", ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations")}
    assert controller.next_offset == before + 1      # one record: bob's
    store = ImageScramCredentials(lambda: controller.image)
    assert store.users() == ["bob"]
    server = ScramServer(SCRAM_SHA_256, lambda user: store.lookup(user, 1))
    first = server.evaluate(b"n,,n=bob,r=abc").decode()
    attrs = dict(a.split("=", 1) for a in first.split(","))
    without_proof = f"c=biws,r={attrs['r']}"
    proof = client_proof(SCRAM_SHA_256, "bob-secret", SALT, 4096,
                         f"n=bob,r=abc,{first},{without_proof}".encode())
    server.evaluate(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
    assert server.complete and server.principal_name == "bob"

    missing = await controller.alter_user_scram_credentials(Request(
        deletions=[Request.ScramCredentialDeletion(name="carol", mechanism=1)],
        upsertions=[]), 0)
    assert missing.results[0].error_code == ErrorCode.RESOURCE_NOT_FOUND
    removed = await controller.alter_user_scram_credentials(Request(
        deletions=[Request.ScramCredentialDeletion(name="bob", mechanism=1)],
        upsertions=[]), 0)
    assert removed.results[0].error_code == 0
    assert store.users() == [] and store.lookup("bob", 1) is None
    assert r.VERSIONS[r.USER_SCRAM_CREDENTIAL_RECORD] == 0
