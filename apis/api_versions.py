"""ApiVersions (key 18), v0-4: which API keys and versions this broker serves.

The list is computed from the table of the connection's listener (`APIS` as the Kafka release
posed as had it, `trioka.kafka.version`, or `CONTROLLER_APIS` on a listener named in
`controller.listener.names`), so it advertises exactly what has a handler. Version 3
(KIP-511) adds the client's software name and version, which are recorded on the connection and
must match `[a-zA-Z0-9](?:[a-zA-Z0-9\\-.]*[a-zA-Z0-9])?` (INVALID_REQUEST otherwise). A request
for a version newer than we serve is answered at v0 with UNSUPPORTED_VERSION and our ApiVersions
range, so the client retries with a version we know; the server does that before the body is
parsed, see server.py.

From v3 the answer also carries the features (config.py, KIP-584): the levels this broker supports and
the ones it has finalized, with their epoch (none before Kafka 4.0: wire/releases.py). Java
clients before KAFKA-17011 refuse a supported range starting at 0, so below v4 such a range is
reported from 1, as Kafka does.
"""

import re

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

_SOFTWARE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?\Z")

Response = response_class(ApiKey.API_VERSIONS)


def supported(apis: dict) -> list:
    """One ApiVersion entry for each key of the table."""
    return [Response.ApiVersion(api_key=key, min_version=api.versions[0],
                                max_version=api.versions[1])
            for key, api in sorted(apis.items())]


def unsupported_version_response(versions: tuple[int, int]) -> object:
    """KIP-511: the v0 answer to a too-new ApiVersions request, with the `versions` of
    ApiVersions the connection's table serves."""
    lo, hi = versions
    return Response(error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=[
        Response.ApiVersion(api_key=ApiKey.API_VERSIONS, min_version=lo, max_version=hi)])


async def handle(broker, request, ctx):
    from trioka.apis import table_for
    # The table of the connection's listener: a controller listener serves the controller's.
    table = table_for(broker.config, ctx.connection.listener)
    if ctx.connection.authenticator is not None:
        # On a SASL listener, ApiVersions may come once, before SaslHandshake.
        ctx.connection.authenticator.answered_api_versions()
    if ctx.api_version >= 3:
        name, version = request.client_software_name, request.client_software_version
        if not (_SOFTWARE.match(name or "") and _SOFTWARE.match(version or "")):
            return Response(error_code=ErrorCode.INVALID_REQUEST)
        ctx.connection.client_software_name = name
        ctx.connection.client_software_version = version
        return Response(error_code=ErrorCode.NONE, api_keys=supported(table), throttle_time_ms=0,
                        **features(broker, ctx.api_version))
    return Response(error_code=ErrorCode.NONE, api_keys=supported(table), throttle_time_ms=0)


def features(broker, version: int) -> dict:
    """The feature fields of a v3+ answer: those of the Kafka release posed as."""
    from trioka.config import supported_features
    return {
        "supported_features": [
            Response.SupportedFeatureKey(name=name, min_version=max(lo, 1) if version < 4 else lo,
                                         max_version=hi)
            for name, (lo, hi) in sorted(supported_features(broker.config).items())],
        "finalized_features_epoch": broker.features_epoch,
        "finalized_features": [
            Response.FinalizedFeatureKey(name=name, min_version_level=level,
                                         max_version_level=level)
            for name, level in sorted(broker.features.items())],
    }
