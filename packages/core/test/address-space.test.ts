import { describe, expect, it } from 'vitest'
import { guestAddress } from '../src/address.js'
import type { MmioDevice } from '../src/bus/device.js'
import {
  AddressSpace,
  type FlatRange,
  flatten,
  MemoryRegion,
  type SlotChanges,
} from '../src/memory/address-space.js'
import { RamBacking } from '../src/memory/ram-backing.js'

const a = guestAddress
const describeView = (ranges: readonly FlatRange[]) =>
  ranges.map((r) => `${r.region.name}@${r.start.toString(16)}-${r.end.toString(16)}+${r.offset.toString(16)}`)

function device(tag: number): MmioDevice & { writes: number[] } {
  const writes: number[] = []
  return {
    writes,
    read: (offset, data) => data.fill(tag + offset),
    write: (offset) => void writes.push(offset),
  }
}

describe('flatten', () => {
  it('lets the higher priority win where regions overlap and shows the lower one around it', () => {
    const root = MemoryRegion.container('system', 0x10000)
    const ram = MemoryRegion.ram('ram', RamBacking.allocate(0x8000), 0, 0x8000)
    const mmio = MemoryRegion.mmio('dev', device(0), 0x1000)
    root.addSubregion(ram, 0)
    root.addSubregion(mmio, 0x2000, 1)
    expect(describeView(flatten(root))).toEqual(['ram@0-2000+0', 'dev@2000-3000+0', 'ram@3000-8000+3000'])
  })

  it('breaks priority ties in favour of the region added last', () => {
    const root = MemoryRegion.container('system', 0x1000)
    root.addSubregion(MemoryRegion.mmio('first', device(0), 0x800), 0)
    root.addSubregion(MemoryRegion.mmio('second', device(0), 0x800), 0x400)
    expect(describeView(flatten(root))).toEqual(['first@0-400+0', 'second@400-c00+0'])
  })

  it('renders aliases and nested containers at their offsets, clipped to the container', () => {
    const backing = RamBacking.allocate(0x4000)
    const ram = MemoryRegion.ram('ram', backing, 0, 0x4000)
    const root = MemoryRegion.container('system', 0x20000)
    const low = MemoryRegion.container('low', 0x4000)
    low.addSubregion(ram, 0)
    root.addSubregion(low, 0)
    // The BIOS-style mirror: the top 0x1000 bytes of RAM seen again at 0x1f000.
    root.addSubregion(MemoryRegion.alias('mirror', ram, 0x3000, 0x1000), 0x1f000)
    expect(describeView(flatten(root))).toEqual(['ram@0-4000+0', 'ram@1f000-20000+3000'])
    const space = new AddressSpace(root)
    space.writeU32(a(0x3ffc), 0xabcd1234)
    expect(space.readU32(a(0x1fffc))).toBe(0xabcd1234)
  })
})

describe('AddressSpace', () => {
  function machine() {
    const backing = RamBacking.allocate(0x10000)
    const root = MemoryRegion.container('system', 2 ** 32)
    const ram = MemoryRegion.ram('ram', backing, 0, 0x10000)
    const bar = MemoryRegion.mmio('bar', device(0x40), 0x1000)
    root.addSubregion(ram, 0)
    const changes: SlotChanges[] = []
    const space = new AddressSpace(root, (c) => changes.push(c))
    return { root, ram, bar, space, changes, backing }
  }

  const slots = (c: SlotChanges) => ({
    removed: c.removed.map((s) => [s.slot, s.guestAddress, s.size]),
    added: c.added.map((s) => [s.slot, s.guestAddress, s.size, s.backingOffset]),
  })

  it('reports the initial slots and splits RAM when a BAR is placed over it', () => {
    const { root, bar, space, changes } = machine()
    expect(changes.map(slots)).toEqual([{ removed: [], added: [[0, 0, 0x10000, 0]] }])
    root.addSubregion(bar, 0x4000, 1)
    expect(slots(changes[1]!)).toEqual({
      removed: [[0, 0, 0x10000]],
      added: [
        [0, 0, 0x4000, 0],
        [1, 0x5000, 0xb000, 0x5000],
      ],
    })
    const data = new Uint8Array(1)
    expect(space.mmioRead(0x4010, data)).toBe(true)
    expect(data[0]).toBe(0x50)
    expect(space.isMapped(a(0x4000), 1)).toBe(false)
  })

  it('re-flattens when a region moves or is toggled, emitting only the slots that change', () => {
    const { root, bar, space, changes } = machine()
    root.addSubregion(bar, 0x4000, 1)
    changes.length = 0
    bar.setAddress(0xe000_0000) // the guest programs the BAR above RAM
    expect(changes.map(slots)).toEqual([
      {
        removed: [
          [0, 0, 0x4000],
          [1, 0x5000, 0xb000],
        ],
        added: [[1, 0, 0x10000, 0]],
      },
    ])
    expect(space.mmioRead(0xe000_0000, new Uint8Array(1))).toBe(true)
    expect(space.mmioRead(0x4000, new Uint8Array(1))).toBe(false)
    changes.length = 0
    bar.setEnabled(false) // memory decoding off: no slot changes, MMIO gone
    expect(changes).toEqual([])
    const data = new Uint8Array(2)
    expect(space.mmioRead(0xe000_0000, data)).toBe(false)
    expect([...data]).toEqual([0xff, 0xff])
    bar.setEnabled(true)
    expect(space.mmioWrite(0xe000_0008, Uint8Array.of(1))).toBe(true)
  })

  it('treats ROM as read-only slots that the VMM can still load', () => {
    const root = MemoryRegion.container('system', 0x100000)
    const rom = MemoryRegion.rom('bios', RamBacking.allocate(0x10000), 0, 0x10000)
    root.addSubregion(rom, 0xf0000)
    const space = new AddressSpace(root)
    space.writeU8(a(0xffff0), 0xea)
    expect(space.readU8(a(0xffff0))).toBe(0xea)
    expect(space.memorySlots.map((s) => [s.guestAddress, s.readOnly])).toEqual([[0xf0000, true]])
  })

  it('rejects regions that do not fit and non-container parents', () => {
    const { root, ram, bar } = machine()
    expect(() => root.addSubregion(MemoryRegion.mmio('x', device(0), 0x1000), 2 ** 32 - 0x800)).toThrow(
      'does not fit',
    )
    expect(() => ram.addSubregion(bar, 0)).toThrow('ram region, not a container')
    expect(() => root.addSubregion(ram, 0x1000)).toThrow('already inside system')
  })
})
