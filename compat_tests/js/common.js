'use strict'
// What the KafkaJS drivers share. Contract with compat_tests/test_kafkajs.py: arguments in argv,
// one JSON object per line on stdout, KafkaJS's own logs on stderr, a non-zero exit on failure,
// and a hard deadline for the whole script so a hung request cannot hang the test run.
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs')

// KafkaJS implements gzip itself. snappy comes from its codec package kafkajs-snappy (pure
// JavaScript); lz4 from lz4.js here, since kafkajs-lz4 needs a native build. zstd's only codec
// package is a native build that does not compile with this Node.js, so KafkaJS sends no zstd.
CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy')
CompressionCodecs[CompressionTypes.LZ4] = require('./lz4')

const toStderr = () => ({ namespace, label, log }) => {
  process.stderr.write(JSON.stringify({ label, namespace, ...log }) + '\n')
}

function client (bootstrap, clientId) {
  return new Kafka({
    clientId,
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
    logLevel: logLevel.WARN,
    logCreator: toStderr
  })
}

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

// Keys, values and header values cross to Python as base64 (null stays null) so that every byte
// can be compared; strings in a message spec may instead be given as {"b64": "..."}.
function b64 (buf) {
  return buf == null ? null : Buffer.from(buf).toString('base64')
}

function bytesOf (value) {
  if (value == null) return null
  if (typeof value === 'object' && 'b64' in value) return Buffer.from(value.b64, 'base64')
  return Buffer.from(String(value))
}

// A KafkaJS error as data: its class name, the Kafka error's name (e.g. INVALID_CONFIG), its text.
function describeError (e) {
  const out = {
    name: e.name,
    type: e.type || null,
    code: e.code == null ? null : e.code,
    message: e.message
  }
  // KafkaJSAggregateError (e.g. from createTopics) carries one error per failed item.
  if (Array.isArray(e.errors)) out.errors = e.errors.map(describeError)
  return out
}

function main (fn, deadlineMs = 50000) {
  const timer = setTimeout(() => {
    process.stderr.write(`driver deadline of ${deadlineMs} ms passed\n`)
    process.exit(3)
  }, deadlineMs)
  // Writes to a pipe are asynchronous in Node.js, and process.exit() drops what is still
  // queued: exit only once stdout has taken every line.
  const exit = (code) => process.stdout.write('', () => process.exit(code))
  fn().then(() => {
    clearTimeout(timer)
    exit(0)
  }, (e) => {
    process.stderr.write(`driver failed: ${e && e.stack ? e.stack : e}\n`)
    emit({ fatal: describeError(e || {}) })
    exit(1)
  })
}

module.exports = { client, emit, b64, bytesOf, describeError, main }
