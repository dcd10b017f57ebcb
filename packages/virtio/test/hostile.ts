// Property-test machinery shared by the device tests: random and hostile descriptor tables posted to
// a device's queue through the fake driver, with guest memory watched for failed accesses.
import { type GuestAddress, type GuestMemory, GuestMemoryError, guestAddress } from '@vmm/core'
import fc from 'fast-check'
import { expect } from 'vitest'
import type { VirtioDevice } from '../src/device.js'
import { VirtioMmioTransport } from '../src/mmio/transport.js'
import { DescFlags } from '../src/queue/split-queue.js'
import { Feature, Status } from '../src/spec.js'
import { MmioDriver, type RawDescriptor, TestInterruptLine, testMemory } from '../src/testing/index.js'

export const MEMORY_SIZE = 1 << 20
const QUEUE_SIZE = 16
/** Where hostile buffers and indirect tables point: the upper half of RAM, away from the rings. */
const DATA = MEMORY_SIZE / 2

/**
 * Wraps guest memory so every access that fails (outside RAM, bad range) is counted: a device must
 * check chains before touching memory, so the count stays 0 whatever the guest wrote.
 */
export function watched(memory: GuestMemory): { memory: GuestMemory; failures: unknown[] } {
  const failures: unknown[] = []
  const proxy = new Proxy(memory, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function') return value
      // isMapped answers false by catching its own failed lookup: that is a check, not an access.
      if (key === 'isMapped') return value.bind(target)
      return (...args: unknown[]) => {
        try {
          return value.apply(target, args)
        } catch (e) {
          if (e instanceof GuestMemoryError) failures.push(e)
          throw e
        }
      }
    },
  })
  return { memory: proxy, failures }
}

const address = fc.oneof(
  fc.integer({ min: DATA, max: MEMORY_SIZE - 1 }),
  fc.integer({ min: 0, max: MEMORY_SIZE + 4096 }),
  fc.constantFrom(MEMORY_SIZE - 1, MEMORY_SIZE, 2 ** 52 - 1, 2 ** 53, 0),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
)
const length = fc.oneof(
  fc.integer({ min: 0, max: 4096 }),
  fc.constantFrom(1, 16, 512, 0xffff_ffff, 0x8000_0000),
  fc.integer({ min: 0, max: 0xffff_ffff }),
)
const descriptor: fc.Arbitrary<RawDescriptor> = fc.record({
  address,
  length,
  flags: fc.integer({ min: 0, max: 7 }),
  next: fc.oneof(fc.integer({ min: 0, max: QUEUE_SIZE - 1 }), fc.integer({ min: 0, max: 0xffff })),
})
/** A well-formed direct descriptor: readable buffers then writable ones, in RAM. */
const sane = fc
  .record({
    offset: fc.integer({ min: 0, max: DATA / 2 - 4096 }),
    length: fc.integer({ min: 1, max: 4096 }),
    write: fc.boolean(),
  })
  .map(({ offset, length, write }) => ({
    address: DATA + offset,
    length,
    flags: write ? DescFlags.WRITE : 0,
    next: 0,
  }))

export interface HostileCase {
  table: RawDescriptor[]
  /**
   * What the descriptors point to: contents[i] is written where descriptor i (and indirect entry i)
   * points, when that is in RAM, so request headers, packets and page lists are randomized too.
   */
  contents: Uint8Array[]
  /** Tables for INDIRECT descriptors: at DATA + 0x40000 + 0x1000 * i. */
  indirect: RawDescriptor[][]
  heads: number[]
  availJump: number
}

/** Random bytes: what a device reads from a buffer unless it is given a better-shaped generator. */
export const randomBytes = fc.uint8Array({ maxLength: 64 })

/**
 * Hostile cases whose buffers hold `content` (a device's header shape: block request headers,
 * vsock packets, page lists), mixed with random bytes.
 */
export function hostileCaseWith(content: fc.Arbitrary<Uint8Array> = randomBytes): fc.Arbitrary<HostileCase> {
  return fc.record({
    table: fc.array(fc.oneof(descriptor, sane), { minLength: QUEUE_SIZE, maxLength: QUEUE_SIZE }),
    contents: fc.array(fc.oneof({ weight: 3, arbitrary: content }, { weight: 1, arbitrary: randomBytes }), {
      minLength: QUEUE_SIZE,
      maxLength: QUEUE_SIZE,
    }),
    indirect: fc.array(fc.array(fc.oneof(descriptor, sane), { minLength: 1, maxLength: 8 }), {
      maxLength: 3,
    }),
    heads: fc.array(
      fc.oneof(fc.integer({ min: 0, max: QUEUE_SIZE - 1 }), fc.integer({ min: 0, max: 0xffff })),
      {
        minLength: 1,
        maxLength: 6,
      },
    ),
    availJump: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })),
  })
}

