"""The request log (observe/request_log.py) of a broker process, read through its admin endpoint
(GET /requests), the `trioka requests` command and the `--request-log` file, while stock clients
(confluent-kafka, kafka-python, aiokafka) talk to it: what the log shows is what each client really
sent, checked against what the clients did and what came back to them."""

import json
import signal
import subprocess
import sys
import urllib.parse

import confluent_kafka
import kafka
import pytest
from confluent_kafka import Consumer, Producer

from clients import consume_confluent, produce_aiokafka, produce_confluent, value_records
from harness import create_topic, unique, wait_for
from trioka.testing.process import BrokerProcess

pytestmark = pytest.mark.timeout(180)

# What the transactional producer sends for one consume-transform-produce transaction (KIP-98):
# register the transactional id, add the partition written to, add the consumer group, commit
# its offsets through the group coordinator, end the transaction.
TRANSACTION_APIS = ("InitProducerId", "AddPartitionsToTxn", "AddOffsetsToTxn",
                    "TxnOffsetCommit", "EndTxn")
# See test_transactions.py: librdkafka clients reconnect rather than re-bootstrap (KIP-1102).
NO_REBOOTSTRAP = {"metadata.recovery.strategy": "none"}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A broker process that also appends its request log to a file (`--request-log`)."""
    path = tmp_path_factory.mktemp("request-log") / "requests.jsonl"
    with BrokerProcess(memory=True, args=["--request-log", str(path)]) as b:
        b.start()
        b.request_log_file = path
        yield b


def requests(broker, **params) -> list[dict]:
    """GET /requests on the broker's admin endpoint."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return broker.controls.call("GET", "/requests?" + query)["requests"]


def confluent_software() -> tuple[str, str]:
    """What confluent-kafka-python tells the broker it is (KIP-511): its own name, and its
    version with librdkafka's."""
    return ("confluent-kafka-python",
            f"{confluent_kafka.__version__}-rdkafka-{confluent_kafka.libversion()[0]}")


