import { type GuestAddress, guestAddress, hex } from '../address.js'
import type { MmioDevice } from '../bus/device.js'
import { type MemorySegment, SegmentedMemory } from './guest-memory.js'
import type { RamBacking } from './ram-backing.js'

// The stacked memory model (QEMU's MemoryRegion / StratoVirt's address_space): a tree of regions
// with priorities that may overlap, flattened into the non-overlapping view the guest sees. RAM and
// ROM pieces of that view become hypervisor memory slots; MMIO pieces become the dispatch table.
// Moving or toggling a region (a PCI BAR being programmed) re-flattens and reports slot changes.

export type RegionKind = 'ram' | 'rom' | 'mmio' | 'alias' | 'container'

interface Placement {
  parent: MemoryRegion
  address: number
  priority: number
  /** Insertion order, to break priority ties: the later region wins, as in QEMU. */
  order: number
}

let nextOrder = 0

export class MemoryRegion {
  private readonly children: MemoryRegion[] = []
  private placement: Placement | undefined
  private enabledFlag = true
  /** Set on the root by AddressSpace so changes anywhere in the tree re-flatten. */
  private onChange: (() => void) | undefined

  private constructor(
    readonly name: string,
    readonly kind: RegionKind,
    readonly size: number,
    readonly ram?: { backing: RamBacking; offset: number },
    readonly device?: MmioDevice,
    readonly alias?: { target: MemoryRegion; offset: number },
  ) {
    if (!Number.isInteger(size) || size <= 0)
      throw new RangeError(`region ${name}: size ${size} is not positive`)
    if (ram && ram.offset + size > ram.backing.size)
      throw new RangeError(`region ${name} runs past its backing`)
    if (alias && alias.offset + size > alias.target.size)
      throw new RangeError(`alias ${name} runs past ${alias.target.name}`)
  }

  static container(name: string, size: number): MemoryRegion {
    return new MemoryRegion(name, 'container', size)
  }
  static ram(name: string, backing: RamBacking, offset: number, size: number): MemoryRegion {
    return new MemoryRegion(name, 'ram', size, { backing, offset })
  }
  /** Guest-read-only memory; the VMM loads it through GuestMemory. */
  static rom(name: string, backing: RamBacking, offset: number, size: number): MemoryRegion {
    return new MemoryRegion(name, 'rom', size, { backing, offset })
  }
  static mmio(name: string, device: MmioDevice, size: number): MemoryRegion {
    return new MemoryRegion(name, 'mmio', size, undefined, device)
  }
  /** [offset, offset + size) of `target`, seen again wherever the alias is placed. */
  static alias(name: string, target: MemoryRegion, offset: number, size: number): MemoryRegion {
    return new MemoryRegion(name, 'alias', size, undefined, undefined, { target, offset })
  }

  get address(): number | undefined {
    return this.placement?.address
  }
  /** Priority within the parent container (0 when not placed). */
  get priority(): number {
    return this.placement?.priority ?? 0
  }
  /** When it was placed; among equal priorities the later region wins, as in QEMU. */
  get placementOrder(): number {
    return this.placement?.order ?? 0
  }
  get enabled(): boolean {
    return this.enabledFlag
  }
  get subregions(): readonly MemoryRegion[] {
    return this.children
  }

  /** Places `child` at `address` inside this container; higher priority wins where regions overlap. */
  addSubregion(child: MemoryRegion, address: number, priority = 0): void {
    if (this.kind !== 'container') throw new Error(`${this.name} is a ${this.kind} region, not a container`)
    if (child.placement)
      throw new Error(`region ${child.name} is already inside ${child.placement.parent.name}`)
    if (!Number.isInteger(address) || address < 0 || address + child.size > this.size) {
      throw new RangeError(`region ${child.name} at ${hex(address)} does not fit in ${this.name}`)
    }
    child.placement = { parent: this, address, priority, order: nextOrder++ }
    this.children.push(child)
    this.changed()
  }

