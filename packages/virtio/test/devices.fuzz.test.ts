// Hostile drivers for every virtio device (issue 13, fuzz figures): random descriptor tables, and
// random contents where they point, shaped like each device's own headers (block request headers,
// vsock packet headers, net headers, balloon page lists). Invariants (runHostile): nothing thrown
// out of the device, no guest-memory access outside RAM, and either DEVICE_NEEDS_RESET (virtio 1.2
// §2.1.2) or a used ring holding only valid heads. Plus the block statuses the spec names (§5.2.6).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { BalloonDevice } from '../src/devices/balloon/device.js'
import { BlockDevice, BlockRequest, BlockStatus } from '../src/devices/block/device.js'
import { ConsoleDevice } from '../src/devices/console/device.js'
import { NetDevice, parseMac } from '../src/devices/net/device.js'
import { RngDevice } from '../src/devices/rng/device.js'
import { VsockDevice } from '../src/devices/vsock/device.js'
import { VSOCK_HDR_SIZE } from '../src/devices/vsock/packet.js'
import { Feature } from '../src/spec.js'
import { until } from '../src/testing/index.js'
import { FakeBackend, FakeTap } from './fakes.js'
import { rig } from './helpers.js'
import { hostileCaseWith, MEMORY_SIZE, randomBytes, runHostile } from './hostile.js'

const dir = mkdtempSync(join(tmpdir(), 'vmm-virtio-fuzz-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const IMAGE_SECTORS = 128
const image = join(dir, 'disk.img')
writeFileSync(image, new Uint8Array(IMAGE_SECTORS * 512))
const settleIo = () => new Promise<void>((r) => setImmediate(r))

const u64 = fc.oneof(
  fc.bigInt({ min: 0n, max: BigInt(IMAGE_SECTORS + 4) }),
  fc.constantFrom(2n ** 53n, 2n ** 63n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
)
const le = (size: number, write: (v: DataView) => void, tail: Uint8Array) => {
  const b = new Uint8Array(size + tail.length)
  write(new DataView(b.buffer))
  b.set(tail, size)
  return b
}

/** struct virtio_blk_req's header (§5.2.6): type, reserved, sector; then data or discard segments. */
const blockHeader = fc
  .record({
    type: fc.oneof(fc.constantFrom(...Object.values(BlockRequest)), fc.integer({ min: 0, max: 0xffff_ffff })),
    sector: u64,
    tail: randomBytes,
  })
  .map(({ type, sector, tail }) =>
    le(
      16,
      (v) => {
        v.setUint32(0, type, true)
        v.setBigUint64(8, sector, true)
      },
      tail,
    ),
  )

/** struct virtio_vsock_hdr (§5.10.6): CIDs, ports, len, type, op, flags, credit. */
const vsockHeader = fc
  .record({
    srcCid: fc.oneof(fc.constant(3n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
    dstCid: fc.oneof(fc.constant(2n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
    ports: fc.array(
      fc.oneof(fc.integer({ min: 1020, max: 1030 }), fc.integer({ min: 0, max: 0xffff_ffff })),
      {
        minLength: 2,
        maxLength: 2,
      },
    ),
    len: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffff_ffff })),
    type: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 0xffff })),
    op: fc.integer({ min: 0, max: 8 }),
    flags: fc.integer({ min: 0, max: 0xffff_ffff }),
    credit: fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 2, maxLength: 2 }),
    tail: randomBytes,
  })
  .map((h) =>
    le(
      VSOCK_HDR_SIZE,
      (v) => {
        v.setBigUint64(0, h.srcCid, true)
        v.setBigUint64(8, h.dstCid, true)
        v.setUint32(16, h.ports[0]!, true)
        v.setUint32(20, h.ports[1]!, true)
        v.setUint32(24, h.len, true)
        v.setUint16(28, h.type, true)
        v.setUint16(30, h.op, true)
        v.setUint32(32, h.flags, true)
        v.setUint32(36, h.credit[0]!, true)
        v.setUint32(40, h.credit[1]!, true)
      },
      h.tail,
    ),
  )

/** struct virtio_net_hdr (§5.1.6): flags, gso_type, hdr_len, gso_size, csum_start/offset, num_buffers. */
const netHeader = fc
  .record({ hdr: fc.uint8Array({ minLength: 12, maxLength: 12 }), frame: fc.uint8Array({ maxLength: 64 }) })
  .map(({ hdr, frame }) => Uint8Array.from([...hdr, ...frame]))

/** Balloon page lists (§5.5.6): 32-bit PFNs, in RAM and not. */
const pageList = fc
  .array(
    fc.oneof(fc.integer({ min: 0, max: MEMORY_SIZE / 4096 - 1 }), fc.integer({ min: 0, max: 0xffff_ffff })),
    {
      maxLength: 16,
    },
  )
  .map((pfns) => new Uint8Array(Uint32Array.from(pfns).buffer))

function balloon() {
  return new BalloonDevice({
    stats: true,
    deflateOnOom: true,
    targetPages: 16,
    discard: (m, a, n) => m.discard(a, n),
  })
}

