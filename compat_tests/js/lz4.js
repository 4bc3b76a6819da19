'use strict'
// An LZ4 codec for KafkaJS (which has none built in), on the pure-JavaScript lz4js: Kafka's
// record batch v2 uses the standard LZ4 frame format, which lz4js reads and writes.
//
// lz4js 0.2.0 misreads frames with block checksums (the frame's FLG bit 4): it skips the four
// checksum bytes before a block's data, where the format has them after it. Producers that set
// the bit (aiokafka's cramjam does) would come out garbled, so the checksums are taken out of
// such a frame first. lz4js checks no checksum either way.
const lz4js = require('lz4js')

const BLOCK_CHECKSUM = 0x10
const CONTENT_SIZE = 0x08
const DICT_ID = 0x01
const UNCOMPRESSED = 0x80000000

function withoutBlockChecksums (frame) {
  const flags = frame[4]
  if (!(flags & BLOCK_CHECKSUM)) return frame
  // magic (4), FLG, BD, [content size (8)], [dictionary id (4)], header checksum
  const headerEnd = 7 + (flags & CONTENT_SIZE ? 8 : 0) + (flags & DICT_ID ? 4 : 0)
  const parts = [Buffer.from(frame.subarray(0, headerEnd))]
  parts[0][4] = flags & ~BLOCK_CHECKSUM
  let pos = headerEnd
  for (;;) {
    const size = frame.readUInt32LE(pos)
    if (size === 0) break // the end mark (then an optional content checksum)
    const length = (size & ~UNCOMPRESSED) >>> 0
    parts.push(frame.subarray(pos, pos + 4 + length))
    pos += 4 + length + 4 // the block, then its checksum
  }
  parts.push(frame.subarray(pos))
  return Buffer.concat(parts)
}

module.exports = () => ({
  async compress (encoder) {
    return Buffer.from(lz4js.compress(encoder.buffer))
  },
  async decompress (buffer) {
    return Buffer.from(lz4js.decompress(withoutBlockChecksums(Buffer.from(buffer))))
  }
})