  removeSubregion(child: MemoryRegion): void {
    const i = this.children.indexOf(child)
    if (i < 0) throw new Error(`region ${child.name} is not inside ${this.name}`)
    this.children.splice(i, 1)
    child.placement = undefined
    this.changed()
  }

  /** Moves this region within its container (a BAR being reprogrammed). */
  setAddress(address: number): void {
    const p = this.placement
    if (!p) throw new Error(`region ${this.name} is not placed`)
    if (!Number.isInteger(address) || address < 0 || address + this.size > p.parent.size) {
      throw new RangeError(`region ${this.name} at ${hex(address)} does not fit in ${p.parent.name}`)
    }
    p.address = address
    this.changed()
  }

  setEnabled(enabled: boolean): void {
    if (this.enabledFlag === enabled) return
    this.enabledFlag = enabled
    this.changed()
  }

  /** @internal */
  watch(onChange: (() => void) | undefined): void {
    this.onChange = onChange
  }

  private changed(): void {
    let r: MemoryRegion = this
    while (r.placement) r = r.placement.parent
    r.onChange?.()
  }
}

/** One piece of the flattened view: [start, end) shows `region` from `offset`. */
export interface FlatRange {
  readonly start: number
  readonly end: number
  readonly region: MemoryRegion
  readonly offset: number
}

/**
 * Flattens `root` placed at 0 into sorted, non-overlapping ranges. Children are rendered from the
 * highest priority down, each only into the gaps left by those before it, so the winner at every
 * address is the highest-priority enabled leaf there. Containers are transparent where they have
 * no child.
 */
export function flatten(root: MemoryRegion): FlatRange[] {
  const out: FlatRange[] = []
  render(root, 0, 0, root.size, 0, out)
  out.sort((a, b) => a.start - b.start)
  // Merge neighbours that continue the same region, so one RAM region is one slot.
  const merged: FlatRange[] = []
  for (const r of out) {
    const last = merged.at(-1)
    if (
      last &&
      last.end === r.start &&
      last.region === r.region &&
      last.offset + (last.end - last.start) === r.offset
    ) {
      merged[merged.length - 1] = { ...last, end: r.end }
    } else merged.push(r)
  }
  return merged
}

/** Renders `region` whose byte 0 is at `base`, clipped to [lo, hi), reading it from `skip` bytes in. */
function render(
  region: MemoryRegion,
  base: number,
  lo: number,
  hi: number,
  skip: number,
  out: FlatRange[],
): void {
  if (!region.enabled) return
  const start = Math.max(lo, base + skip)
  const end = Math.min(hi, base + region.size)
  if (start >= end) return
  if (region.kind === 'alias') {
    const { target, offset } = region.alias!
    // The alias shows target bytes [offset, offset + size); target byte 0 sits at base - offset.
    render(target, base - offset, start, end, offset, out)
    return
  }
  if (region.kind === 'container') {
    const kids = [...region.subregions].sort(
      (a, b) => b.priority - a.priority || b.placementOrder - a.placementOrder,
    )
    for (const child of kids) render(child, base + child.address!, start, end, 0, out)
    return
  }
  insertIntoGaps(out, start, end, (s, e) => ({ start: s, end: e, region, offset: s - base }))
}

/** Adds the parts of [start, end) that no range in `out` covers yet. */
function insertIntoGaps(
  out: FlatRange[],
  start: number,
  end: number,
  make: (s: number, e: number) => FlatRange,
): void {
  const taken = out.filter((r) => r.end > start && r.start < end).sort((a, b) => a.start - b.start)
  let at = start
  for (const t of taken) {
    if (t.start > at) out.push(make(at, t.start))
    at = Math.max(at, t.end)
  }
  if (at < end) out.push(make(at, end))
}

/** A change to the hypervisor's memory slots after re-flattening: remove these, then add those. */
export interface SlotChanges {
  readonly removed: readonly SlotRange[]
  readonly added: readonly SlotRange[]
}

export interface SlotRange {
  readonly slot: number
  readonly guestAddress: GuestAddress
  readonly size: number
  readonly backing: RamBacking
  readonly backingOffset: number
  readonly readOnly: boolean
}

