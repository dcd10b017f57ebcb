// Runs inside a fresh network namespace (unshare -n), started by tap.test.ts: a TAP with the host
// side at 10.0.0.1, the fake driver as the guest at 10.0.0.2 sending an ICMP echo request through
// virtio-net, and the host kernel's echo reply coming back into a receive buffer. Prints a JSON
// result. Traffic never leaves the namespace.
import { execFileSync } from 'node:child_process'

const [dist] = process.argv.slice(2)
const { NetDevice, TapBackend, VirtioMmioTransport, NET_HDR_SIZE, NetFeature } = await import(
  `${dist}/index.js`
)
const { MmioDriver, TestInterruptLine, testMemory, until } = await import(`${dist}/testing/index.js`)

const GUEST_MAC = [0x06, 0, 0, 0, 0, 2]
const ip = (...args) => execFileSync('ip', args, { stdio: 'pipe' })

ip('link', 'set', 'lo', 'up')
const backend = new TapBackend('vtap0', true)
ip('addr', 'add', '10.0.0.1/24', 'dev', 'vtap0')
ip('link', 'set', 'vtap0', 'up')
ip(
  'neigh',
  'add',
  '10.0.0.2',
  'lladdr',
  GUEST_MAC.map((b) => b.toString(16).padStart(2, '0')).join(':'),
  'dev',
  'vtap0',
)
const [link] = JSON.parse(ip('-j', 'link', 'show', 'vtap0').toString())
const hostMac = link.address.split(':').map((h) => Number.parseInt(h, 16))

const memory = testMemory(4 << 20)
const device = new NetDevice(backend, Uint8Array.from(GUEST_MAC))
const transport = new VirtioMmioTransport(device, memory, new TestInterruptLine())
const driver = new MmioDriver(transport, memory)
const features = driver.init({ features: (1n << NetFeature.GUEST_CSUM) | (1n << NetFeature.CSUM) })

const rx = driver.queue(0)
const rxBuffers = []
for (let i = 0; i < 16; i++) {
  const a = driver.alloc(2048)
  rxBuffers[rx.add([{ address: a, length: 2048, write: true }])] = a
}
driver.notify(0)

function checksum(bytes) {
  let sum = 0
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) | (bytes[i + 1] ?? 0)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

// Ethernet + IPv4 + ICMP echo request, id 0x1234 seq 1, 32 bytes of payload.
const payload = Uint8Array.from({ length: 32 }, (_, i) => i)
const icmp = new Uint8Array(8 + payload.length)
icmp.set([8, 0, 0, 0, 0x12, 0x34, 0, 1])
icmp.set(payload, 8)
const c = checksum(icmp)
icmp[2] = c >> 8
icmp[3] = c & 0xff
const ipv4 = new Uint8Array(20)
ipv4.set([0x45, 0, 0, 20 + icmp.length, 0, 1, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1])
const ic = checksum(ipv4)
ipv4[10] = ic >> 8
ipv4[11] = ic & 0xff
const frame = Uint8Array.from([...hostMac, ...GUEST_MAC, 0x08, 0x00, ...ipv4, ...icmp])
driver.queue(1).add([
  { address: driver.put(new Uint8Array(NET_HDR_SIZE)), length: NET_HDR_SIZE },
  { address: driver.put(frame), length: frame.length },
])
driver.notify(1)

let reply
await until(
  () => {
    for (const u of rx.takeUsed()) {
      const bytes = driver.get(rxBuffers[u.id], u.length)
      const f = bytes.subarray(NET_HDR_SIZE)
      // IPv4, ICMP, echo reply, our id
      if (f[12] === 8 && f[13] === 0 && f[23] === 1 && f[34] === 0 && f[38] === 0x12 && f[39] === 0x34)
        reply = { numBuffers: bytes[10], payload: [...f.subarray(42, 42 + payload.length)] }
    }
    return reply !== undefined
  },
  5000,
  'the echo reply',
)
console.log(JSON.stringify({ reply, counters: device.counters, features: features.toString() }))
await transport.dispose()
process.exit(0)
