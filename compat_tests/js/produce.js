'use strict'
// node produce.js BOOTSTRAP SPEC_JSON   (or - to read SPEC_JSON from stdin: big specs)
// SPEC: {"topic", "acks": -1|1|0, "compression": "none"|"gzip"|"snappy"|"lz4"|"zstd",
//        "idempotent"?: true|false, "sends": [[message, ...], ...]}
//        (each inner list is one producer.send call)
// message: {"key", "value", "partition"?, "timestamp"? (ms, string or number),
//           "headers"? {name: value or [values]}}; key / value / header values are strings,
//           null, or {"b64": ...}.
// Prints {"send": i, "result": [RecordMetadata]} per send call.
const { CompressionTypes } = require('kafkajs')
const { client, emit, bytesOf, main } = require('./common')

const [bootstrap, specJson] = process.argv.slice(2)
const spec = JSON.parse(specJson === '-' ? require('fs').readFileSync(0, 'utf8') : specJson)

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD
}

function toMessage (m) {
  const out = { key: bytesOf(m.key), value: bytesOf(m.value) }
  if (m.partition != null) out.partition = m.partition
  if (m.timestamp != null) out.timestamp = String(m.timestamp)
  if (m.headers) {
    out.headers = {}
    for (const [name, v] of Object.entries(m.headers)) {
      out.headers[name] = Array.isArray(v) ? v.map(bytesOf) : bytesOf(v)
    }
  }
  return out
}

main(async () => {
  const producer = client(bootstrap, 'trioka-compat-producer').producer({
    allowAutoTopicCreation: false,
    // KafkaJS's idempotent producer allows one request in flight (and needs acks -1).
    idempotent: Boolean(spec.idempotent),
    maxInFlightRequests: spec.idempotent ? 1 : undefined,
    // KafkaJS 2's default partitioner warns when none is chosen; explicit partitions are used.
    createPartitioner: require('kafkajs').Partitioners.DefaultPartitioner
  })
  await producer.connect()
  try {
    for (const [i, messages] of spec.sends.entries()) {
      const result = await producer.send({
        topic: spec.topic,
        acks: spec.acks,
        timeout: 10000,
        compression: CODECS[spec.compression || 'none'],
        messages: messages.map(toMessage)
      })
      emit({ send: i, result })
    }
  } finally {
    await producer.disconnect()
  }
})
