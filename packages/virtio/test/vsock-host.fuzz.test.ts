// The host side of virtio-vsock under hostile input (issue 13): a host process that connects to
// the device's Unix socket must say "CONNECT <port>\n" (Firecracker's hybrid vsock protocol,
// docs/vsock.md there); anything else it sends must be refused without a guest request, without a
// throw and without a connection left behind. Properties:
// - soundness: a REQUEST reaches the guest only for a first line that is CONNECT and a port that
//   fits in 32 bits, and it asks for exactly that port;
// - completeness: a well-formed short CONNECT line always gets its REQUEST;
// - refusal: any other first line (or 33+ bytes with no newline) closes the host socket.
import { connect, type Socket } from 'node:net'
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { VsockDevice } from '../src/devices/vsock/device.js'
import { VsockOp } from '../src/devices/vsock/packet.js'
import { until } from '../src/testing/index.js'
import { setup } from './vsock-rig.js'

const encoder = new TextEncoder()
const port = fc.oneof(
  fc.integer({ min: 0, max: 0xffff_ffff }),
  fc.constantFrom(0xffff_ffff, 0x1_0000_0000, 9_999_999_999, 12_345_678_901),
)
/** First lines: well-formed, near misses and noise. */
const firstLine = fc.oneof(
  port.map((p) => `CONNECT ${p}\n`),
  port.map((p) => `  CONNECT ${p}  \r\n`),
  fc.constantFrom(
    'connect 5\n',
    'CONNECT\n',
    'CONNECT -1\n',
    'CONNECT 0x10\n',
    'CONNECT 5 6\n',
    'CONNECT 1e3\n',
  ),
  fc.constantFrom('CONNECT 52', 'C'.repeat(40), `CONNECT ${'0'.repeat(40)}\n`),
  fc.string({ maxLength: 48 }),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('latin1')),
)
const trailing = fc.uint8Array({ maxLength: 64 })

/** The port a first line asks for, read the way the protocol is written (not the device's code). */
function requestedPort(line: string): number | undefined {
  const text = line.replace(/^[ \t\r]+|[ \t\r]+$/g, '')
  const words = text.split(' ')
  if (words.length !== 2 || words[0] !== 'CONNECT' || !/^[0-9]{1,10}$/.test(words[1]!)) return undefined
  const p = Number(words[1])
  return p <= 0xffff_ffff ? p : undefined
}

const closed = (s: Socket) => s.destroyed || s.readableEnded || s.closed

/** One case: a fresh device with receive buffers posted and a host client connected to its socket. */
async function withHostClient(body: (v: ReturnType<typeof setup>, host: Socket) => Promise<void>) {
  const local: (() => void)[] = []
  try {
    const v = setup(local)
    v.postRx(8)
    const host = connect(v.path)
    local.push(() => host.destroy())
    host.on('error', () => {})
    await new Promise((r) => host.once('connect', r))
    await body(v, host)
  } finally {
    for (const c of local.splice(0).reverse()) c()
  }
}

describe('virtio-vsock host side, hostile host clients', () => {
  it('asks the guest only for what a CONNECT line names and refuses every other first line', async () => {
    await fuzz(
      (parameters) =>
        fc.assert(
          fc.asyncProperty(firstLine, trailing, async (line, rest) => {
            await withHostClient(async (v, host) => {
              const sent = Buffer.concat([Buffer.from(line, 'latin1'), rest])
              host.write(sent)
              const nl = sent.indexOf(10)
              const first = nl >= 0 ? sent.subarray(0, nl).toString('latin1') : undefined
              const requests = () => v.collect().filter((p) => p.h.op === VsockOp.REQUEST)
              if (first !== undefined && nl <= 32) {
                // A short first line decides: its REQUEST, or the socket closed.
                const wanted = requestedPort(first)
                if (wanted === undefined)
                  await until(() => closed(host), 3000, `closed for ${JSON.stringify(first)}`)
                else {
                  await until(() => requests().length === 1, 3000, `REQUEST for ${JSON.stringify(first)}`)
                  expect(requests()[0]!.h.dstPort).toBe(wanted)
                }
              } else if (first === undefined && sent.length > 32) {
                await until(() => closed(host), 3000, 'closed after 33+ bytes with no newline')
              }
              // Soundness, whatever was sent: a request only for a CONNECT line, for the port it names.
              await new Promise((r) => setImmediate(r))
              for (const r of requests())
                expect(first !== undefined && requestedPort(first)).toBe(r.h.dstPort)
              expect((v.device as VsockDevice).connectionCount).toBeLessThanOrEqual(1)
            })
          }),
          parameters,
        ),
      40,
    )
  }, 120_000)

  it('drops a host connection the guest refuses and leaves nothing tracked', async () => {
    await fuzz(
      (parameters) =>
        fc.assert(
          fc.asyncProperty(
            fc.integer({ min: 1, max: 0xffff }),
            fc.uint8Array({ maxLength: 256 }),
            async (p, data) => {
              await withHostClient(async (v, host) => {
                host.write(Buffer.concat([encoder.encode(`CONNECT ${p}\n`), data]))
                await until(() => v.collect().some((x) => x.h.op === VsockOp.REQUEST), 3000, 'REQUEST')
                const request = v.collect().find((x) => x.h.op === VsockOp.REQUEST)!
                v.send({ op: VsockOp.RST, srcPort: p, dstPort: request.h.srcPort })
                await until(() => closed(host), 3000, 'host socket closed after RST')
                await until(
                  () => (v.device as VsockDevice).connectionCount === 0,
                  3000,
                  'connection forgotten',
                )
              })
            },
          ),
          parameters,
        ),
      20,
    )
  }, 120_000)
})
