'use strict'
// node admin.js BOOTSTRAP OPS_JSON
// Runs KafkaJS admin calls in order; OPS_JSON is a list of {"op": name, ...arguments}. Prints one
// line per op: {"op", "result"} or {"op", "error"} (an error does not stop the later ops).
//   createTopics {topics, validateOnly?}  deleteTopics {topics}  listTopics  describeCluster
//   fetchTopicMetadata {topics}  fetchTopicOffsets {topic}
//   fetchTopicOffsetsByTimestamp {topic, timestamp}  createPartitions {topicPartitions}
const { client, emit, describeError, main } = require('./common')

const [bootstrap, opsJson] = process.argv.slice(2)

main(async () => {
  const admin = client(bootstrap, 'trioka-compat-admin').admin()
  await admin.connect()
  try {
    for (const spec of JSON.parse(opsJson)) {
      const { op, ...args } = spec
      let result
      try {
        switch (op) {
          case 'createTopics':
            result = await admin.createTopics({ timeout: 10000, ...args })
            break
          case 'deleteTopics':
            result = await admin.deleteTopics({ timeout: 10000, ...args })
            break
          case 'listTopics':
            result = await admin.listTopics()
            break
          case 'describeCluster':
            result = await admin.describeCluster()
            break
          case 'fetchTopicMetadata':
            result = await admin.fetchTopicMetadata(args)
            break
          case 'fetchTopicOffsets':
            result = await admin.fetchTopicOffsets(args.topic)
            break
          case 'fetchTopicOffsetsByTimestamp':
            result = await admin.fetchTopicOffsetsByTimestamp(args.topic, args.timestamp)
            break
          case 'createPartitions':
            result = await admin.createPartitions({ timeout: 10000, ...args })
            break
          default:
            throw new Error(`unknown op ${op}`)
        }
        emit({ op, result: result === undefined ? null : result })
      } catch (e) {
        emit({ op, error: describeError(e) })
      }
    }
  } finally {
    await admin.disconnect()
  }
})
