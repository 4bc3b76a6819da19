"""KIP-848 online migration with stock clients over a real broker: a group of classic consumers
(`group.protocol=classic`: confluent-kafka, kafka-python) is joined by a confluent-kafka consumer
using the consumer protocol (`group.protocol=consumer`). The broker converts the group online
(`group.consumer.migration.policy`, default bidirectional): both consume, the partitions split,
nothing is read twice or missed, committed offsets stay; when the consumer-protocol member leaves,
the group is a classic group again and the classic member gets every partition back. Admin
clients see the group's type change (ListGroups, ConsumerGroupDescribe / DescribeGroups).

Every assertion is on what the clients got back from the broker; every wait polls a condition
with a deadline.
"""

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from clients import partitions_of, produce_confluent, value_records
from harness import create_topic, unique, wait_for
from trioka.testing.process import BrokerProcess

TIMEOUT = 40
PARTITIONS = 4
FAST = {"group.consumer.heartbeat.interval.ms": 300, "group.consumer.session.timeout.ms": 6000}
CLASSIC_CONF = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 200,
                "auto.offset.reset": "earliest", "enable.auto.commit": False}


@pytest.fixture(scope="module")
def migration_broker():
    with BrokerProcess(overrides=FAST) as b:
        yield b.start()


def classic_consumer(bootstrap: str, group: str, assignor: str = "range") -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "group.protocol": "classic", "partition.assignment.strategy": assignor,
                     **CLASSIC_CONF})


def consumer_protocol_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "group.protocol": "consumer", "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})


def produce_round(bootstrap: str, topic: str, tag: str, per_partition: int = 5) -> set[bytes]:
    values = set()
    for p in range(PARTITIONS):
        batch = [f"{tag}-{p}-{i}".encode() for i in range(per_partition)]
        produce_confluent(bootstrap, topic, value_records(batch, p), config={"linger.ms": 5})
        values.update(batch)
    return values


class Reader:
    """Polls confluent-kafka consumers, committing each record synchronously, and keeps what
    each one read (a record read twice shows up twice)."""

    def __init__(self, consumers: dict):
        self.consumers = consumers
        self.got = {name: [] for name in consumers}

    def poll(self) -> None:
        for name, c in self.consumers.items():
            m = c.poll(0.05)
            if m is None:
                continue
            assert m.error() is None, m.error()
            self.got[name].append(m.value())
            c.commit(message=m, asynchronous=False)

    def until(self, done, what: str) -> None:
        def condition():
            self.poll()
            return done()
        wait_for(condition, TIMEOUT,
                 lambda: f"{what}; read {({n: len(v) for n, v in self.got.items()})}; "
                 f"assignments {({n: partitions_of(c) for n, c in self.consumers.items()})}",
                 interval=0)

    def all_values(self) -> list[bytes]:
        return [v for values in self.got.values() for v in values]


