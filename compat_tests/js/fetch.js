'use strict'
// node fetch.js BOOTSTRAP TOPIC PARTITION FROM_OFFSET COUNT|end
// Reads COUNT records of one partition from FROM_OFFSET (or, with "end", every record up to the
// high watermark of the first answer) with KafkaJS's own Fetch (its broker
// connection and record-batch decoder), without a consumer group: KafkaJS's public consumer
// always joins a group, so this uses the cluster object that its producer, consumer and admin
// are built on. Prints one {"record": ...} line per record, then {"done": {...}} with the last
// high watermark.
const { client, emit, b64, main } = require('./common')

const [bootstrap, topic, partitionArg, fromArg, countArg] = process.argv.slice(2)
const partition = Number(partitionArg)
const count = countArg === 'end' ? null : Number(countArg)

function headersOf (headers) {
  // KafkaJS decodes headers into an object; a repeated header name becomes an array.
  const out = []
  for (const [name, v] of Object.entries(headers || {})) {
    for (const value of Array.isArray(v) ? v : [v]) out.push([name, b64(value)])
  }
  return out
}

main(async () => {
  const kafka = client(bootstrap, 'trioka-compat-fetch')
  const createCluster = kafka[Object.getOwnPropertySymbols(kafka)
    .find(s => s.description === 'private:Kafka:createCluster')]
  const cluster = createCluster({ metadataMaxAge: 300000, allowAutoTopicCreation: false })
  await cluster.connect()
  try {
    await cluster.addTargetTopic(topic)
    await cluster.refreshMetadata()
    const leaders = cluster.findLeaderForPartitions(topic, [partition])
    const [nodeId] = Object.keys(leaders)
    const broker = await cluster.findBroker({ nodeId })
    let offset = BigInt(fromArg)
    let got = 0
    let highWatermark = null
    let end = null
    const deadline = Date.now() + 30000
    const more = () => count === null ? (end === null || offset < end) : got < count
    while (more() && Date.now() < deadline) {
      const response = await broker.fetch({
        maxWaitTime: 500,
        minBytes: 1,
        maxBytes: 10485760,
        topics: [{
          topic,
          partitions: [{ partition, fetchOffset: offset.toString(), maxBytes: 10485760 }]
        }]
      })
      const data = response.responses[0].partitions[0]
      if (data.errorCode !== 0) throw new Error(`fetch error code ${data.errorCode}`)
      highWatermark = data.highWatermark
      if (end === null) end = BigInt(highWatermark)
      for (const m of data.messages) {
        const at = BigInt(m.offset)
        // A fetch returns whole batches, which may start before the offset asked for.
        if (at < offset || m.isControlRecord) continue
        emit({
          record: {
            partition,
            offset: Number(m.offset),
            timestamp: Number(m.timestamp),
            key: b64(m.key),
            value: b64(m.value),
            headers: headersOf(m.headers),
            timestampType: m.batchContext ? m.batchContext.timestampType : null
          }
        })
        offset = at + 1n
        got += 1
        if (!more()) break
      }
    }
    emit({ done: { count: got, highWatermark } })
  } finally {
    await cluster.disconnect()
  }
})
