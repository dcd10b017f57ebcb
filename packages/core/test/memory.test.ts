import { describe, expect, it } from 'vitest'
import { type GuestAddress, guestAddress } from '../src/address.js'
import { FlatMemory } from '../src/memory/flat-memory.js'
import { type ByteCodec, GuestMemoryError } from '../src/memory/guest-memory.js'
import { RamBacking } from '../src/memory/ram-backing.js'

const a = guestAddress

function errorCode(f: () => unknown): string | undefined {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(GuestMemoryError)
    return (e as GuestMemoryError).code
  }
  return undefined
}

describe('guestAddress', () => {
  it('accepts 52-bit integers and nothing else', () => {
    expect(guestAddress(2 ** 52 - 1)).toBe(2 ** 52 - 1)
    expect(() => guestAddress(2 ** 52)).toThrow(RangeError)
    expect(() => guestAddress(-1)).toThrow(RangeError)
    expect(() => guestAddress(1.5)).toThrow(RangeError)
  })
})

describe('RamBacking', () => {
  it('checks that chunks are full except the last', () => {
    expect(() => new RamBacking([new ArrayBuffer(8), new ArrayBuffer(4)], 8)).not.toThrow()
    expect(() => new RamBacking([new ArrayBuffer(4), new ArrayBuffer(8)], 8)).toThrow(
      'RAM chunk 0 is 0x4 bytes; chunks are 0x8',
    )
    expect(() => new RamBacking([], 8)).toThrow(RangeError)
  })

  it('copies across chunk boundaries and refuses straddling views', () => {
    const ram = RamBacking.allocate(24, 8)
    ram.copyIn(6, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12))
    const out = new Uint8Array(12)
    ram.copyOut(6, out)
    expect([...out]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    expect(ram.view(6, 4)).toBeUndefined()
    expect([...ram.view(8, 8)!]).toEqual([3, 4, 5, 6, 7, 8, 9, 10])
  })
})

describe('FlatMemory', () => {
  it('lays RAM out around holes, moving what would fall in a hole above it', () => {
    const mem = new FlatMemory(RamBacking.allocate(0x3000, 0x1000), [{ base: 0x1000, size: 0x800 }])
    expect(mem.memorySegments.map((s) => [s.start, s.size, s.backingOffset])).toEqual([
      [0, 0x1000, 0],
      [0x1800, 0x2000, 0x1000],
    ])
    expect(mem.end).toBe(0x3800)
    expect(mem.isMapped(a(0x1000), 1)).toBe(false)
    expect(mem.isMapped(a(0x17ff), 2)).toBe(false)
    expect(mem.isMapped(a(0x1800), 0x2000)).toBe(true)
  })

  it('reads and writes scalars little-endian, across chunks', () => {
    const mem = new FlatMemory(RamBacking.allocate(0x2000, 0x1000))
    mem.writeU64(a(0xffc), 0x1122334455667788n)
    expect(mem.readU64(a(0xffc))).toBe(0x1122334455667788n)
    expect(mem.readU32(a(0x1000))).toBe(0x11223344)
    expect(mem.readU16(a(0xffc))).toBe(0x7788)
    expect(mem.readU8(a(0xfff))).toBe(0x55)
    mem.writeU32(a(0x10), 0xdeadbeef)
    mem.writeU16(a(0x14), 0xcafe)
    mem.writeU8(a(0x16), 0x7f)
    expect([...mem.slice(a(0x10), 7)]).toEqual([0xef, 0xbe, 0xad, 0xde, 0xfe, 0xca, 0x7f])
  })

  it('hands out zero-copy views that see later writes', () => {
    const mem = new FlatMemory(RamBacking.allocate(0x2000, 0x1000))
    const view = mem.slice(a(0x100), 4)
    mem.write(a(0x100), Uint8Array.of(9, 8, 7, 6))
    expect([...view]).toEqual([9, 8, 7, 6])
  })

  it('reads and writes objects through a codec', () => {
    const point: ByteCodec<{ x: number; y: number }> = {
      size: 8,
      decode: (v, o) => ({ x: v.getInt32(o, true), y: v.getInt32(o + 4, true) }),
      encode: (p, v, o) => {
        v.setInt32(o, p.x, true)
        v.setInt32(o + 4, p.y, true)
      },
    }
    const mem = new FlatMemory(RamBacking.allocate(0x1000))
    mem.writeObj(a(0x20), point, { x: -3, y: 7 })
    expect(mem.readObj(a(0x20), point)).toEqual({ x: -3, y: 7 })
    expect(mem.readU32(a(0x24))).toBe(7)
  })

  it('fails with a closed set of codes and leaves memory untouched on a failed write', () => {
    const mem = new FlatMemory(RamBacking.allocate(0x2000, 0x1000), [{ base: 0x1000, size: 0x1000 }])
    expect(errorCode(() => mem.readU8(a(0x1000)))).toBe('UNMAPPED')
    expect(errorCode(() => mem.read(a(0x2fff), new Uint8Array(2)))).toBe('UNMAPPED')
    expect(errorCode(() => mem.write(-1 as GuestAddress, new Uint8Array(1)))).toBe('INVALID_RANGE')
    expect(errorCode(() => mem.slice(a(0xffe), 4))).toBe('UNMAPPED')
    expect(errorCode(() => mem.write(a(0xffe), Uint8Array.of(1, 2, 3)))).toBe('UNMAPPED')
    expect(mem.readU16(a(0xffe))).toBe(0)
    expect(() => mem.readU8(a(0x1000))).toThrow('guest memory [0x1000, +0x1) is not backed by guest RAM')
  })

  it('refuses a zero-copy view over two host chunks', () => {
    const mem = new FlatMemory(RamBacking.allocate(0x2000, 0x1000))
    expect(errorCode(() => mem.slice(a(0xffe), 4))).toBe('NOT_CONTIGUOUS')
    const into = new Uint8Array(4)
    expect(() => mem.read(a(0xffe), into)).not.toThrow()
  })
})

