"""`trioka cluster`: what a cluster says of itself, over the Kafka protocol.

    trioka cluster info           cluster id, controller and brokers (DescribeCluster, KIP-700;
                                  Metadata from a broker without DescribeCluster)
    trioka cluster api-versions   per broker, the API versions it serves, as
                                  kafka-broker-api-versions.sh prints them

`info` prints `Cluster ID: <id>`, `Controller: <node id>` (-1 when none is known) and a table
`ID HOST PORT RACK` of the brokers ("null" for a broker without a rack, as Kafka prints it).

`api-versions` asks every broker (ApiVersions on a connection of its own) and prints, as
kafka-broker-api-versions.sh does, a block per broker:

    127.0.0.1:9092 (id: 1 rack: null isFenced: false) -> (
        Produce(0): 0 to 13 [usable: 13],
        ...
    )

one line per API the broker reported: `Name(key): min to max` (a single version when min = max)
and the newest version both sides know, `[usable: v]`; `[unusable: node too new]` or `[unusable:
node too old]` when the ranges do not meet. This client's side is every version of the message
definitions it can encode (trioka.wire.schema), as the Java tool's side is its ApiKeys.
"""

from trioka.cli import connection_args, open_client, print_table
from trioka.wire import schema


def add_parser(sub) -> None:
    p = sub.add_parser("cluster", help="cluster id, controller, brokers and their API versions",
                       description="What a cluster says of itself.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    i = actions.add_parser("info", help="cluster id, controller and brokers (DescribeCluster)")
    i.set_defaults(run=info)
    v = actions.add_parser("api-versions", help="each broker's API versions, as "
                                                "kafka-broker-api-versions.sh prints them")
    v.set_defaults(run=api_versions)
    for q in (i, v):
        connection_args(q)


def brokers_of(client) -> tuple[str | None, int, list[tuple[int, str, int, str | None, bool]]]:
    """(cluster id, controller id, [(id, host, port, rack, fenced)]) from DescribeCluster, or
    from Metadata when the broker does not serve it."""
    described = client.describe_cluster()
    if described is not None:
        return described.cluster_id, described.controller_id, sorted(
            (b.broker_id, b.host, b.port, b.rack, bool(getattr(b, "is_fenced", False)))
            for b in described.brokers)
    client.metadata([])
    racks = client.racks
    return client.cluster_id, client.controller_id, sorted(
        (node, host, port, racks.get(node), False)
        for node, (host, port) in client.brokers.items())


def info(args) -> int:
    with open_client(args) as client:
        cluster_id, controller, brokers = brokers_of(client)
    print(f"Cluster ID: {cluster_id}")
    print(f"Controller: {controller}")
    print_table(["ID", "HOST", "PORT", "RACK"],
                [[node, host, port, "null" if rack is None else rack]
                 for node, host, port, rack, _ in brokers])
    return 0


def api_version_text(key: int, lo: int, hi: int) -> str:
    """One API's line, in Kafka's NodeApiVersions words."""
    try:
        api = schema.api(key)
    except KeyError:
        return f"UNKNOWN({key}): {lo if lo == hi else f'{lo} to {hi}'}"
    text = f"{api.name}({key}): {lo if lo == hi else f'{lo} to {hi}'}"
    ours_lo, ours_hi = api.valid
    if ours_hi < lo:
        return text + " [unusable: node too new]"
    if hi < ours_lo:
        return text + " [unusable: node too old]"
    return text + f" [usable: {min(ours_hi, hi)}]"


def node_text(host: str, port: int, node: int, rack: str | None, fenced: bool) -> str:
    """A broker as Kafka's Node prints itself."""
    return (f"{host}:{port} (id: {node} rack: {'null' if rack is None else rack} "
            f"isFenced: {str(fenced).lower()})")


def api_versions_block(node: str, versions: dict[int, tuple[int, int]]) -> str:
    lines = [api_version_text(k, lo, hi) for k, (lo, hi) in sorted(versions.items())]
    return f"{node} -> (\n\t" + ",\n\t".join(lines) + "\n)\n"


def api_versions(args) -> int:
    with open_client(args) as client:
        _, _, brokers = brokers_of(client)
        for node, host, port, rack, fenced in brokers:
            versions = client.connect(host, port).broker_versions
            print(api_versions_block(node_text(host, port, node, rack, fenced), versions))
    return 0
