"""MetadataLoader against a fake controller: an object with NodeChannel's `request` that answers
Raft-style Fetches of `__cluster_metadata` from encoded record batches (metadata/batches.py),
every request and answer going through the wire codec. No sockets; trio's autojump clock."""

import uuid

import trio

from trioka.clock import Clock
from trioka.metadata import records as r
from trioka.metadata.batches import encode_batch
from trioka.metadata.loader import METADATA_TOPIC_ID, MetadataLoader
from trioka.node.channel import NodeUnreachable
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

FETCH = ApiKey.FETCH
FOO = uuid.UUID(int=0xF00)
BAR = uuid.UUID(int=0xBA2)
INC = uuid.UUID(int=77)


def through_the_wire(message, request: bool, version: int):
    api = schema.api(FETCH)
    kind = api.request if request else api.response
    decoded, _ = kind.decode(memoryview(kind.encode(message, version)), 0, version)
    return decoded


class FakeController:
    """The metadata log as batches; answers Fetch as a Raft leader does (holding it while
    there is nothing new)."""

    def __init__(self, version=17, epoch=1):
        self.version = version
        self.epoch = epoch
        self.batches: list[tuple[int, int, int, bytes]] = []   # (base, last, epoch, bytes)
        self.high_watermark = None       # None: the log end
        self.down = False
        self.requests = []
        self.answer_error = None         # (partition error code, current leader epoch)
        self.diverge_at = None           # (epoch, end offset) to answer once
        self.appended = trio.Event()

    @property
    def end_offset(self):
        return self.batches[-1][1] + 1 if self.batches else 0

    def append(self, records, epoch=None):
        epoch = self.epoch if epoch is None else epoch
        base = self.end_offset
        data = encode_batch(records, base_offset=base, epoch=epoch, timestamp_ms=1)
        self.batches.append((base, base + len(records) - 1, epoch, data))
        self.appended.set()
        self.appended = trio.Event()

    async def request(self, api_key, message, *, version=None, timeout_ms=None, quiet_ms=0):
        assert api_key == FETCH
        await trio.sleep(0)
        if self.down:
            raise NodeUnreachable("Fetch to 127.0.0.1:9093: connection refused")
        message = through_the_wire(message, True, self.version)
        self.requests.append(message)
        fetch = message.topics[0].partitions[0]
        if fetch.fetch_offset >= self.end_offset and self.answer_error is None \
                and self.diverge_at is None:
            with trio.move_on_after(message.max_wait_ms / 1000):
                await self.appended.wait()
        Response = protocol.response_class(FETCH)
        Topic = Response.FetchableTopicResponse
        data = Topic.PartitionData(partition_index=0, error_code=0,
                                   high_watermark=self.end_offset if self.high_watermark is None
                                   else self.high_watermark,
                                   last_stable_offset=-1, log_start_offset=0,
                                   aborted_transactions=None, records=None)
        data.current_leader = Topic.PartitionData.LeaderIdAndEpoch(leader_id=1,
                                                                  leader_epoch=self.epoch)
        if self.answer_error is not None:
            data.error_code, data.current_leader.leader_epoch = self.answer_error
            self.answer_error = None
        elif self.diverge_at is not None:
            epoch, end = self.diverge_at
            data.diverging_epoch = Topic.PartitionData.EpochEndOffset(epoch=epoch, end_offset=end)
            self.diverge_at = None
        else:
            data.records = b"".join(b for base, last, _, b in self.batches
                                    if last >= fetch.fetch_offset) or None
        response = Response(throttle_time_ms=0, error_code=0, session_id=0, responses=[
            Topic(topic="__cluster_metadata", topic_id=METADATA_TOPIC_ID, partitions=[data])])
        return through_the_wire(response, False, self.version)


def broker_records(broker_id=1, epoch=0):
    return [r.feature_level_record(r.METADATA_VERSION, r.METADATA_VERSION_LEVEL),
            r.register_broker_record(broker_id, INC, epoch,
                                     [("PLAINTEXT", "127.0.0.1", 9092, 0)],
                                     [(r.METADATA_VERSION, 1, 16)], None)]


def topic_records(name, topic_id):
    return [r.topic_record(name, topic_id), r.partition_record(topic_id, 0, [1], [1], leader=1)]


