"""Producer ids: unique for the life of the data directory.

Kafka's controller hands brokers blocks of 1000 producer ids and remembers the highest block given.
Here the broker reserves a block at a time the same way and keeps the end of the last reserved block
in the file `producer-id-block` of the data directory (one decimal number, replaced atomically:
temp file, fsync, rename, directory fsync, by log/files.py), so ids are never reused after a
restart, clean or not, nor after a power cut: a restart simply starts a new block. A block is
used only once its end is durable.

On a node of a cluster every node hands out ids, and no two may hand out the same one (Kafka's
controller gives each broker its own blocks with AllocateProducerIds). Each node takes the ids
congruent to its node id modulo NODE_ID_SPACE: the n-th id of its own sequence is
`n * NODE_ID_SPACE + node id`, so the nodes' ids never meet, with no request to the controller.
"""

from trioka.log.files import DiskFiles

BLOCK_SIZE = 1000
# The node ids a cluster's nodes may have (0 .. NODE_ID_SPACE - 1) for their producer ids to be
# apart; 2**47 ids remain to each node.
NODE_ID_SPACE = 1 << 16
FILE_NAME = "producer-id-block"


class ProducerIdManager:
    """Producer ids of the data dir `data_dir` (None: in memory, from 0 at every start). `files`
    are the data dir's files, when the broker shares its log manager's (and so its log dir
    failure channel); by default the manager opens the dir itself."""

    def __init__(self, data_dir: str | None, *, files=None, node_id: int | None = None):
        self.files = files if files is not None else \
            (DiskFiles(data_dir) if data_dir else None)
        if node_id is not None and not 0 <= node_id < NODE_ID_SPACE:
            raise ValueError(f"node.id {node_id} is outside 0..{NODE_ID_SPACE - 1}, the node ids "
                             f"whose producer ids are kept apart")
        self.node_id = node_id     # a node of a cluster (see the module's docstring)
        self._next = 0
        self._block_end = 0     # first id past the reserved block

    def open(self) -> None:
        if self.files is None:
            return
        try:
            text = self.files.read_small(FILE_NAME).decode("ascii").strip()
        except FileNotFoundError:
            return
        self._next = self._block_end = int(text) if text else 0

    def _reserve(self) -> None:
        end = self._block_end + BLOCK_SIZE
        if self.files is not None:
            self.files.write_atomic(FILE_NAME, f"{end}\n".encode("ascii"))
        self._next = self._block_end
        self._block_end = end

    def generate(self) -> int:
        if self._next >= self._block_end:
            self._reserve()
        pid = self._next
        self._next += 1
        if self.node_id is not None:
            return pid * NODE_ID_SPACE + self.node_id
        return pid
