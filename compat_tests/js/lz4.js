'use strict'
// An LZ4 codec for KafkaJS (which has none built in), on the pure-JavaScript lz4js: Kafka's
// record batch v2 uses the standard LZ4 frame format, which lz4js reads and writes.
const lz4js = require('lz4js')

module.exports = () => ({
  async compress (encoder) {
    return Buffer.from(lz4js.compress(encoder.buffer))
  },
  async decompress (buffer) {
    return Buffer.from(lz4js.decompress(buffer))
  }
})