export const hostileCase: fc.Arbitrary<HostileCase> = hostileCaseWith()

/** Writes `bytes` at `d`'s buffer when it lies in RAM (clipped to the buffer and to RAM). */
function fill(memory: GuestMemory, d: RawDescriptor, bytes: Uint8Array | undefined): void {
  if (!bytes || bytes.length === 0 || typeof d.address !== 'number') return
  const n = Math.min(bytes.length, d.length, MEMORY_SIZE - d.address)
  if (d.address >= DATA && n > 0) memory.write(guestAddress(d.address), bytes.subarray(0, n))
}

/** Indirect descriptors in a case point at the generated tables, some of them. */
function placeIndirect(c: HostileCase): RawDescriptor[] {
  return c.table.map((d, i) => {
    if (!(d.flags & DescFlags.INDIRECT) || c.indirect.length === 0 || i % 2 === 1) return d
    const t = i % c.indirect.length
    return { ...d, address: DATA + 0x40000 + 0x1000 * t, length: 16 * c.indirect[t]!.length }
  })
}

/**
 * Runs one hostile case against a fresh device on queue `queue`: posts the table and heads,
 * notifies, lets asynchronous work settle, and checks the invariants: nothing thrown, no failed
 * memory access, and either DEVICE_NEEDS_RESET or a used ring that only holds valid heads.
 */
export async function runHostile(
  makeDevice: () => VirtioDevice,
  queue: number,
  c: HostileCase,
  settle: () => Promise<void> = async () => {},
): Promise<void> {
  const { memory, failures } = watched(testMemory(MEMORY_SIZE))
  const device = makeDevice()
  const transport = new VirtioMmioTransport(device, memory, new TestInterruptLine())
  const driver = new MmioDriver(transport, memory)
  driver.init({
    features: (1n << Feature.RING_INDIRECT_DESC) | (1n << Feature.RING_EVENT_IDX),
    queueSizes: device.queueSizes.map(() => QUEUE_SIZE),
  })
  const q = driver.queue(queue)
  for (const [i, d] of placeIndirect(c).entries()) q.writeDescriptor(q.descTable, i, d)
  for (const [ti, t] of c.indirect.entries()) {
    for (const [i, d] of t.entries()) q.writeDescriptor(DATA + 0x40000 + 0x1000 * ti, i, d)
  }
  // Contents after the tables: a buffer may overlap a table, as a hostile guest's may.
  for (const [i, d] of c.table.entries()) fill(memory, d, c.contents[i])
  for (const t of c.indirect)
    for (const [i, d] of t.entries()) fill(memory, d, c.contents[(i + 7) % QUEUE_SIZE])
  for (const h of c.heads) q.publish(h)
  if (c.availJump) q.setAvailIndex(c.heads.length + c.availJump)
  driver.notify(queue)
  await settle()
  await transport.dispose()
  expect(failures).toEqual([])
  if (driver.status & Status.DEVICE_NEEDS_RESET) return
  // A guest may point a writable buffer at its own used ring: a device that writes there (rng,
  // net rx) overwrites entries with guest-requested bytes, which is no fault of the device. The
  // used ring is checked only when no buffer of the case overlaps it (found at 93,269 cases).
  const usedEnd = q.usedRing + 6 + 8 * QUEUE_SIZE
  const overlaps = [...c.table, ...c.indirect.flat()].some(
    (d) =>
      d.flags & DescFlags.WRITE && Number(d.address) < usedEnd && Number(d.address) + d.length > q.usedRing,
  )
  if (overlaps) return
  const used = q.takeUsed()
  // The device takes at most what the available index announced, and never more than a ring's worth.
  expect(used.length).toBeLessThanOrEqual(Math.min(QUEUE_SIZE, c.heads.length + c.availJump))
  for (const u of used) expect(u.id).toBeLessThan(QUEUE_SIZE)
}

export function at(n: number): GuestAddress {
  return guestAddress(n)
}
