'use strict'
// node sasl.js BOOTSTRAP TOPIC MECHANISM USERNAME PASSWORD COUNT
// Over a SASL listener (KafkaJS's sasl option: plain, scram-sha-256, scram-sha-512, or
// oauthbearer with PASSWORD the token and USERNAME unused): produces
// COUNT messages "kafkajs-<i>" to partition 0 of TOPIC, then reads partition 0 back from the
// start with a consumer group. Prints {"produced": [baseOffset]} and then {"consumed": [values]};
// an authentication failure exits non-zero with {"fatal": {...}}.
const { Kafka, logLevel } = require('kafkajs')
const { emit, main } = require('./common')

const [bootstrap, topic, mechanism, username, password, countText] = process.argv.slice(2)
const count = Number(countText)

main(async () => {
  const kafka = new Kafka({
    clientId: 'kafkajs-sasl',
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 500 },
    logLevel: logLevel.NOTHING,
    // OAUTHBEARER: PASSWORD is the token (an unsecured JWT, say) the provider hands out.
    sasl: mechanism === 'oauthbearer'
      ? { mechanism, oauthBearerProvider: async () => ({ value: password }) }
      : { mechanism, username, password }
  })
  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await producer.connect()
  const messages = []
  for (let i = 0; i < count; i++) messages.push({ value: `kafkajs-${i}`, partition: 0 })
  const result = await producer.send({ topic, messages, acks: -1 })
  await producer.disconnect()
  emit({ produced: result.map(r => Number(r.baseOffset)) })

  const consumer = kafka.consumer({ groupId: `sasl-${topic}`, sessionTimeout: 10000 })
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
