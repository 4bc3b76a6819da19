"""What a broker can show about the traffic it serves: the request log (request_log.py), every
request and its response decoded, the JSON form of Kafka messages it is written in
(messages.py), and the conformance report derived from it (conformance.py)."""
