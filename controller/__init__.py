"""The KRaft controller, a quorum of one voter: broker registrations, heartbeats and fencing
(cluster_control.py), replica placement (placement.py), the election and ISR rules
(partition_change.py), and topics, partitions and their leaders (replication_control.py). Each is
a plain state machine: it reads the metadata image, returns the records a request makes, and the
records take effect when they are replayed."""
