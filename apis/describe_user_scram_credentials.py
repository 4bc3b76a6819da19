"""DescribeUserScramCredentials (key 50), v0: which users have SCRAM credentials, with which
mechanisms and iteration counts (KIP-554). Never a salt, a key or a password.

`users` null or empty describes every user that has a credential; a named user without one is
RESOURCE_NOT_FOUND ("Attempt to describe a user credential that does not exist"), a user named
twice DUPLICATE_RESOURCE, as Kafka answers.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS)
Result = Response.DescribeUserScramCredentialsResult
CredentialInfo = Result.CredentialInfo


async def handle(broker, request, ctx):
    store = broker.scram_credentials
    names = [u.name for u in request.users or []]
    results = []
    for name in names if names else store.users():
        if names.count(name) > 1:
            if any(r.user == name for r in results):
                continue
            results.append(Result(user=name, error_code=ErrorCode.DUPLICATE_RESOURCE,
                                  error_message=f"Cannot describe SCRAM credentials for the same "
                                                f"user twice in a single request: {name}",
                                  credential_infos=[]))
            continue
        credentials = store.mechanisms_of(name)
        if not credentials:
            results.append(Result(user=name, error_code=ErrorCode.RESOURCE_NOT_FOUND,
                                  error_message=f"Attempt to describe a user credential that "
                                                f"does not exist: {name}",
                                  credential_infos=[]))
            continue
        results.append(Result(user=name, error_code=ErrorCode.NONE, error_message=None,
                              credential_infos=[
                                  CredentialInfo(mechanism=type_id, iterations=c.iterations)
                                  for type_id, c in sorted(credentials.items())]))
    return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
                    results=results)
