'use strict'
// node consume.js BOOTSTRAP TOPIC GROUP_ID COUNT
// KafkaJS's public consumer: joins GROUP_ID, subscribes to TOPIC from the beginning and prints
// one {"record": ...} line per message until COUNT have arrived, then {"done": {"count"}}.
// Needs consumer groups on the broker (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, ...).
const { client, emit, b64, main } = require('./common')

const [bootstrap, topic, groupId, countArg] = process.argv.slice(2)
const count = Number(countArg)

main(async () => {
  const consumer = client(bootstrap, 'trioka-compat-consumer').consumer({
    groupId,
    maxWaitTimeInMs: 500,
    sessionTimeout: 10000,
    heartbeatInterval: 1000
  })
  await consumer.connect()
  let got = 0
  try {
    await consumer.subscribe({ topic, fromBeginning: true })
    await new Promise((resolve, reject) => {
      consumer.run({
        autoCommit: true,
        eachMessage: async ({ partition, message }) => {
          const headers = []
          for (const [name, v] of Object.entries(message.headers || {})) {
            for (const value of Array.isArray(v) ? v : [v]) headers.push([name, b64(value)])
          }
          emit({
            record: {
              partition,
              offset: Number(message.offset),
              timestamp: Number(message.timestamp),
              key: b64(message.key),
              value: b64(message.value),
              headers,
              timestampType: 0
            }
          })
          got += 1
          if (got === count) resolve()
        }
      }).catch(reject)
    })
    emit({ done: { count: got, highWatermark: null } })
  } finally {
    await consumer.disconnect()
  }
})