describe('GuestMemory.discard', () => {
  it('hands page-aligned ranges to the provider at their backing offsets, across holes, and says whether they read as zeroes', () => {
    const calls: [number, number][] = []
    let zeroes = true
    const backing = new RamBacking([new ArrayBuffer(0x4000)], 0x4000, (offset, length) => {
      calls.push([offset, length])
      return zeroes
    })
    // RAM 0-0x2000, a hole, RAM 0x3000-0x5000 (backing 0x2000-0x4000).
    const mem = new FlatMemory(backing, [{ base: 0x2000, size: 0x1000 }])
    expect(mem.discard(a(0x1000), 0x1000)).toBe(true)
    expect(mem.discard(a(0x3000), 0x2000)).toBe(true)
    zeroes = false
    expect(mem.discard(a(0x4000), 0x1000)).toBe(false)
    expect(calls).toEqual([
      [0x1000, 0x1000],
      [0x2000, 0x2000],
      [0x3000, 0x1000],
    ])
    expect(errorCode(() => mem.discard(a(0x1800), 0x1000))).toBe('INVALID_RANGE')
    expect(errorCode(() => mem.discard(a(0x1000), 0x800))).toBe('INVALID_RANGE')
    expect(errorCode(() => mem.discard(a(0x1000), 0x2000))).toBe('UNMAPPED') // runs into the hole
    expect(calls).toHaveLength(3) // nothing of a refused range reached the provider
  })

  it('zeroes the bytes where the backing has no provider, and leaves ROM alone', async () => {
    const { AddressSpace, MemoryRegion } = await import('../src/memory/address-space.js')
    const backing = RamBacking.allocate(0x3000)
    backing.copyIn(0, new Uint8Array(0x3000).fill(7))
    const root = MemoryRegion.container('system', 0x10000)
    root.addSubregion(MemoryRegion.ram('ram', backing, 0, 0x2000), 0)
    root.addSubregion(MemoryRegion.rom('rom', backing, 0x2000, 0x1000), 0x8000)
    const mem = new AddressSpace(root, () => {})
    expect(mem.discard(a(0x1000), 0x1000)).toBe(true)
    expect(mem.readU8(a(0x1000))).toBe(0)
    expect(mem.readU8(a(0x1fff))).toBe(0)
    expect(mem.readU8(a(0xfff))).toBe(7)
    expect(errorCode(() => mem.discard(a(0x8000), 0x1000))).toBe('UNMAPPED')
    expect(mem.readU8(a(0x8000))).toBe(7)
  })
})