def test_a_confluent_transactional_copy_shows_the_transaction_sequence(logged):
    src, dst, group = unique("src"), unique("dst"), unique("copy")
    create_topic(logged.bootstrap, src, 1)
    create_topic(logged.bootstrap, dst, 1)
    produce_confluent(logged.bootstrap, src, value_records([b"a", b"b", b"c"]))
    consumer = Consumer({"bootstrap.servers": logged.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed", **NO_REBOOTSTRAP})
    copier = unique("copier")
    # linger.ms: the three records go out in one batch, however slow the machine.
    producer = Producer({"bootstrap.servers": logged.bootstrap, "client.id": copier,
                         "transactional.id": unique("txn"), "linger.ms": 100,
                         **NO_REBOOTSTRAP})
    try:
        consumer.subscribe([src])
        got = []
        wait_for(lambda: got.extend(m for m in [consumer.poll(0.5)]
                                    if m is not None and not m.error()) or len(got) == 3,
                 60, "the three source records", interval=0)
        producer.init_transactions(30)
        producer.begin_transaction()
        for m in got:
            producer.produce(dst, value=m.value().upper(), partition=0)
        assert producer.flush(30) == 0     # the partition is in the transaction first
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
    finally:
        consumer.close()
        producer.flush(5)
    got_back = consume_confluent(logged.bootstrap, dst, [0], 3,
                                 config={"isolation.level": "read_committed"})
    assert [r.value for r in got_back] == [b"A", b"B", b"C"]

    entries = requests(logged, client_id=copier)
    txn = [e for e in entries if e["api"] in TRANSACTION_APIS]
    assert [e["api"] for e in txn] == list(TRANSACTION_APIS)
    assert all(e["outcome"] == "responded" and e["error_codes"] == {} for e in txn)
    assert {(e["client_software_name"], e["client_software_version"]) for e in entries} == \
        {confluent_software()}
    init, add_partitions, add_offsets, offset_commit, end = txn
    producer_id = init["response"]["producer_id"]
    epoch = init["response"]["producer_epoch"]
    # AddPartitionsToTxn names the destination partition, in the v0-3 or the v4+ (batched) form.
    body = add_partitions["request"]
    topics = body["v3_and_below_topics"] if add_partitions["api_version"] <= 3 else \
        body["transactions"][0]["topics"]
    assert [(t["name"], t["partitions"]) for t in topics] == [(dst, [0])]
    assert add_offsets["request"]["group_id"] == group
    commit = offset_commit["request"]
    assert (commit["group_id"], commit["producer_id"]) == (group, producer_id)
    assert [(t["name"], [p["committed_offset"] for p in t["partitions"]])
            for t in commit["topics"]] == [(src, [3])]
    assert (end["request"]["committed"], end["request"]["producer_id"],
            end["request"]["producer_epoch"]) == (True, producer_id, epoch)
    # The records went out in one transactional batch of this producer, before the end.
    [produce] = [e for e in entries if e["api"] == "Produce"]
    [batch] = produce["request"]["topic_data"][0]["partition_data"][0]["records"]
    assert (batch["producer_id"], batch["is_transactional"], batch["records_count"],
            batch["base_sequence"]) == (producer_id, True, 3, 0)
    assert add_partitions["seq"] < produce["seq"] < add_offsets["seq"] < end["seq"]

    # The same entries, as JSON lines in the --request-log file.
    def in_file():
        lines = [json.loads(line) for line in logged.request_log_file.read_text().splitlines()]
        return [line for line in lines if line.get("client_id") == copier]
    filed = wait_for(lambda: [e for e in in_file() if e["seq"] >= end["seq"]] and in_file(),
                     20, "the EndTxn line in the request log file")
    assert filed == entries


def test_other_clients_show_what_they_say_they_are(logged):
    """kafka-python sends ApiVersions v3+ with its name (KIP-511); aiokafka sends v0, so it
    says nothing and the log shows null."""
    topic = unique("who")
    create_topic(logged.bootstrap, topic, 1)
    producer = kafka.KafkaProducer(bootstrap_servers=logged.bootstrap, client_id="kp-" + topic)
    try:
        producer.send(topic, b"from kafka-python", partition=0).get(30)
    finally:
        producer.close(5)
    produce_aiokafka(logged.bootstrap, topic, value_records([b"from aiokafka"]),
                     config={"client_id": "aio-" + topic})

    kp = requests(logged, client_id="kp-" + topic)
    assert {(e["client_software_name"], e["client_software_version"]) for e in kp} == \
        {("kafka-python", kafka.__version__)}
    versions = [e for e in kp if e["api"] == "ApiVersions"]
    assert versions and all(e["api_version"] >= 3 for e in versions)
    aio = requests(logged, client_id="aio-" + topic, api="ApiVersions")
    assert aio and all((e["api_version"], e["client_software_name"]) == (0, None) for e in aio)
    # Each one's Produce, with the one batch it sent.
    for client_id, value in (("kp-", b"from kafka-python"), ("aio-", b"from aiokafka")):
        [produce] = requests(logged, client_id=client_id + topic, api="Produce")
        [part] = produce["request"]["topic_data"][0]["partition_data"]
        assert [b["records_count"] for b in part["records"]] == [1]
        assert produce["error_codes"] == {}


def test_an_injected_error_is_logged_as_the_client_got_it(logged):
    topic = unique("refused")
    create_topic(logged.bootstrap, topic, 1)
    rule = logged.controls.error("NOT_LEADER_OR_FOLLOWER", api="Produce", topic=topic, count=1)
    client_id = unique("retrying")
    produce_confluent(logged.bootstrap, topic, value_records([b"once"]), idempotent=True,
                      config={"retry.backoff.ms": 20, "client.id": client_id})
    produces = requests(logged, client_id=client_id, api="Produce")
    assert [e["error_codes"] for e in produces] == [{"NOT_LEADER_OR_FOLLOWER": 1}, {}]
    assert produces[0]["fault"]["rule"] == rule["id"]
    assert produces[0]["response"]["responses"][0]["partition_responses"][0]["error_code"] == 6
    assert produces[1]["fault"] is None
    # The retry is the same batch: the same producer id and sequence.
    first, retry = [e["request"]["topic_data"][0]["partition_data"][0]["records"][0]
                    for e in produces]
    assert (retry["producer_id"], retry["base_sequence"]) == \
        (first["producer_id"], first["base_sequence"])


def test_the_admin_endpoint_filters_and_refuses_bad_queries(logged):
    topic = unique("filtered")
    client_id = unique("filter")
    produce_confluent(logged.bootstrap, topic, value_records([b"1", b"2"]),
                      config={"client.id": client_id})
    mine = requests(logged, client_id=client_id)
    assert mine and all(e["client_id"] == client_id for e in mine)
    assert [e["seq"] for e in mine] == sorted(e["seq"] for e in mine)
    assert requests(logged, client_id=client_id, since=mine[-2]["seq"]) == mine[-1:]
    assert requests(logged, client_id=client_id, limit=2) == mine[-2:]
    assert requests(logged, client_id=client_id, api="PRODUCE") == \
        [e for e in mine if e["api"] == "Produce"]
    for query, error in (("api=Prodce", "unknown API"), ("since=-1", "since must be"),
                         ("color=red", "unknown parameter")):
        with pytest.raises(AssertionError, match="HTTP 400") as refused:
            logged.controls.call("GET", "/requests?" + query)
        assert error in str(refused.value)


def trioka_requests(broker, *args, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "trioka", "requests", "--admin", broker.admin,
                           *args], capture_output=True, timeout=timeout)
    assert proc.returncode == 0, (args, proc.returncode, proc.stderr.decode())
    return proc


def test_trioka_requests_prints_lines_json_and_follows(logged):
    topic = unique("cli")
    client_id = unique("cli-client")
    produce_confluent(logged.bootstrap, topic, value_records([b"x"]),
                      config={"client.id": client_id})
    produced = requests(logged, client_id=client_id, api="Produce")

    as_json = trioka_requests(logged, "--json", "--api", "Produce", "--client-id", client_id)
    assert [json.loads(line) for line in as_json.stdout.decode().splitlines()] == produced
    lines = trioka_requests(logged, "--client-id", client_id).stdout.decode().splitlines()
    assert len(lines) == len(requests(logged, client_id=client_id))
    [produce_line] = [line for line in lines if " Produce v" in line]
    assert f"Produce v{produced[0]['api_version']}" in produce_line
    assert client_id in produce_line and f"#{produced[0]['correlation_id']}" in produce_line
    assert produce_line.rstrip().endswith(" -")       # no error codes

    # --follow prints what is logged after it started, until Ctrl-C.
    follower = subprocess.Popen([sys.executable, "-m", "trioka", "requests", "--follow",
                                 "--json", "--interval-ms", "100", "--client-id", client_id,
                                 "--since", str(produced[-1]["seq"]), "--admin", logged.admin],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        produce_confluent(logged.bootstrap, topic, value_records([b"y"]),
                          config={"client.id": client_id})
        first = wait_for(follower.stdout.readline, 30, "a line from trioka requests --follow",
                         interval=0)
        assert json.loads(first)["seq"] > produced[-1]["seq"]
        assert json.loads(first)["client_id"] == client_id
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(15) == 130


def test_a_cluster_merges_the_logs_of_its_nodes(cluster):
    """`trioka serve --nodes 3`: GET /requests lists every node's requests in the order they
    were logged, each naming its node: the client's Produce to each partition's leader, the
    followers' replica Fetches, the brokers' heartbeats to the controller (node 1)."""
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = unique("spread")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(30)
    client_id = unique("spreader")
    produce_confluent(cluster.bootstrap, topic,
                      [r for p in range(3) for r in value_records([b"p%d" % p], partition=p)],
                      config={"client.id": client_id})
    entries = requests(cluster)
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    produces = [e for e in entries if e["api"] == "Produce" and e["client_id"] == client_id]
    assert {e["node"] for e in produces} == {1, 2, 3}     # each partition's leader
    follower_fetches = [e for e in entries if e["api"] == "Fetch" and e["request"]["topics"]
                        and e["client_id"] != client_id and e["node"] != 1]
    assert follower_fetches
    heartbeats = [e for e in entries if e["api"] == "BrokerHeartbeat"]
    assert {e["node"] for e in heartbeats} == {1}
    assert {e["listener"] for e in heartbeats} == {"CONTROLLER"}
    assert {e["request"]["broker_id"] for e in heartbeats} == {1, 2, 3}


def test_the_embedded_broker_shows_a_consumer_committing_before_it_leaves():
    """`trioka.Broker().requests()`: a kafka-python group consumer that commits and closes
    sends its OffsetCommit (with the offset it consumed to) before its LeaveGroup."""
    import trioka
    with trioka.Broker(memory=True) as broker:
        topic = broker.create_topic()
        produce_confluent(broker.bootstrap_servers, topic, value_records([b"1", b"2", b"3"]))
        consumer = kafka.KafkaConsumer(topic, bootstrap_servers=broker.bootstrap_servers,
                                       group_id="committer", client_id="committer",
                                       auto_offset_reset="earliest", enable_auto_commit=False,
                                       consumer_timeout_ms=30_000)
        try:
            got = []
            for message in consumer:
                got.append(message.value)
                if len(got) == 3:
                    break
            consumer.commit()
        finally:
            consumer.close()
        assert got == [b"1", b"2", b"3"]
        mine = broker.requests(client_id="committer")
        apis = [e["api"] for e in mine]
        assert apis.index("OffsetCommit") < apis.index("LeaveGroup")
        [commit] = [e for e in mine if e["api"] == "OffsetCommit"]
        assert commit["error_codes"] == {}
        assert [(t["name"], [p["committed_offset"] for p in t["partitions"]])
                for t in commit["request"]["topics"]] == [(topic, [3])]
        assert commit["client_software_name"] == "kafka-python"
        later = broker.requests(since=commit["seq"], client_id="committer")
        assert later and all(e["seq"] > commit["seq"] for e in later)
        assert broker.requests(client_id="committer", api="OffsetCommit", limit=1) == [commit]


def test_an_embedded_cluster_merges_its_nodes_logs():
    import trioka
    with trioka.Cluster(nodes=3, memory=True, admin_listener=None) as cluster:
        from confluent_kafka.admin import AdminClient, NewTopic
        topic = unique("embedded-spread")
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(30)
        produce_confluent(cluster.bootstrap_servers, topic,
                          [r for p in range(3) for r in value_records([b"v"], partition=p)],
                          config={"client.id": "spreader"})
        produces = cluster.requests(api="Produce", client_id="spreader")
        assert {e["node"] for e in produces} == {1, 2, 3}
        assert all(e["error_codes"] == {} for e in produces)
        everything = cluster.requests()
        assert [e["seq"] for e in everything] == sorted(e["seq"] for e in everything)
        newest = cluster.requests(limit=5)    # the newest five (nodes keep heartbeating)
        assert len(newest) == 5 and newest[0]["seq"] >= everything[-5]["seq"]
