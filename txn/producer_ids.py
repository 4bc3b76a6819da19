"""Producer ids: unique for the life of the data directory.

Kafka's controller hands brokers blocks of 1000 producer ids and remembers the highest block given.
Here the broker reserves a block at a time the same way and keeps the end of the last reserved block
in the file `producer-id-block` of the data directory (one decimal number, replaced atomically), so
ids are never reused after a restart, clean or not: a restart simply starts a new block.
"""

import os

BLOCK_SIZE = 1000
FILE_NAME = "producer-id-block"


class ProducerIdManager:
    def __init__(self, data_dir: str | None):
        self.path = os.path.join(data_dir, FILE_NAME) if data_dir else None
        self._next = 0
        self._block_end = 0     # first id past the reserved block

    def open(self) -> None:
        if self.path and os.path.exists(self.path):
            with open(self.path, encoding="ascii") as f:
                text = f.read().strip()
            self._next = self._block_end = int(text) if text else 0

    def _reserve(self) -> None:
        end = self._block_end + BLOCK_SIZE
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="ascii") as f:
                f.write(f"{end}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        self._next = self._block_end
        self._block_end = end

    def generate(self) -> int:
        if self._next >= self._block_end:
            self._reserve()
        pid = self._next
        self._next += 1
        return pid
