// The host side of the guest's TCP transfers, run inside the test's network namespace
// (nsenter --net=...): `node net-peer.mjs <address> <sinkPort> <sourcePort> <sourceBytes>`.
// <sinkPort> takes one connection at a time, reads it to the end and reports what it got;
// <sourcePort> sends <sourceBytes> pseudo-random bytes to each connection and reports their hash.
// Reports are JSON lines on stdout: {"listening":true}, {"sink":{bytes,sha256,ms}}, {"source":{...}}.
import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:net'

const [address, sinkPort, sourcePort, sourceBytes] = process.argv.slice(2)
const report = (o) => process.stdout.write(`${JSON.stringify(o)}\n`)

const sink = createServer({ allowHalfOpen: true }, (socket) => {
  const hash = createHash('sha256')
  let bytes = 0
  let first
  socket.on('data', (b) => {
    first ??= performance.now()
    hash.update(b)
    bytes += b.length
  })
  socket.on('end', () => {
    report({ sink: { bytes, sha256: hash.digest('hex'), ms: first ? performance.now() - first : 0 } })
    socket.end()
  })
  socket.on('error', (e) => report({ error: `sink: ${e.message}` }))
})

const source = createServer({ allowHalfOpen: true }, (socket) => {
  const data = randomBytes(Number(sourceBytes))
  socket.on('error', (e) => report({ error: `source: ${e.message}` }))
  socket.on('data', () => {})
  socket.end(data, () =>
    report({ source: { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') } }),
  )
})

let listening = 0
for (const [server, port] of [
  [sink, sinkPort],
  [source, sourcePort],
])
  server.listen(Number(port), address, () => {
    if (++listening === 2) report({ listening: true })
  })