class Subscriber:
    def __init__(self):
        self.published = []   # (image, number of records)
        self.changed = trio.Event()

    def __call__(self, image, records):
        self.published.append((image, [rec.record_type for rec in records]))
        self.changed.set()
        self.changed = trio.Event()


def loader_for(controller, subscriber, **kw):
    return MetadataLoader(node_id=2, cluster_id="abc", channel=controller, clock=Clock(),
                          publish=subscriber, **kw)


async def wait_for(predicate, timeout=30):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_catches_up_and_follows_new_records(autojump_clock):
    controller = FakeController()
    controller.append(broker_records())
    controller.append(topic_records("foo", FOO))
    subscriber = Subscriber()
    loader = loader_for(controller, subscriber)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        with trio.fail_after(5):
            await loader.caught_up.wait()
        assert loader.next_offset == 4 and loader.high_watermark == 4
        assert loader.image.topic("foo").partitions[0].leader == 1
        assert loader.image.brokers[1].fenced and loader.image.offset == 3
        assert len(subscriber.published) == 1 and len(subscriber.published[0][1]) == 4
        # The request: the metadata topic by id, this node as the replica, the cluster id.
        first = controller.requests[0]
        assert first.cluster_id == "abc" and first.replica_state.replica_id == 2
        assert first.max_wait_ms == 500
        assert first.topics[0].topic_id == uuid.UUID(int=1)
        assert str(first.topics[0].topic_id) == "00000000-0000-0000-0000-000000000001"
        assert (first.topics[0].partitions[0].fetch_offset,
                first.topics[0].partitions[0].last_fetched_epoch) == (0, -1)
        # Nothing new: the controller holds fetches, the loader waits on them.
        await trio.sleep(5)
        assert 5 <= len(controller.requests) <= 13
        controller.append(topic_records("bar", BAR), epoch=2)
        await wait_for(lambda: loader.image.topic("bar") is not None)
        assert len(subscriber.published) == 2 and loader.next_offset == 6
        last = controller.requests[-1].topics[0].partitions[0]
        assert (last.fetch_offset, last.last_fetched_epoch) == (6, 2)
        assert last.current_leader_epoch == 1
        nursery.cancel_scope.cancel()


async def test_only_committed_records_are_applied(autojump_clock):
    controller = FakeController()
    controller.append(broker_records())
    controller.append(topic_records("foo", FOO))
    controller.high_watermark = 2          # the topic's records are not committed yet
    subscriber = Subscriber()
    loader = loader_for(controller, subscriber)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        with trio.fail_after(5):
            await loader.caught_up.wait()
        assert loader.next_offset == 2 and loader.image.topic("foo") is None
        await trio.sleep(2)
        assert loader.image.topic("foo") is None and len(subscriber.published) == 1
        controller.high_watermark = None
        await wait_for(lambda: loader.image.topic("foo") is not None)
        assert loader.next_offset == 4
        # Each record applied once.
        assert [len(types) for _, types in subscriber.published] == [2, 2]
        nursery.cancel_scope.cancel()


async def test_caught_up_waits_for_the_first_high_watermark(autojump_clock):
    controller = FakeController()
    controller.append(broker_records())
    controller.append(topic_records("foo", FOO))
    subscriber = Subscriber()
    controller.high_watermark = 1
    loader = loader_for(controller, subscriber)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        await wait_for(lambda: loader.next_offset == 1)
        assert loader.caught_up.is_set()           # the first answer's HW was 1
        nursery.cancel_scope.cancel()
    empty = FakeController()
    loader = loader_for(empty, Subscriber())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        with trio.fail_after(5):
            await loader.caught_up.wait()          # an empty log: caught up at once
        assert loader.next_offset == 0
        nursery.cancel_scope.cancel()


async def test_unreachable_controller_is_retried_with_backoff(autojump_clock):
    controller = FakeController()
    controller.append(broker_records())
    controller.down = True
    loader = loader_for(controller, Subscriber())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        await trio.sleep(10)
        # 100, 200, 400, 800, then every 1000 ms.
        assert 9 <= loader.fetches <= 16
        assert "connection refused" in loader.last_error
        assert not loader.caught_up.is_set()
        controller.down = False
        with trio.fail_after(1.5):
            await loader.caught_up.wait()
        assert loader.last_error is None and loader.next_offset == 2
        nursery.cancel_scope.cancel()


