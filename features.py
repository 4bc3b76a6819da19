"""Feature versions (KIP-584): what ApiVersions (v3+) tells clients the cluster has turned on.

A Kafka cluster keeps a finalized level per feature; clients read it from the ApiVersions answer
and pick protocols by it. Two features here change what clients do:

- `transaction.version`: at level 2, Kafka 4.x producers use transactions v2 (KIP-890 part 2):
  no AddPartitionsToTxn or AddOffsetsToTxn (Produce v12+ and TxnOffsetCommit v5+ add the partition
  to the transaction), and EndTxn v5+ bumps the producer epoch at the end of every transaction.
  Level 1 only changes how `__transaction_state` values are written (flexible, version 1). Its
  level is the config `trioka.transaction.version` (Kafka sets it when formatting storage).
- `group.version`: level 1 means the KIP-848 consumer group protocol (ConsumerGroupHeartbeat) is
  on, which it always is here.

`SUPPORTED` is the range this broker could run at; `finalized` the level it runs at. A level of 0
is "off" and is not listed among the finalized features, as in Kafka.
"""

TRANSACTION_VERSION = "transaction.version"
GROUP_VERSION = "group.version"

# feature -> (lowest, highest) level this broker supports
SUPPORTED: dict[str, tuple[int, int]] = {
    GROUP_VERSION: (0, 1),
    TRANSACTION_VERSION: (0, 2),
}


def finalized(config) -> dict[str, int]:
    """feature -> its finalized level, for the features whose level is above 0."""
    tv = config.trioka_transaction_version
    lo, hi = SUPPORTED[TRANSACTION_VERSION]
    if not lo <= tv <= hi:
        raise ValueError(f"trioka.transaction.version must be between {lo} and {hi}, not {tv}")
    levels = {GROUP_VERSION: 1, TRANSACTION_VERSION: tv}
    return {name: level for name, level in levels.items() if level > 0}
