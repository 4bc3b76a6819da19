"""KIP-467 record_errors as kafka-python reads them: keyless records produced to a compacted topic
fail one by one with INVALID_RECORD and Kafka's per-record message, the keyed records of the same
batch with "part of a batch which had one more more invalid records" (kafka-python's words). The
confluent-kafka side (librdkafka's test 0011) is in test_produce_validation.py."""

from kafka import KafkaProducer
from kafka.errors import InvalidRecordError, KafkaError

from harness import create_topic

TIMEOUT = 20


def test_kafka_python_fails_only_the_keyless_records_with_invalid_record(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, configs={"cleanup.policy": "compact"})
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=500,
                      request_timeout_ms=TIMEOUT * 1000)
    try:
        futures = [p.send(topic_name, key=None if i % 3 == 0 else b"k%d" % i, value=b"v",
                          partition=0) for i in range(6)]       # one batch: linger 500 ms
        p.flush(TIMEOUT)
        outcomes = []
        for f in futures:
            try:
                f.get(TIMEOUT)
                outcomes.append("ok")
            except InvalidRecordError as e:
                assert f"Compacted topic cannot accept message without key in topic " \
                       f"partition {topic_name}-0." in str(e)
                outcomes.append("invalid")
            except KafkaError as e:
                assert "invalid records" in str(e)
                outcomes.append("same batch")
        assert outcomes == ["invalid", "same batch", "same batch"] * 2
    finally:
        p.close(timeout=TIMEOUT)
