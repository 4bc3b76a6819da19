"""trioka: a Kafka-compatible broker on trio.

Stock Kafka clients talk to it unchanged: it speaks the Kafka wire protocol and keeps record-batch
v2 data in Kafka's own segment-file layout. Names are imported lazily so that `python -m trioka`
starts fast:

- `trioka.Broker`: a broker inside your own process, for tests and scripts (testing/embedded.py);
- `trioka.Cluster`: several nodes inside your own process, with node controls (stop, kill, start,
  isolate, heal, slow) for failover tests (testing/embedded.py, node/cluster.py);
- `trioka.Config`: the broker's settings under Kafka's keys (config.py);
- `trioka.serve`: run a broker in your own trio nursery (server.py).
"""

__version__ = "0.1.0"

__all__ = ["Broker", "Cluster", "Config", "serve", "__version__"]


def __getattr__(name):
    if name == "Broker":
        from trioka.testing.embedded import Broker
        return Broker
    if name == "Cluster":
        from trioka.testing.embedded import Cluster
        return Cluster
    if name == "serve":
        from trioka.server import serve
        return serve
    if name == "Config":
        from trioka.config import Config
        return Config
    raise AttributeError(f"module 'trioka' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
