'use strict'
// node secure.js BOOTSTRAP TOPIC CLIENT_ID SECURITY_JSON COUNT
// Over an SSL, SASL_SSL or SASL_PLAINTEXT listener, with KafkaJS's documented `ssl` and `sasl`
// options taken from SECURITY_JSON (either may be left out):
//   {"ssl": {"ca": PATH, "cert": PATH, "key": PATH}}     (cert and key: a client certificate)
//   "sasl": {"mechanism": "plain"|"scram-sha-256"|"scram-sha-512", "username", "password"}
//   "sasl": {"mechanism": "oauthbearer", "token": JWT}    (oauthBearerProvider hands it out)
// Produces COUNT messages "<CLIENT_ID>-<i>" to partition 0 of TOPIC, then reads partition 0
// back from the start with a consumer group. Prints {"produced": [baseOffset]} and then
// {"consumed": [values]}; a failure exits non-zero with {"fatal": {...}}.
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')
const { emit, main } = require('./common')

const [bootstrap, topic, clientId, securityText, countText] = process.argv.slice(2)
const security = JSON.parse(securityText)
const count = Number(countText)

function sslOption (spec) {
  if (spec == null) return undefined
  // KafkaJS passes this object to Node's tls.connect(): PEM text, not file names.
  const out = { ca: [fs.readFileSync(spec.ca, 'utf-8')] }
  if (spec.cert) out.cert = fs.readFileSync(spec.cert, 'utf-8')
  if (spec.key) out.key = fs.readFileSync(spec.key, 'utf-8')
  return out
}

function saslOption (spec) {
  if (spec == null) return undefined
  if (spec.mechanism === 'oauthbearer') {
    return { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: spec.token }) }
  }
  return { mechanism: spec.mechanism, username: spec.username, password: spec.password }
}

main(async () => {
  const kafka = new Kafka({
    clientId,
    brokers: [bootstrap],
    ssl: sslOption(security.ssl),
    sasl: saslOption(security.sasl),
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 500 },
    logLevel: logLevel.NOTHING
  })
  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await producer.connect()
  const messages = []
  for (let i = 0; i < count; i++) messages.push({ value: `${clientId}-${i}`, partition: 0 })
  const result = await producer.send({ topic, messages, acks: -1 })
  await producer.disconnect()
  emit({ produced: result.map(r => Number(r.baseOffset)) })

  const consumer = kafka.consumer({ groupId: `secure-${topic}`, sessionTimeout: 10000 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const values = []
  await new Promise((resolve, reject) => {
    consumer.run({
      eachMessage: async ({ message }) => {
        values.push(message.value.toString())
        if (values.length >= count) resolve()
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  emit({ consumed: values })
}, 45000)