describe('virtio devices under hostile drivers, contents randomized (fast-check)', () => {
  const devices = [
    ['virtio-rng', [0], randomBytes, () => new RngDevice()],
    ['virtio-blk', [0], blockHeader, () => new BlockDevice({ path: image, readOnly: false, serial: 'p' })],
    [
      'virtio-blk (read-only)',
      [0],
      blockHeader,
      () => new BlockDevice({ path: image, readOnly: true, serial: 'p' }),
    ],
    [
      'virtio-console',
      [0, 1],
      randomBytes,
      () => {
        const backend = new FakeBackend()
        const device = new ConsoleDevice(backend)
        backend.send(new Uint8Array(100).fill(7))
        return device
      },
    ],
    [
      'virtio-net',
      [0, 1],
      netHeader,
      () => {
        const tap = new FakeTap(true)
        tap.inbound.push(
          new Uint8Array(60).fill(1),
          new Uint8Array(1500).fill(2),
          new Uint8Array(9000).fill(3),
        )
        return new NetDevice(tap, parseMac('06:00:00:aa:bb:cc'))
      },
    ],
    ['virtio-vsock', [0, 1, 2], vsockHeader, () => new VsockDevice(3, join(dir, 'v.sock'))],
    ['virtio-balloon', [0, 1, 2], pageList, balloon],
  ] as const
  for (const [name, queues, content, make] of devices) {
    for (const queue of queues) {
      it(`${name}, queue ${queue}: nothing escapes, no access outside RAM, NEEDS_RESET or valid used ring`, async () => {
        await fuzz(
          (p) =>
            fc.assert(
              fc.asyncProperty(hostileCaseWith(content), (c) => runHostile(make, queue, c, settleIo)),
              p,
            ),
          40,
        )
      })
    }
  }
})

describe('virtio-blk statuses for well-formed chains with random headers (§5.2.6, fast-check)', () => {
  // An image of its own: this device lives for the whole file and holds its image's write lock,
  // which the hostile cases above (one device per case on `image`) would otherwise meet.
  const statusImage = join(dir, 'status.img')
  writeFileSync(statusImage, new Uint8Array(IMAGE_SECTORS * 512))
  const r = rig(new BlockDevice({ path: statusImage, readOnly: false, serial: 'p' }))
  r.driver.init({ features: 0n | (1n << Feature.VERSION_1) })
  const q = r.driver.queue(0)
  const d = r.driver
  const hdr = d.alloc(16)
  const data = d.alloc(4096)
  const status = d.alloc(1)
  it('IN/OUT in range: OK; past the capacity or not whole sectors: IOERR; an unknown type: UNSUPP', async () => {
    await fuzz(
      (p) =>
        fc.assert(
          fc.asyncProperty(
            fc.record({
              type: fc.oneof(
                fc.constantFrom(BlockRequest.IN, BlockRequest.OUT),
                fc.integer({ min: 0, max: 0xffff_ffff }),
              ),
              sector: fc.oneof(fc.integer({ min: 0, max: IMAGE_SECTORS + 8 }), fc.constant(2 ** 40)),
              length: fc.oneof(fc.constantFrom(512, 1024, 4096), fc.integer({ min: 1, max: 4096 })),
            }),
            async ({ type, sector, length }) => {
              const h = new DataView(new ArrayBuffer(16))
              h.setUint32(0, type, true)
              h.setBigUint64(8, BigInt(sector), true)
              d.memory.write(hdr, new Uint8Array(h.buffer))
              d.memory.writeU8(status, 0xff)
              const before = q.usedIndex
              q.add([
                { address: hdr, length: 16 },
                { address: data, length, write: type !== BlockRequest.OUT },
                { address: status, length: 1, write: true },
              ])
              d.notify(0)
              await until(() => q.usedIndex !== before, 5000, 'the request')
              q.takeUsed()
              const known = [0, 1, 4, 8, 11, 13].includes(type)
              const fits = length % 512 === 0 && sector + length / 512 <= IMAGE_SECTORS
              const want =
                type === BlockRequest.IN || type === BlockRequest.OUT
                  ? fits
                    ? BlockStatus.OK
                    : BlockStatus.IOERR
                  : known
                    ? undefined
                    : BlockStatus.UNSUPP
              if (want !== undefined) expect(d.memory.readU8(status)).toBe(want)
              expect(r.failures).toEqual([])
            },
          ),
          p,
        ),
      100,
    )
  })
})

describe('virtio-blk over disk images of any size and contents (fast-check)', () => {
  it('capacity is the whole sectors of the file; a read is OK within them and IOERR past them; data is the file', async () => {
    const path = join(dir, 'any.img')
    await fuzz(
      (p) =>
        fc.assert(
          fc.asyncProperty(
            fc.uint8Array({ maxLength: 4 * 512 + 100 }),
            fc.integer({ min: 0, max: 6 }),
            fc.integer({ min: 1, max: 3 }),
            async (contents, sector, sectors) => {
              writeFileSync(path, contents)
              const r = rig(new BlockDevice({ path, readOnly: true, serial: 'a' }))
              r.driver.init({ features: 1n << Feature.VERSION_1 })
              const capacity = Math.floor(contents.length / 512)
              expect(new DataView(r.driver.readConfig(0, 8).buffer).getBigUint64(0, true)).toBe(
                BigInt(capacity),
              )
              const q = r.driver.queue(0)
              const h = new DataView(new ArrayBuffer(16))
              h.setUint32(0, BlockRequest.IN, true)
              h.setBigUint64(8, BigInt(sector), true)
              const data = r.driver.alloc(sectors * 512)
              const status = r.driver.alloc(1)
              q.add([
                { address: r.driver.put(new Uint8Array(h.buffer)), length: 16 },
                { address: data, length: sectors * 512, write: true },
                { address: status, length: 1, write: true },
              ])
              r.driver.notify(0)
              await until(() => q.usedIndex !== 0, 5000, 'the read')
              const fits = sector + sectors <= capacity
              expect(r.memory.readU8(status)).toBe(fits ? BlockStatus.OK : BlockStatus.IOERR)
              if (fits)
                expect(r.driver.get(data, sectors * 512)).toEqual(
                  contents.subarray(sector * 512, (sector + sectors) * 512),
                )
              await r.transport.dispose()
            },
          ),
          p,
        ),
      50,
    )
  })
})
