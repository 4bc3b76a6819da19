"""DescribeLogDirs (key 35), v1-4: the broker's log directory and the size of each partition.

This broker has one log directory (`log.dirs`, or "memory" with --memory). Each partition reports
its size in bytes (all segments), an offset lag of 0 (there is no replica movement between
directories) and is_future_key false. `topics` null asks for every partition. v4 adds the
directory's total and usable bytes (from the file system; -1 in memory). Version 0 was removed in
Kafka 4.0. A log directory that an I/O error took offline answers KAFKA_STORAGE_ERROR and no
partitions, as Kafka reports an offline dir.
"""

import os

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.DESCRIBE_LOG_DIRS)
DirResult = Response.DescribeLogDirsResult
TopicResult = DirResult.DescribeLogDirsTopic
PartitionResult = TopicResult.DescribeLogDirsPartition


async def handle(broker, request, ctx):
    wanted = None
    if request.topics is not None:
        wanted = {t.topic: set(t.partitions) for t in request.topics}
    topics = []
    for name in broker.topic_names():
        if wanted is not None and name not in wanted:
            continue
        topic = broker.topic(name)
        parts = [PartitionResult(partition_index=i, partition_size=p.size, offset_lag=0,
                                 is_future_key=False)
                 for i, p in enumerate(topic.partitions)
                 if wanted is None or i in wanted[name]]
        if parts:
            topics.append(TopicResult(name=name, partitions=parts))
    data_dir = broker.config.data_dir
    log_dir = os.path.abspath(data_dir) if data_dir else "memory"
    if broker.logs.offline:
        result = DirResult(error_code=ErrorCode.KAFKA_STORAGE_ERROR, log_dir=log_dir, topics=[],
                           total_bytes=-1, usable_bytes=-1)
        return Response(throttle_time_ms=0, error_code=0, results=[result])
    total = usable = -1
    if data_dir is not None:
        st = os.statvfs(data_dir)
        total, usable = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    result = DirResult(error_code=0, log_dir=log_dir, topics=topics, total_bytes=total,
                       usable_bytes=usable)
    return Response(throttle_time_ms=0, error_code=0, results=[result])
