"""The controller over the wire: a node with `process.roles=broker,controller` serves the controller
API table on its CONTROLLER listener, and a raw client registers a broker, heartbeats it until it
is unfenced, and follows the metadata log with the Raft Fetch, decoding it with
metadata/batches.py."""

import socket
import uuid

import trio

from trioka.apis import APIS, CONTROLLER_APIS
from trioka.config import Config
from trioka.metadata import records as r
from trioka.metadata.batches import METADATA_TOPIC_ID, batch_epochs, decode_batches
from trioka.server import Server
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

CLUSTER_ID = "Wq3pQk1eS0GdY5v0c8dCfA"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawClient:
    """Requests one at a time over a trio socket, encoded and decoded by trioka.wire.protocol."""

    def __init__(self, stream):
        self.stream = stream
        self.correlation = 0
        self.buffer = bytearray()

    async def call(self, api_key: int, version: int, **fields):
        self.correlation += 1
        request = protocol.request_class(api_key)(**fields)
        await self.stream.send_all(protocol.encode_request(api_key, version, self.correlation,
                                                           "raw-broker", request))
        while True:
            if len(self.buffer) >= 4:
                size = int.from_bytes(self.buffer[:4], "big")
                if len(self.buffer) >= 4 + size:
                    frame = bytes(self.buffer[4:4 + size])
                    del self.buffer[:4 + size]
                    correlation, message = protocol.decode_response(api_key, version, frame)
                    assert correlation == self.correlation
                    return message
            data = await self.stream.receive_some(65536)
            assert data, "the server closed the connection"
            self.buffer += data


def fetch_fields(offset: int, last_fetched_epoch: int, leader_epoch: int, max_wait_ms=0):
    Request = protocol.request_class(ApiKey.FETCH)
    return dict(
        cluster_id=CLUSTER_ID, replica_id=-1,
        replica_state=Request.ReplicaState(replica_id=2, replica_epoch=-1),
        max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
        session_id=0, session_epoch=-1, forgotten_topics_data=[], rack_id="",
        topics=[Request.FetchTopic(topic_id=METADATA_TOPIC_ID, partitions=[
            Request.FetchTopic.FetchPartition(
                partition=0, current_leader_epoch=leader_epoch, fetch_offset=offset,
                last_fetched_epoch=last_fetched_epoch, log_start_offset=-1,
                partition_max_bytes=1 << 20)])])


async def test_register_heartbeat_and_fetch_the_metadata_log(tmp_path):
    port = free_port()
    config = Config({
        "node.id": 1, "process.roles": "broker,controller", "cluster.id": CLUSTER_ID,
        "controller.quorum.voters": f"1@127.0.0.1:{port}",
        "listeners": f"PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER", "log.dir": str(tmp_path)})
    server = Server(config)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            assert server.broker.controller is not None
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            client = RawClient(stream)

            # ApiVersions on the controller listener advertises the controller's table.
            versions = await client.call(ApiKey.API_VERSIONS, 3,
                                         client_software_name="raw",
                                         client_software_version="1")
            assert versions.error_code == ErrorCode.NONE
            assert {k.api_key for k in versions.api_keys} == set(CONTROLLER_APIS)
            assert ApiKey.PRODUCE not in CONTROLLER_APIS and ApiKey.PRODUCE in APIS

            Registration = protocol.request_class(ApiKey.BROKER_REGISTRATION)
            registered = await client.call(
                ApiKey.BROKER_REGISTRATION, 4, broker_id=2, cluster_id=CLUSTER_ID,
                incarnation_id=uuid.uuid4(),
                listeners=[Registration.Listener(name="PLAINTEXT", host="127.0.0.1",
                                                 port=19092, security_protocol=0)],
                features=[Registration.Feature(name=r.METADATA_VERSION,
                                               min_supported_version=1,
                                               max_supported_version=r.METADATA_VERSION_LEVEL)],
                rack=None)
            assert registered.error_code == ErrorCode.NONE
            broker_epoch = registered.broker_epoch

            # Follow the metadata log: the first fetch learns the Raft epoch.
            fenced = await client.call(ApiKey.FETCH, 17, **fetch_fields(0, -1, -1))
            [[partition]] = [t.partitions for t in fenced.responses]
            assert partition.error_code == ErrorCode.FENCED_LEADER_EPOCH
            epoch = partition.current_leader.leader_epoch
            assert partition.current_leader.leader_id == 1 and epoch >= 1
            fetched = await client.call(ApiKey.FETCH, 17, **fetch_fields(0, -1, epoch))
            [[partition]] = [t.partitions for t in fetched.responses]
            assert partition.error_code == ErrorCode.NONE
            records = list(decode_batches(partition.records))
            assert records[0][1].record_type == r.FEATURE_LEVEL_RECORD
            registrations = {rec.message.broker_id: offset for offset, rec in records
                             if rec.record_type == r.REGISTER_BROKER_RECORD}
            assert registrations[2] == broker_epoch
            assert partition.high_watermark == records[-1][0] + 1
            assert {e for _, _, e in batch_epochs(partition.records)} <= set(range(1, epoch + 1))
            assert [n.node_id for n in fetched.node_endpoints] == [1]

            # A heartbeat reporting what was read, its own registration included, unfences it;
            # one reporting less leaves it fenced.
            offset = records[-1][0]
            behind = await client.call(ApiKey.BROKER_HEARTBEAT, 1, broker_id=2,
                                       broker_epoch=broker_epoch,
                                       current_metadata_offset=broker_epoch - 1,
                                       want_fence=False, want_shut_down=False)
            assert behind.error_code == ErrorCode.NONE
            assert behind.is_fenced and not behind.is_caught_up
            beat = await client.call(ApiKey.BROKER_HEARTBEAT, 1, broker_id=2,
                                     broker_epoch=broker_epoch, current_metadata_offset=offset,
                                     want_fence=False, want_shut_down=False)
            assert beat.error_code == ErrorCode.NONE
            assert not beat.is_fenced and beat.is_caught_up
            # The unfencing is in the log, after what was read.
            last_epoch = list(batch_epochs(partition.records))[-1][2]
            more = await client.call(ApiKey.FETCH, 17,
                                     **fetch_fields(offset + 1, last_epoch, epoch, 1000))
            [[partition]] = [t.partitions for t in more.responses]
            changes = [rec.message for _, rec in decode_batches(partition.records)
                       if rec.record_type == r.BROKER_REGISTRATION_CHANGE_RECORD]
            assert any(c.broker_id == 2 and c.fenced == -1 for c in changes)

            # Anything but __cluster_metadata-0 is refused.
            wrong = fetch_fields(0, -1, epoch)
            wrong["topics"][0].topic_id = uuid.UUID(int=42)
            refused = await client.call(ApiKey.FETCH, 17, **wrong)
            assert refused.error_code == ErrorCode.INVALID_REQUEST

            await stream.aclose()
            server.shutdown()
