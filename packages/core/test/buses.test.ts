import { describe, expect, it } from 'vitest'
import type { UnhandledAccess } from '../src/bus/device.js'
import { BusError } from '../src/bus/errors.js'
import { MmioBus } from '../src/bus/mmio-bus.js'
import { PioBus } from '../src/bus/pio-bus.js'

/** A device that records accesses and answers reads with its offset. */
function recorder() {
  const log: string[] = []
  return {
    log,
    read(offset: number, data: Uint8Array) {
      log.push(`r${offset}:${data.length}`)
      data.fill(offset)
    },
    write(offset: number, data: Uint8Array) {
      log.push(`w${offset}:${[...data].join(',')}`)
    },
  }
}

function code(f: () => unknown): string | undefined {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(BusError)
    return (e as BusError).code
  }
  return undefined
}

describe('PioBus', () => {
  it('dispatches by base + offset', () => {
    const bus = new PioBus()
    const dev = recorder()
    bus.insert(dev, 0x3f8, 8)
    const data = new Uint8Array(1)
    bus.read(0x3fd, data)
    expect(data[0]).toBe(5)
    bus.write(0x3f8, Uint8Array.of(0x41))
    expect(dev.log).toEqual(['r5:1', 'w0:65'])
  })

  it('reports unhandled accesses and reads all-ones instead of throwing', () => {
    const seen: UnhandledAccess[] = []
    const bus = new PioBus((a) => seen.push(a))
    const data = new Uint8Array(2)
    bus.read(0x80, data)
    bus.write(0x81, Uint8Array.of(1))
    expect([...data]).toEqual([0xff, 0xff])
    expect(seen).toEqual([
      { bus: 'pio', address: 0x80, size: 2, write: false },
      { bus: 'pio', address: 0x81, size: 1, write: true },
    ])
  })

  it('rejects zero size, overflow and overlap with a closed set of codes', () => {
    const bus = new PioBus()
    bus.insert(recorder(), 0x60, 1)
    expect(code(() => bus.insert(recorder(), 0x70, 0))).toBe('ZERO_SIZE')
    expect(code(() => bus.insert(recorder(), 0xfff8, 9))).toBe('OVERFLOW')
    expect(code(() => bus.insert(recorder(), 0x5f, 2))).toBe('OVERLAP')
    expect(code(() => bus.remove(0x61))).toBe('NOT_FOUND')
    expect(() => bus.insert(recorder(), 0x5f, 2)).toThrow(
      'pio window [0x5f, +0x2) overlaps the window at 0x60',
    )
  })

  it('frees ports on remove so they can be reused', () => {
    const bus = new PioBus()
    const a = recorder()
    bus.insert(a, 0x10, 4)
    expect(bus.remove(0x10)).toBe(a)
    expect(bus.lookup(0x12)).toBeUndefined()
    bus.insert(recorder(), 0x12, 1)
    expect(bus.lookup(0x12)?.base).toBe(0x12)
  })
})

describe('MmioBus', () => {
  it('dispatches by binary search and reports misses', () => {
    const seen: UnhandledAccess[] = []
    const bus = new MmioBus((a) => seen.push(a))
    const a = recorder()
    const b = recorder()
    bus.insert(b, 0xd000_2000, 0x1000)
    bus.insert(a, 0xd000_0000, 0x1000)
    const data = new Uint8Array(4)
    expect(bus.read(0xd000_2010, data)).toBe(true)
    expect(b.log).toEqual(['r16:4'])
    expect(bus.read(0xd000_1000, data)).toBe(false)
    expect([...data]).toEqual([0xff, 0xff, 0xff, 0xff])
    expect(bus.write(0xd000_0ffc, Uint8Array.of(1, 2, 3, 4))).toBe(true)
    expect(a.log).toEqual(['w4092:1,2,3,4'])
    expect(seen).toEqual([{ bus: 'mmio', address: 0xd000_1000, size: 4, write: false }])
  })

  it('rejects zero size, overflow, overlap on either side, and unknown removals', () => {
    const bus = new MmioBus()
    bus.insert(recorder(), 0x1000, 0x1000)
    expect(code(() => bus.insert(recorder(), 0x5000, 0))).toBe('ZERO_SIZE')
    expect(code(() => bus.insert(recorder(), 2 ** 52 - 1, 2))).toBe('OVERFLOW')
    expect(code(() => bus.insert(recorder(), 0x1fff, 1))).toBe('OVERLAP')
    expect(code(() => bus.insert(recorder(), 0x800, 0x801))).toBe('OVERLAP')
    expect(code(() => bus.insert(recorder(), 0x0, 0x10000))).toBe('OVERLAP')
    expect(code(() => bus.remove(0x1001))).toBe('NOT_FOUND')
    bus.insert(recorder(), 0x2000, 0x10) // touching is not overlapping
    bus.insert(recorder(), 0x800, 0x800)
    expect(bus.windows().map((w) => w.base)).toEqual([0x800, 0x1000, 0x2000])
  })
})