async def test_a_new_leader_epoch_is_used_at_once(autojump_clock):
    controller = FakeController(epoch=1)
    controller.append(broker_records())
    loader = loader_for(controller, Subscriber())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        await loader.caught_up.wait()
        controller.epoch = 3
        controller.answer_error = (ErrorCode.FENCED_LEADER_EPOCH, 3)
        controller.appended.set()
        controller.appended = trio.Event()
        await wait_for(lambda: controller.requests[-1].topics[0].partitions[0]
                       .current_leader_epoch == 3, timeout=1)
        nursery.cancel_scope.cancel()


async def test_a_diverging_log_is_loaded_again_from_the_start(autojump_clock):
    controller = FakeController()
    controller.append(broker_records())
    controller.append(topic_records("foo", FOO))
    subscriber = Subscriber()
    loader = loader_for(controller, subscriber)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        await loader.caught_up.wait()
        old_image = loader.image
        # The controller lost the topic's records and wrote others in a new epoch.
        controller.batches = controller.batches[:1]
        controller.epoch = 2
        controller.append(topic_records("bar", BAR))
        controller.diverge_at = (1, 2)
        controller.appended.set()
        await wait_for(lambda: loader.reloads == 1 and loader.next_offset == 4)
        assert loader.image is not old_image
        assert loader.image.topic("foo") is None and loader.image.topic("bar") is not None
        assert subscriber.published[-1][0] is loader.image
        nursery.cancel_scope.cancel()


async def test_older_fetch_versions_name_the_topic(autojump_clock):
    controller = FakeController(version=12)
    controller.append(broker_records())
    loader = loader_for(controller, Subscriber())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        with trio.fail_after(5):
            await loader.caught_up.wait()
        request = controller.requests[0]
        assert request.topics[0].topic == "__cluster_metadata" and request.replica_id == 2
        assert loader.image.brokers[1].id == 1
        nursery.cancel_scope.cancel()


def test_a_record_the_image_cannot_apply_is_skipped():
    controller = FakeController()
    controller.append([r.partition_change_record(FOO, 0, isr=[1])] + broker_records())
    subscriber = Subscriber()
    loader = loader_for(controller, subscriber)
    Response = protocol.response_class(FETCH)
    Topic = Response.FetchableTopicResponse
    data = Topic.PartitionData(partition_index=0, error_code=0, high_watermark=3,
                               records=controller.batches[0][3])
    response = Response(error_code=0, responses=[Topic(topic_id=METADATA_TOPIC_ID,
                                                       partitions=[data])])
    assert loader.handle_response(response) is True
    assert loader.replay_errors == 1 and loader.next_offset == 3
    assert 1 in loader.image.brokers and loader.caught_up.is_set()


async def test_a_controller_that_lost_its_log_is_followed_again(autojump_clock):
    controller = FakeController(epoch=5)
    controller.append(broker_records())
    controller.append(topic_records("foo", FOO))
    loader = loader_for(controller, Subscriber())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        await loader.caught_up.wait()
        # A new, shorter log: the high watermark is below what was applied.
        controller.batches = []
        controller.epoch = 1
        controller.append(broker_records(broker_id=7))
        controller.appended.set()
        await wait_for(lambda: loader.reloads == 1 and loader.next_offset == 2)
        assert set(loader.image.brokers) == {7}
        # Longer than what was applied, in epochs the loader never saw, and no diverging
        # epoch the wire can carry: nothing comes from our offset, so it loads again.
        controller.batches = []
        controller.append(broker_records(broker_id=8) + topic_records("bar", BAR))
        controller.appended.set()
        original = controller.request

        async def without_records(api_key, message, **kw):
            response = await original(api_key, message, **kw)
            if message.topics[0].partitions[0].fetch_offset > 0:
                response.responses[0].partitions[0].records = None
            return response

        controller.request = without_records
        await wait_for(lambda: loader.reloads == 2 and loader.next_offset == 4)
        assert set(loader.image.brokers) == {8} and loader.image.topic("bar") is not None
        nursery.cancel_scope.cancel()