/**
 * A root region seen as guest memory. Keeps the flat view current, answers GuestMemory calls for
 * RAM/ROM, dispatches MMIO by binary search, and tells its listener which memory slots to remove
 * and add whenever the view changes.
 */
export class AddressSpace extends SegmentedMemory {
  private view: FlatRange[] = []
  private mmioStarts: number[] = []
  private mmio: FlatRange[] = []
  private slots: SlotRange[] = []
  private freeSlots: number[] = []
  private nextSlot = 0

  constructor(
    readonly root: MemoryRegion,
    private readonly onSlots: (changes: SlotChanges) => void = () => {},
  ) {
    super()
    if (root.kind !== 'container') throw new Error('the root of an address space must be a container')
    root.watch(() => this.update())
    this.update()
  }

  /** The current flat view, sorted. */
  get ranges(): readonly FlatRange[] {
    return this.view
  }

  /** The memory slots in use, sorted by guest address. */
  get memorySlots(): readonly SlotRange[] {
    return this.slots
  }

  private update(): void {
    this.view = flatten(this.root)
    const segments: MemorySegment[] = []
    this.mmio = []
    for (const r of this.view) {
      if (r.region.kind === 'mmio') this.mmio.push(r)
      else {
        const ram = r.region.ram!
        segments.push({
          start: r.start,
          size: r.end - r.start,
          backing: ram.backing,
          backingOffset: ram.offset + r.offset,
          readOnly: r.region.kind === 'rom',
        })
      }
    }
    this.mmioStarts = this.mmio.map((r) => r.start)
    this.setSegments(segments)
    this.diffSlots(segments)
  }

  private diffSlots(segments: readonly MemorySegment[]): void {
    const key = (s: {
      start?: number
      guestAddress?: number
      size: number
      backingOffset: number
      readOnly: boolean
    }) => `${s.start ?? s.guestAddress}:${s.size}:${s.backingOffset}:${s.readOnly}`
    const wanted = new Map(segments.map((s) => [key(s), s]))
    const kept: SlotRange[] = []
    const removed: SlotRange[] = []
    for (const s of this.slots) {
      const w = wanted.get(key(s))
      if (w && w.backing === s.backing) {
        kept.push(s)
        wanted.delete(key(s))
      } else removed.push(s)
    }
    for (const r of removed) this.freeSlots.push(r.slot)
    const added: SlotRange[] = [...wanted.values()].map((s) => ({
      slot: this.freeSlots.pop() ?? this.nextSlot++,
      guestAddress: guestAddress(s.start),
      size: s.size,
      backing: s.backing,
      backingOffset: s.backingOffset,
      readOnly: s.readOnly,
    }))
    this.slots = [...kept, ...added].sort((a, b) => a.guestAddress - b.guestAddress)
    if (removed.length > 0 || added.length > 0) this.onSlots({ removed, added })
  }

  private findMmio(address: number): FlatRange | undefined {
    const s = this.mmioStarts
    let lo = 0
    let hi = s.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (s[mid]! <= address) lo = mid + 1
      else hi = mid - 1
    }
    const r = this.mmio[hi]
    return r && address < r.end ? r : undefined
  }

  /** Dispatches an MMIO read; false (data all-ones) where no MMIO region is mapped. */
  mmioRead(address: number, data: Uint8Array): boolean {
    const r = this.findMmio(address)
    if (!r) {
      data.fill(0xff)
      return false
    }
    r.region.device!.read(r.offset + (address - r.start), data)
    return true
  }

  /** Dispatches an MMIO write; false where no MMIO region is mapped. */
  mmioWrite(address: number, data: Uint8Array): boolean {
    const r = this.findMmio(address)
    if (!r) return false
    r.region.device!.write(r.offset + (address - r.start), data)
    return true
  }

  /** What the guest sees at `address`, for debugging and tests. */
  resolve(address: GuestAddress): FlatRange | undefined {
    return this.view.find((r) => address >= r.start && address < r.end)
  }
}
