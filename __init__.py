"""trioka: a Kafka-compatible broker on trio.

Stock Kafka clients talk to it unchanged: it speaks the Kafka wire protocol and keeps record-batch
v2 data in Kafka's own segment-file layout. Names are imported lazily so that `python -m trioka`
starts fast.
"""

__version__ = "0.1.0"

__all__ = ["Broker", "Config", "serve", "__version__"]


def __getattr__(name):
    if name == "Broker":
        from trioka.embedded import Broker
        return Broker
    if name == "serve":
        from trioka.server import serve
        return serve
    if name == "Config":
        from trioka.config import Config
        return Config
    raise AttributeError(name)
