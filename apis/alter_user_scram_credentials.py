"""AlterUserScramCredentials (key 51), v0: add, replace or delete users' SCRAM credentials
(KIP-554). An upsertion carries the salt, the iteration count and the salted password (the
client hashes the password; it never reaches the broker); the broker keeps Kafka's
ScramCredential made of them (security/sasl/credentials.py, which also holds the checks and
their errors). A user's operations all succeed or none is applied; the answer has one result
per user named.

A single broker keeps the credentials in its log directory, written before the answer. A node of
a KRaft cluster forwards the request to the controller, which writes UserScramCredentialRecords
(and RemoveUserScramCredentialRecords) to the metadata log, as Kafka's does; the answer is given
once this node's metadata image has the change, so the user can authenticate here at once.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.ALTER_USER_SCRAM_CREDENTIALS)
Result = Response.AlterUserScramCredentialsResult


async def handle(broker, request, ctx):
    names = list(dict.fromkeys(op.name for op in list(request.deletions)
                               + list(request.upsertions)))
    if broker.cluster is not None:
        try:
            response = await broker.cluster.forward(ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
                                                    request, ctx.api_version)
        except KafkaError as e:    # the controller could not be reached
            return Response(throttle_time_ms=0, results=[
                Result(user=name, error_code=e.code, error_message=e.message)
                for name in names])
        done = {r.user for r in response.results if r.error_code == 0}
        await broker.cluster.wait_for_metadata(lambda: _in_image(broker, request, done))
        return response
    store = broker.scram_credentials
    outcome = store.alter(request.deletions, request.upsertions)
    if any(code == 0 for code, _ in outcome.values()):
        await store.persist()
    return Response(throttle_time_ms=0, results=[
        Result(user=name, error_code=outcome[name][0], error_message=outcome[name][1])
        for name in names])


def _in_image(broker, request, users: set) -> bool:
    """Whether this node's image has the changes the controller made for `users`."""
    store = broker.scram_credentials
    for op in request.deletions:
        if op.name in users and store.lookup(op.name, op.mechanism) is not None:
            return False
    for op in request.upsertions:
        credential = store.lookup(op.name, op.mechanism)
        if op.name in users and (credential is None or credential.salt != bytes(op.salt)):
            return False
    return True
