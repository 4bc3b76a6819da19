"""A partition's replica roles on one node, as Kafka's `kafka.cluster.Partition` keeps them: the
leader's view of its followers, the ISR and the high watermark, the follower's fetch position
(partition_state.py), and the truncation by leader epoch a follower does before it fetches
(truncation.py). Plain state machines: numbers and a clock in, decisions out; the log itself
stays in trioka.log."""
