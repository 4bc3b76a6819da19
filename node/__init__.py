"""A node's links to the other nodes of a cluster: the inter-node client (`channel.py`), the
faults a test injects into them (`controls.py`) and the broker's registration and heartbeats
with the controller (`lifecycle.py`); and how the node's process runs: the garbage collector's
policy (`memory.py`) and work handed to worker threads (`threads.py`)."""
