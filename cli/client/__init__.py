"""The small synchronous Kafka client of the command-line tools; it talks to any Kafka broker.

One module per job, each importing only those listed before it:

connection.py         one broker connection: bootstrap addresses, ApiVersions negotiation (KIP-511),
                      one request at a time under a deadline; `ClientError` and `raise_for`
cluster.py            `KafkaClient`: the cluster's metadata, routing to leaders, coordinators and
                      the controller, Kafka's requests; `consumer_records` reads a Fetch answer
partitioner.py        Kafka's default partitioner for keyed records (murmur2)
consumer_protocol.py  the consumer protocol's subscription and assignment bytes
group_member.py       `GroupMember`: a classic consumer group member using the "range" assignor

Errors that the broker reports become `KafkaError` (the code and the broker's message, if any);
failures on our side (no broker reachable, no version in common, a deadline passed) `ClientError`.
"""
