"""Node faults: how a test makes one node of a cluster unreachable or slow, on purpose.

A Kafka cluster is tested against the failures of its nodes: a broker cut off from the others (a
network partition: its fetches, heartbeats and AlterPartition requests fail, and the others cannot
reach it) or a follower that falls behind (its fetches answer late, so it drops out of the ISR
after `replica.lag.time.max.ms`). `NodeControls` is that state for one node, pure and without I/O:

- `isolated`: every request the node sends to another node (a `NodeChannel` request) fails at
  once with `NodeUnreachable`, and the node's server refuses inter-node requests (anything on
  the controller listener, Fetch and OffsetForLeaderEpoch from a replica). Clients still reach
  it, as clients of a partitioned broker do.
- `slow_ms`: the node's replica fetcher waits that long before each fetch it sends.
- `rtt_ms`: a round-trip delay of the node's network: every response the node sends, to
  clients and to other nodes, waits that long before it goes out (the way to the node and back
  as one wait). A connection is served one request at a time, so requests a client pipelines
  on one connection wait one after another, a pessimistic model of a slow link.

`isolate()`, `heal()`, `slow(ms)` and `rtt(ms)` change it; `changed()` is an event set at the
next change (then replaced), so a task waiting on the state wakes when it moves, as with
`controls.rules`.
"""

from __future__ import annotations

import trio

MAX_RTT_MS = 600_000    # ten minutes at most, as a delay control (controls/rules.py)


class NodeControls:
    """The faults injected into one node's links to the others."""

    def __init__(self) -> None:
        self.isolated = False
        self.slow_ms = 0
        self.rtt_ms = 0
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return f"NodeControls(isolated={self.isolated}, slow_ms={self.slow_ms}, " \
               f"rtt_ms={self.rtt_ms})"

    def isolate(self) -> None:
        """Cut the node off from the other nodes (both directions)."""
        self.isolated = True
        self._update()

    def heal(self) -> None:
        """End every fault: reachable again, fetching and answering at full speed."""
        self.isolated = False
        self.slow_ms = 0
        self.rtt_ms = 0
        self._update()

    def slow(self, ms: int) -> None:
        """Delay each replica fetch this node sends by `ms` milliseconds (0: no delay)."""
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ValueError(f"slow_ms must be a non-negative integer, not {ms!r}")
        self.slow_ms = ms
        self._update()

    def rtt(self, ms: int) -> None:
        """Hold every response of this node `ms` milliseconds before sending it (0: none)."""
        if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= MAX_RTT_MS:
            raise ValueError(f"rtt_ms must be an integer from 0 to {MAX_RTT_MS}, not {ms!r}")
        self.rtt_ms = ms
        self._update()

    def state(self) -> dict:
        return {"isolated": self.isolated, "slow_ms": self.slow_ms, "rtt_ms": self.rtt_ms}

    def changed(self) -> trio.Event:
        """Set at the next change of the faults (then replaced)."""
        return self._changed

    def _update(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