def group_type(bootstrap: str, group: str) -> str:
    """The group's type as confluent-kafka's admin client lists it (ListGroups v5)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups().result(timeout=TIMEOUT)
    for g in listed.valid:
        if g.group_id == group:
            return g.type.name
    return "absent"


def committed(bootstrap: str, group: str, topic: str) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=TIMEOUT)
        return [tp.offset for tp in tps]
    finally:
        c.close()


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_confluent_classic_group_upgrades_and_downgrades_online(migration_broker, topic_name,
                                                                 assignor):
    """The classic consumer's assignor is eager (range: it gives up everything and rejoins) or
    cooperative (it rejoins listing what it owns and gives up only what it must)."""
    b = migration_broker
    create_topic(b.bootstrap, topic_name, PARTITIONS)
    group = unique("migrate")
    first = produce_round(b.bootstrap, topic_name, "before")

    old = classic_consumer(b.bootstrap, group, assignor)
    old.subscribe([topic_name])
    reader = Reader({"classic": old})
    try:
        reader.until(lambda: set(reader.all_values()) >= first, "the classic consumer reads")
        assert sorted(reader.all_values()) == sorted(first)
        assert group_type(b.bootstrap, group) == "CLASSIC"

        # A consumer-protocol consumer joins: the group is upgraded and the partitions split.
        new = consumer_protocol_consumer(b.bootstrap, group)
        new.subscribe([topic_name])
        reader.consumers["consumer"] = new
        reader.got["consumer"] = []
        reader.until(lambda: partitions_of(old) and partitions_of(new)
                     and sorted(partitions_of(old) + partitions_of(new))
                     == list(range(PARTITIONS)), "the partitions split between both")
        assert group_type(b.bootstrap, group) == "CONSUMER"
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        described = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
        assert described.type.name == "CONSUMER" and len(described.members) == 2

        second = produce_round(b.bootstrap, topic_name, "during")
        reader.until(lambda: set(reader.all_values()) >= first | second, "both consume")
        assert sorted(reader.all_values()) == sorted(first | second), "read twice or missed"
        assert reader.got["consumer"], "the consumer-protocol member read nothing"
        assert committed(b.bootstrap, group, topic_name) == [10] * PARTITIONS

        # The consumer-protocol member leaves: the group is a classic group again and the
        # classic consumer gets every partition back.
        new.close()
        del reader.consumers["consumer"]
        reader.until(lambda: partitions_of(old) == list(range(PARTITIONS)),
                     "the classic consumer gets every partition back")
        assert group_type(b.bootstrap, group) == "CLASSIC"
        third = produce_round(b.bootstrap, topic_name, "after")
        reader.until(lambda: set(reader.all_values()) >= first | second | third,
                     "the classic consumer reads on")
        assert sorted(reader.all_values()) == sorted(first | second | third)
        assert committed(b.bootstrap, group, topic_name) == [15] * PARTITIONS
    finally:
        for c in reader.consumers.values():
            c.close()


def test_kafka_python_classic_consumer_with_a_consumer_protocol_member(migration_broker,
                                                                     topic_name):
    from kafka import KafkaConsumer

    b = migration_broker
    create_topic(b.bootstrap, topic_name, PARTITIONS)
    group = unique("migrate-kp")
    kp = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=group,
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       session_timeout_ms=6000, heartbeat_interval_ms=200,
                       fetch_max_wait_ms=100, retry_backoff_ms=50, metadata_max_age_ms=1000)
    new = None
    try:
        # kafka-python may lead its first join before its first metadata answer (seen under
        # the suite's load: "No partition metadata for topic") and assign nothing, and did not
        # always rejoin once its metadata showed the partitions: it subscribes once it has them.
        wait_for(lambda: len(kp.partitions_for_topic(topic_name) or ()) == PARTITIONS,
                 TIMEOUT, "kafka-python's metadata has the topic's partitions")
        kp.subscribe([topic_name])

        def kp_partitions() -> list[int]:
            kp.poll(timeout_ms=50)
            return sorted(tp.partition for tp in kp.assignment())

        wait_for(lambda: kp_partitions() == list(range(PARTITIONS)), TIMEOUT,
                 "kafka-python gets every partition")
        new = consumer_protocol_consumer(b.bootstrap, group)
        new.subscribe([topic_name])

        def split() -> bool:
            new.poll(0.05)
            mine, theirs = kp_partitions(), partitions_of(new)
            return bool(mine) and bool(theirs) and sorted(mine + theirs) == list(range(PARTITIONS))

        wait_for(split, TIMEOUT, lambda: f"the partitions split: kafka-python "
                 f"{sorted(tp.partition for tp in kp.assignment())}, confluent "
                 f"{partitions_of(new)}", interval=0)
        assert group_type(b.bootstrap, group) == "CONSUMER"
        # The classic member reads its partitions and commits (an OffsetCommit with its member
        # epoch as generation), the consumer-protocol member its own.
        values = produce_round(b.bootstrap, topic_name, "split")
        kp_got, new_got = [], []

        def both_read() -> bool:
            for records in kp.poll(timeout_ms=50).values():
                kp_got.extend(r.value for r in records)
            m = new.poll(0.05)
            if m is not None:
                assert m.error() is None, m.error()
                new_got.append(m.value())
            return sorted(kp_got + new_got) == sorted(values)

        wait_for(both_read, TIMEOUT, lambda: f"both read: kafka-python {len(kp_got)}, "
                 f"confluent {len(new_got)} of {len(values)}", interval=0)
        kp.commit()
        mine = sorted(tp.partition for tp in kp.assignment())
        offsets = committed(b.bootstrap, group, topic_name)
        assert [offsets[p] for p in mine] == [5] * len(mine)
        new.close()
        new = None
        wait_for(lambda: kp_partitions() == list(range(PARTITIONS)), TIMEOUT,
                 "kafka-python gets every partition back")
        assert group_type(b.bootstrap, group) == "CLASSIC"
    finally:
        if new is not None:
            new.close()
        kp.close()


@pytest.fixture
def no_migration_broker():
    with BrokerProcess(overrides={**FAST, "group.consumer.migration.policy": "disabled"}) as b:
        yield b.start()


def test_consumer_protocol_member_refused_when_migration_is_disabled(no_migration_broker,
                                                                     topic_name):
    """`group.consumer.migration.policy=disabled`: the consumer-protocol consumer's join of a
    classic group with members is GROUP_ID_NOT_FOUND, which librdkafka reports as fatal; the
    classic consumer keeps its partitions."""
    b = no_migration_broker
    create_topic(b.bootstrap, topic_name, PARTITIONS)
    group = unique("no-migrate")
    old = classic_consumer(b.bootstrap, group)
    old.subscribe([topic_name])
    new = consumer_protocol_consumer(b.bootstrap, group)
    try:
        wait_for(lambda: old.poll(0.05) is None and partitions_of(old) == list(range(PARTITIONS)),
                 TIMEOUT, "the classic consumer gets every partition", interval=0)
        new.subscribe([topic_name])
        errors = []

        def refused() -> bool:
            old.poll(0.02)
            m = new.poll(0.05)
            if m is not None and m.error() is not None:
                errors.append(m.error())
            return bool(errors)

        wait_for(refused, TIMEOUT, "the consumer-protocol consumer is refused", interval=0)
        assert errors[0].code() == KafkaError._FATAL
        assert "The group id does not exist" in errors[0].str()
        assert partitions_of(old) == list(range(PARTITIONS))
        assert group_type(b.bootstrap, group) == "CLASSIC"
    finally:
        new.close()
        old.close()
