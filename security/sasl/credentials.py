"""The SCRAM credentials a broker authenticates against, managed as Kafka manages them: with
AlterUserScramCredentials (upsert: a salt, an iteration count and the salted password, computed
by the client; delete: by user and mechanism) and DescribeUserScramCredentials (users, their
mechanisms and iteration counts: never a salt or a key).

What is kept per user and mechanism is Kafka's ScramCredential (salt, StoredKey, ServerKey,
iterations); the salted password an upsert carries is turned into the two keys and dropped. A
single broker keeps them in `scram-credentials.json` in its log directory (in memory with
`--memory`), rewritten whole (written aside, then renamed) after each change, as Kafka's
single-node cluster keeps them in its metadata log.

The checks and their errors are Kafka's (ControllerApis/ScramControlManager):
  an empty user name                                UNACCEPTABLE_CREDENTIAL "Username must not be empty"
  an unknown mechanism                              UNSUPPORTED_SASL_MECHANISM
  iterations below the mechanism's minimum (4096)   UNACCEPTABLE_CREDENTIAL "Too few iterations"
  iterations above 16384                            UNACCEPTABLE_CREDENTIAL "Too many iterations"
  deleting a credential that does not exist         RESOURCE_NOT_FOUND
  one user named twice with one mechanism           DUPLICATE_RESOURCE
"""

import base64
import json

import trio

from trioka.security.sasl.scram import BY_TYPE, MAX_ITERATIONS, ScramCredential
from trioka.wire.errors import ErrorCode

FILE_NAME = "scram-credentials.json"


class ScramCredentialStore:
    """A single broker's SCRAM credentials, kept in FILE_NAME of its log dir (`files`: the log
    dir's DiskFiles or MemoryFiles; None: not kept)."""

    def __init__(self, files):
        self.files = files
        # user -> mechanism type id -> credential
        self._users: dict[str, dict[int, ScramCredential]] = {}
        self._writing = trio.Lock()     # one rewrite of the file at a time
        if files is not None:
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.files.read_small(FILE_NAME))
        except FileNotFoundError:
            return
        for user, mechanisms in data.items():
            self._users[user] = {
                int(type_id): ScramCredential(base64.b64decode(c["salt"]),
                                              base64.b64decode(c["stored_key"]),
                                              base64.b64decode(c["server_key"]),
                                              int(c["iterations"]))
                for type_id, c in mechanisms.items()}

    def snapshot(self) -> bytes:
        """The file's content now (taken on the event loop, written from a worker thread)."""
        return json.dumps({
            user: {str(type_id): {"salt": base64.b64encode(c.salt).decode(),
                                  "stored_key": base64.b64encode(c.stored_key).decode(),
                                  "server_key": base64.b64encode(c.server_key).decode(),
                                  "iterations": c.iterations}
                   for type_id, c in mechanisms.items()}
            for user, mechanisms in self._users.items()}, indent=1).encode()

    def write(self, content: bytes) -> None:
        """Replace the file with `content`, atomically (blocking: call from a worker thread)."""
        if self.files is not None:
            self.files.write_atomic(FILE_NAME, content)

    async def persist(self) -> None:
        """Write the credentials as they are now (from a worker thread)."""
        async with self._writing:
            await trio.to_thread.run_sync(self.write, self.snapshot())

    def lookup(self, user: str, mechanism_type: int) -> ScramCredential | None:
        return self._users.get(user, {}).get(mechanism_type)

    def users(self) -> list[str]:
        return sorted(self._users)

    def mechanisms_of(self, user: str) -> dict[int, ScramCredential]:
        return dict(self._users.get(user, {}))

    def alter(self, deletions, upsertions) -> dict[str, tuple[int, str | None]]:
        """Apply an AlterUserScramCredentials request: user -> (error code, message)."""
        results = check_alterations(deletions, upsertions,
                                    lambda user, t: self.lookup(user, t) is not None)
        for op in deletions:
            if results[op.name][0] == 0:
                self._users[op.name].pop(op.mechanism, None)
                if not self._users[op.name]:
                    del self._users[op.name]
        for op in upsertions:
            if results[op.name][0] == 0:
                self._users.setdefault(op.name, {})[op.mechanism] = credential_of(op)
        return results


def credential_of(upsertion) -> ScramCredential:
    """The credential an AlterUserScramCredentials upsertion makes (its salted password is
    turned into the two keys, and dropped)."""
    return ScramCredential.from_salted_password(
        BY_TYPE[upsertion.mechanism], bytes(upsertion.salt), bytes(upsertion.salted_password),
        upsertion.iterations)


def check_alterations(deletions, upsertions, exists) -> dict[str, tuple[int, str | None]]:
    """Kafka's checks of an AlterUserScramCredentials request (see the module's docstring):
    user -> (error code, message), NONE for a user whose every operation may be applied. A
    user with any failing operation has none of them applied. `exists(user, mechanism type)`
    says whether a credential is there now."""
    results: dict[str, tuple[int, str | None]] = {}
    seen: dict[tuple[str, int], int] = {}
    for op in list(deletions) + list(upsertions):
        seen[(op.name, op.mechanism)] = seen.get((op.name, op.mechanism), 0) + 1

    def fail(user: str, code: ErrorCode, message: str) -> None:
        results.setdefault(user, (int(code), message))

    for op in deletions:
        if not op.name:
            fail(op.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty")
        elif op.mechanism not in BY_TYPE:
            fail(op.name, ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism")
        elif seen[(op.name, op.mechanism)] > 1:
            fail(op.name, ErrorCode.DUPLICATE_RESOURCE,
                 "A user credential cannot be altered twice in the same request")
        elif not exists(op.name, op.mechanism):
            fail(op.name, ErrorCode.RESOURCE_NOT_FOUND,
                 "Attempt to delete a user credential that does not exist")
    for op in upsertions:
        mechanism = BY_TYPE.get(op.mechanism)
        if not op.name:
            fail(op.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty")
        elif mechanism is None:
            fail(op.name, ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism")
        elif seen[(op.name, op.mechanism)] > 1:
            fail(op.name, ErrorCode.DUPLICATE_RESOURCE,
                 "A user credential cannot be altered twice in the same request")
        elif op.iterations < mechanism.min_iterations:
            fail(op.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations")
        elif op.iterations > MAX_ITERATIONS:
            fail(op.name, ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations")
        elif not op.salt or not op.salted_password:
            fail(op.name, ErrorCode.UNACCEPTABLE_CREDENTIAL,
                 "Salt and salted password must not be empty")
    for op in list(deletions) + list(upsertions):
        results.setdefault(op.name, (0, None))
    return results


class ImageScramCredentials:
    """A cluster node's SCRAM credentials: those of its metadata image
    (UserScramCredentialRecords), read through `image()`; what the store answers, read-only."""

    def __init__(self, image):
        self._image = image

    def _users(self) -> dict:
        image = self._image()
        return {} if image is None else image.scram_credentials

    def lookup(self, user: str, mechanism_type: int) -> ScramCredential | None:
        return self._users().get(user, {}).get(mechanism_type)

    def users(self) -> list[str]:
        return sorted(self._users())

    def mechanisms_of(self, user: str) -> dict[int, ScramCredential]:
        return dict(self._users().get(user, {}))
