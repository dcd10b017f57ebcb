import { guestAddress } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import { VirtqueueError } from '../src/queue/errors.js'
import { DescFlags, SplitQueue } from '../src/queue/split-queue.js'
import { DriverQueue, type RawDescriptor, testMemory } from '../src/testing/index.js'

const { NEXT, WRITE, INDIRECT } = DescFlags

function setup(size = 8) {
  const memory = testMemory(1 << 20)
  const q = new SplitQueue(size)
  q.descTable = 0x1000
  q.availRing = 0x2000
  q.usedRing = 0x3000
  q.indirect = true
  q.ready = true
  const driver = new DriverQueue(
    memory,
    size,
    guestAddress(0x1000),
    guestAddress(0x2000),
    guestAddress(0x3000),
    guestAddress(0x10000),
  )
  q.validate(memory)
  const post = (descs: RawDescriptor[], table = 0x1000) => {
    descs.forEach((d, i) => {
      driver.writeDescriptor(table, i, d)
    })
    if (table === 0x1000) driver.publish(0)
  }
  const code = () => {
    try {
      q.pop(memory)
      return 'ok'
    } catch (e) {
      return (e as VirtqueueError).code
    }
  }
  return { memory, q, driver, post, code }
}

const buf = (flags: number, next = 0, address = 0x8000, length = 64): RawDescriptor => ({
  address,
  length,
  flags,
  next,
})

describe('split virtqueue (§2.7)', () => {
  it('flattens a chain into readable then writable buffers', () => {
    const { memory, q, post } = setup()
    post([buf(NEXT, 1), buf(NEXT | WRITE, 2, 0x9000, 32), buf(WRITE, 0, 0xa000, 16)])
    const chain = q.pop(memory)!
    expect(chain.readableLength).toBe(64)
    expect(chain.writableLength).toBe(48)
    expect(chain.writable.map((b) => b.address)).toEqual([0x9000, 0xa000])
    expect(q.pop(memory)).toBeUndefined()
  })

  it('follows an indirect table (§2.7.5.3)', () => {
    const { memory, q, post } = setup()
    post([buf(NEXT, 1), buf(WRITE, 0, 0x9000, 8)], 0x5000)
    post([{ address: 0x5000, length: 32, flags: INDIRECT, next: 0 }])
    const chain = q.pop(memory)!
    expect([chain.readableLength, chain.writableLength]).toEqual([64, 8])
  })

  it.each([
    ['a loop', [buf(NEXT, 1), buf(NEXT, 0)], 'CHAIN_TOO_LONG'],
    ['a next index past the table', [buf(NEXT, 8)], 'DESCRIPTOR_INDEX'],
    ['a buffer past the end of RAM', [buf(0, 0, (1 << 20) - 8, 64)], 'BAD_ADDRESS'],
    ['a 64-bit address', [{ address: 2n ** 63n, length: 1, flags: 0, next: 0 }], 'BAD_ADDRESS'],
    ['readable after writable', [buf(WRITE | NEXT, 1), buf(0)], 'DIRECTION'],
    [
      'INDIRECT with NEXT',
      [{ address: 0x5000, length: 16, flags: INDIRECT | NEXT, next: 1 }, buf(0)],
      'BAD_INDIRECT',
    ],
    [
      'an indirect table of partial descriptors',
      [{ address: 0x5000, length: 20, flags: INDIRECT, next: 0 }],
      'BAD_INDIRECT',
    ],
  ] as const)('rejects %s', (_what, descs, expected) => {
    const { post, code } = setup()
    post([...descs])
    expect(code()).toBe(expected)
  })

  it('rejects an indirect descriptor inside an indirect table and an overlong indirect table', () => {
    const nested = setup()
    nested.post([{ address: 0x5000, length: 16, flags: INDIRECT, next: 0 }], 0x5000)
    nested.post([{ address: 0x5000, length: 16, flags: INDIRECT, next: 0 }])
    expect(nested.code()).toBe('BAD_INDIRECT')
    const long = setup(4)
    long.post(
      Array.from({ length: 5 }, (_, i) => buf(i < 4 ? NEXT : 0, i + 1)),
      0x5000,
    )
    long.post([{ address: 0x5000, length: 80, flags: INDIRECT, next: 0 }])
    expect(long.code()).toBe('CHAIN_TOO_LONG')
  })

  it('rejects indirect descriptors unless negotiated', () => {
    const { q, post, code } = setup()
    q.indirect = false
    post([{ address: 0x5000, length: 16, flags: INDIRECT, next: 0 }])
    expect(code()).toBe('BAD_INDIRECT')
  })

  it('rejects chains whose total length does not fit a u32', () => {
    const { memory, q, post } = setup()
    // A guest with (as far as the queue can tell) 16 GiB of RAM: two 4 GiB - 1 buffers overflow.
    const huge = new Proxy(memory, {
      get: (target, key) => (key === 'isMapped' ? () => true : Reflect.get(target, key).bind(target)),
    })
    post([buf(NEXT, 1, 0, 0xffff_ffff), buf(0, 0, 0, 0xffff_ffff)])
    expect(() => q.pop(huge)).toThrow(expect.objectContaining({ code: 'LENGTH_OVERFLOW' }))
  })

  it('rejects an available index more than a queue ahead', () => {
    const { driver, code } = setup()
    driver.setAvailIndex(9)
    expect(code()).toBe('AVAIL_INDEX')
  })

  it('rejects rings that are misaligned or outside RAM', () => {
    const { memory, q } = setup()
    q.usedRing = 0x3002
    expect(() => q.validate(memory)).toThrow(VirtqueueError)
    q.usedRing = (1 << 20) - 16
    expect(() => q.validate(memory)).toThrow(/used ring/)
    q.usedRing = 0x3000
    q.size = 6
    expect(() => q.validate(memory)).toThrow(/power of 2/)
  })

  it('publishes used elements and wraps indices at 2^16', () => {
    const { memory, q, driver, post } = setup(2)
    post([buf(WRITE)])
    for (let i = 0; i < 70000; i++) {
      if (i > 0) driver.publish(0)
      const chain = q.pop(memory)!
      q.addUsed(memory, chain.head, 7)
    }
    expect(driver.usedIndex).toBe(70000 & 0xffff)
    expect(driver.takeUsed().at(-1)).toEqual({ id: 0, length: 7 })
  })
})
