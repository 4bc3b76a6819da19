"""What every node knows of the cluster: the records of `__cluster_metadata` (records.py) and the
image they replay into (image.py), Kafka's MetadataImage."""
