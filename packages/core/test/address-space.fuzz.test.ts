// The property that lived in address-space.test.ts, on the fuzz helper so `pnpm fuzz` runs it at 100,000 (issue 13).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { guestAddress } from '../src/address.js'
import type { MmioDevice } from '../src/bus/device.js'
import { type FlatRange, flatten, MemoryRegion } from '../src/memory/address-space.js'
import { RamBacking } from '../src/memory/ram-backing.js'
import { fuzz } from '../src/testing/fuzz.js'

const _a = guestAddress
const _describeView = (ranges: readonly FlatRange[]) =>
  ranges.map((r) => `${r.region.name}@${r.start.toString(16)}-${r.end.toString(16)}+${r.offset.toString(16)}`)

function device(tag: number): MmioDevice & { writes: number[] } {
  const writes: number[] = []
  return {
    writes,
    read: (offset, data) => data.fill(tag + offset),
    write: (offset) => void writes.push(offset),
  }
}

describe('flatten (fast-check)', () => {
  it('never overlaps and agrees with a per-address lookup by priority', async () => {
    const region = fc.record({
      kind: fc.constantFrom('ram', 'mmio', 'alias'),
      address: fc.integer({ min: 0, max: 200 }),
      size: fc.integer({ min: 1, max: 64 }),
      priority: fc.integer({ min: -2, max: 2 }),
      enabled: fc.boolean(),
    })
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.array(region, { minLength: 1, maxLength: 12 }), (specs) => {
            const root = MemoryRegion.container('root', 264)
            const backing = RamBacking.allocate(64)
            const target = MemoryRegion.ram('target', backing, 0, 64)
            const placed = specs.map((s, i) => {
              const r =
                s.kind === 'ram'
                  ? MemoryRegion.ram(`r${i}`, backing, 0, s.size)
                  : s.kind === 'mmio'
                    ? MemoryRegion.mmio(`r${i}`, device(i), s.size)
                    : MemoryRegion.alias(`r${i}`, target, 64 - s.size, s.size)
              root.addSubregion(r, s.address, s.priority)
              r.setEnabled(s.enabled)
              return { r, ...s, order: i }
            })
            const view = flatten(root)
            for (let i = 1; i < view.length; i++)
              expect(view[i]!.start).toBeGreaterThanOrEqual(view[i - 1]!.end)
            for (let addr = 0; addr < 264; addr++) {
              const winner = placed
                .filter((p) => p.enabled && addr >= p.address && addr < p.address + p.size)
                .sort((x, y) => y.priority - x.priority || y.order - x.order)[0]
              const hit = view.find((v) => addr >= v.start && addr < v.end)
              if (!winner) expect(hit).toBeUndefined()
              else {
                // An alias resolves to the region it shows.
                const expected = winner.kind === 'alias' ? target : winner.r
                const offset =
                  winner.kind === 'alias' ? 64 - winner.size + (addr - winner.address) : addr - winner.address
                expect(hit?.region).toBe(expected)
                expect(hit!.offset + (addr - hit!.start)).toBe(offset)
              }
            }
          }),
          p,
        ),
      100,
    )
  })
})
