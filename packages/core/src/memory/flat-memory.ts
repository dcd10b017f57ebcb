import { GUEST_ADDRESS_LIMIT, type GuestAddress, guestAddress, hex } from '../address.js'
import { type MemorySegment, SegmentedMemory } from './guest-memory.js'
import type { RamBacking } from './ram-backing.js'

/** A hole in guest RAM, left for MMIO (e.g. the 32-bit PCI window below 4 GiB). */
export interface MemoryHole {
  readonly base: number
  readonly size: number
}

/**
 * The simple memory model: RAM laid out from address 0 upwards, skipping holes, all from one
 * backing. Guest RAM that would fall in a hole moves above it, as firmware does with the 3-4 GiB
 * PCI hole, so the guest always gets `backing.size` bytes of RAM.
 */
export class FlatMemory extends SegmentedMemory {
  constructor(
    readonly backing: RamBacking,
    holes: readonly MemoryHole[] = [],
  ) {
    super()
    const sorted = [...holes].sort((a, b) => a.base - b.base)
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!
      if (sorted[i]!.base < prev.base + prev.size) {
        throw new RangeError(`memory holes at ${hex(prev.base)} and ${hex(sorted[i]!.base)} overlap`)
      }
    }
    const segments: MemorySegment[] = []
    let guest = 0
    let placed = 0
    for (const hole of sorted) {
      if (placed === backing.size) break
      const n = Math.min(hole.base - guest, backing.size - placed)
      if (n > 0) segments.push({ start: guest, size: n, backing, backingOffset: placed, readOnly: false })
      placed += Math.max(n, 0)
      guest = Math.max(guest, hole.base + hole.size)
    }
    if (placed < backing.size) {
      segments.push({
        start: guest,
        size: backing.size - placed,
        backing,
        backingOffset: placed,
        readOnly: false,
      })
    }
    const last = segments.at(-1)!
    if (last.start + last.size > GUEST_ADDRESS_LIMIT)
      throw new RangeError('guest RAM runs past the 52-bit address space')
    this.setSegments(segments)
  }

  /** The first address above all RAM. */
  get end(): GuestAddress {
    const last = this.memorySegments.at(-1)!
    return guestAddress(last.start + last.size)
  }
}
