"""Where a new partition's replicas go: Kafka's StripedReplicaPlacer.

The goals, in Kafka's order of priority:

1. spread each partition's replicas across racks (`broker.rack`), as evenly as the racks allow;
2. spread replicas and leaders across brokers, so that consecutive partitions do not land on the
   same set of brokers and a failed broker's leaderships fall on many others;
3. prefer unfenced brokers to fenced ones.

And two constraints: no broker holds two replicas of a partition (so the replication factor is
at most the number of usable brokers), and the first replica, the leader-to-be, is unfenced.

The usable brokers are the registered ones not in controlled shutdown, fenced or not. Racks are
visited round-robin from a random starting rack that moves by one for each partition, and within
a rack brokers are taken round-robin from a random starting point too, unfenced ones before
fenced ones: with racks A, B, C of three brokers each and every offset at 0, partitions get
(A0, B0, C0), (B1, C1, A1), (C2, A2, B2) -- the "stripes". Once as many partitions have been
placed as there are unfenced brokers, racks and brokers are shuffled so the next round does not
repeat the same sets.

Failures are INVALID_REPLICATION_FACTOR with Kafka's messages; the caller prefixes them with
"Unable to replicate the partition N time(s): ", as Kafka's controller does.
"""

import dataclasses
import random as random_module

from trioka.wire.errors import ErrorCode, KafkaError


@dataclasses.dataclass(frozen=True)
class UsableBroker:
    """A broker new replicas may be placed on (Kafka's UsableBroker)."""
    id: int
    rack: str | None
    fenced: bool


class BrokerList:
    """The brokers of one rack that are (or are not) fenced, walked round-robin."""

    def __init__(self):
        self.brokers: list[int] = []
        self.index = 0     # brokers returned in the current iteration epoch
        self.offset = 0    # where the walk starts, moved by one each epoch
        self.epoch = 0

    def initialize(self, rng: random_module.Random) -> None:
        if self.brokers:
            self.brokers.sort()
            self.offset = rng.randrange(len(self.brokers))

    def shuffle(self, rng: random_module.Random) -> None:
        rng.shuffle(self.brokers)

    def next(self, epoch: int) -> int:
        """The next broker of this epoch, or -1 when every one was returned."""
        if not self.brokers:
            return -1
        if self.epoch != epoch:
            self.epoch = epoch
            self.index = 0
            self.offset = (self.offset + 1) % len(self.brokers)
        if self.index >= len(self.brokers):
            return -1
        broker = self.brokers[(self.index + self.offset) % len(self.brokers)]
        self.index += 1
        return broker


class Rack:
    def __init__(self):
        self.unfenced = BrokerList()
        self.fenced = BrokerList()

    def initialize(self, rng) -> None:
        self.fenced.initialize(rng)
        self.unfenced.initialize(rng)

    def shuffle(self, rng) -> None:
        self.fenced.shuffle(rng)
        self.unfenced.shuffle(rng)

    def next_unfenced(self, epoch: int) -> int:
        return self.unfenced.next(epoch)

    def next(self, epoch: int) -> int:
        """An unfenced broker if one is left this epoch, else a fenced one, else -1."""
        broker = self.unfenced.next(epoch)
        return broker if broker >= 0 else self.fenced.next(epoch)


def rack_order(name: str | None) -> tuple:
    """Racks sort by name, brokers without a rack first (Kafka's OptionalStringComparator)."""
    return (name is not None, name or "")


class RackList:
    """Every usable broker by rack; `place` gives one partition's replicas at a time."""

    def __init__(self, rng: random_module.Random, brokers):
        self.rng = rng
        self.racks: dict[str | None, Rack] = {}
        self.num_total_brokers = 0
        self.num_unfenced_brokers = 0
        for broker in brokers:
            rack = self.racks.setdefault(broker.rack, Rack())
            if broker.fenced:
                rack.fenced.brokers.append(broker.id)
            else:
                rack.unfenced.brokers.append(broker.id)
                self.num_unfenced_brokers += 1
            self.num_total_brokers += 1
        self.rack_names = sorted(self.racks, key=rack_order)
        for name in self.rack_names:
            self.racks[name].initialize(rng)
        self.epoch = 0
        self.offset = rng.randrange(len(self.rack_names)) if self.rack_names else 0

    def place(self, replication_factor: int) -> list[int]:
        check_replication_factor(replication_factor, self.num_total_brokers,
                                 self.num_unfenced_brokers)
        # After as many partitions as there are unfenced brokers, shuffle so the next round
        # does not repeat the same replica sets (not with one broker: nothing would change).
        if self.epoch == self.num_unfenced_brokers and self.num_unfenced_brokers > 1:
            self.rng.shuffle(self.rack_names)
            for name in sorted(self.racks, key=rack_order):
                self.racks[name].shuffle(self.rng)
            self.epoch = 0
        if self.offset == len(self.rack_names):
            self.offset = 0
        # The leader: the first unfenced broker from the starting rack on.
        first_rack = self.offset
        while True:
            leader = self.racks[self.rack_names[first_rack]].next_unfenced(self.epoch)
            if leader >= 0:
                break
            first_rack = (first_rack + 1) % len(self.rack_names)
        replicas = [leader]
        # The followers: one rack after another from the starting rack, skipping the leader's
        # rack on the first lap (it already gave one).
        rack_index = self.offset
        for _ in range(1, replication_factor):
            broker = -1
            while broker < 0:
                if rack_index == first_rack:
                    first_rack = -1
                else:
                    broker = self.racks[self.rack_names[rack_index]].next(self.epoch)
                rack_index = (rack_index + 1) % len(self.rack_names)
            replicas.append(broker)
        self.epoch += 1
        self.offset += 1
        return replicas


def check_replication_factor(replication_factor: int, num_total_brokers: int,
                             num_unfenced_brokers: int) -> None:
    if replication_factor <= 0:
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                         f"Invalid replication factor {replication_factor}: the replication "
                         f"factor must be positive.")
    if num_unfenced_brokers == 0:
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR, "All brokers are currently fenced.")
    if replication_factor > num_total_brokers:
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                         f"The target replication factor of {replication_factor} cannot be "
                         f"reached because only {num_total_brokers} broker(s) are registered.")


class StripedReplicaPlacer:
    """Places the replicas of new partitions. `rng` is a `random.Random` (seed it for placements
    a test can predict); racks draw from it in the order of their names."""

    def __init__(self, rng: random_module.Random | None = None):
        self.rng = rng or random_module.Random()

    def place(self, num_partitions: int, replication_factor: int,
              usable_brokers) -> list[list[int]]:
        """The replicas of `num_partitions` new partitions, leader first."""
        rack_list = RackList(self.rng, usable_brokers)
        check_replication_factor(replication_factor, rack_list.num_total_brokers,
                                 rack_list.num_unfenced_brokers)
        return [rack_list.place(replication_factor) for _ in range(num_partitions)]
