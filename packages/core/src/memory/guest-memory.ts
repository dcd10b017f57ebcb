import { type GuestAddress, hex } from '../address.js'
import type { RamBacking } from './ram-backing.js'

/** Why a guest memory access failed: the closed set callers switch on. */
export type GuestMemoryErrorCode =
  /** Part of the range is not backed by RAM or ROM (a hole, MMIO, or beyond the end). */
  | 'UNMAPPED'
  /** The address or length is negative, fractional, or overflows the address space. */
  | 'INVALID_RANGE'
  /** A zero-copy view was asked for a range that is not one contiguous piece of host memory. */
  | 'NOT_CONTIGUOUS'

export class GuestMemoryError extends Error {
  override readonly name = 'GuestMemoryError'
  constructor(
    readonly code: GuestMemoryErrorCode,
    readonly address: number,
    readonly length: number,
  ) {
    const what = {
      UNMAPPED: 'is not backed by guest RAM',
      INVALID_RANGE: 'is not a valid guest range',
      NOT_CONTIGUOUS: 'is not contiguous in host memory',
    }[code]
    super(`guest memory [${hex(address)}, +${hex(length)}) ${what}`)
  }
}

/** How to read and write a fixed-size value in guest memory (little-endian, as on x86). */
export interface ByteCodec<T> {
  readonly size: number
  decode(view: DataView, offset: number): T
  encode(value: T, view: DataView, offset: number): void
}

/**
 * What device and loader code needs from guest memory (rust-vmm vm-memory's GuestMemory): bounds-
 * checked byte and scalar access at a guest address. How RAM is laid out is the provider's business
 * (FlatMemory, AddressSpace). Every method throws a GuestMemoryError for a range that is not
 * entirely RAM/ROM.
 */
export interface GuestMemory {
  read(address: GuestAddress, into: Uint8Array): void
  write(address: GuestAddress, data: Uint8Array): void
  readU8(address: GuestAddress): number
  readU16(address: GuestAddress): number
  readU32(address: GuestAddress): number
  readU64(address: GuestAddress): bigint
  writeU8(address: GuestAddress, value: number): void
  writeU16(address: GuestAddress, value: number): void
  writeU32(address: GuestAddress, value: number): void
  writeU64(address: GuestAddress, value: bigint): void
  readObj<T>(address: GuestAddress, codec: ByteCodec<T>): T
  writeObj<T>(address: GuestAddress, codec: ByteCodec<T>, value: T): void
  /** A zero-copy view, valid until the memory layout changes; throws NOT_CONTIGUOUS if it cannot be one. */
  slice(address: GuestAddress, length: number): Uint8Array
  /** Whether every byte of [address, address + length) is RAM or ROM. */
  isMapped(address: GuestAddress, length: number): boolean
  /** The guest physical ranges backed by host memory (RAM, and ROM marked readOnly), sorted by address. */
  ramRanges(): readonly RamRange[]
  /**
   * Gives whole RAM pages back to the host (a balloon's inflated pages): [address, +length),
   * 4 KiB-aligned, reads as zeroes afterwards and stops costing host memory. Returns false where
   * the host could free the pages but not make them read as zeroes (RamBacking.discard says when).
   * Throws a GuestMemoryError for a range that is not all RAM, or not page-aligned (INVALID_RANGE).
   */
  discard(address: GuestAddress, length: number): boolean
}

/** A range of guest physical addresses backed by host memory. */
export interface RamRange {
  readonly start: number
  readonly size: number
  /** ROM: read-only to the guest. */
  readonly readOnly: boolean
}

/** One RAM/ROM piece of the guest physical map and where its bytes live. */
export interface MemorySegment extends RamRange {
  readonly start: number
  readonly size: number
  readonly backing: RamBacking
  readonly backingOffset: number
  /** Read-only to the guest (ROM); the VMM may still write it, e.g. to load firmware. */
  readonly readOnly: boolean
}

/** The page size discard() works in (x86's, and the balloon's, §5.5.6). */
const PAGE = 4096

const scratch = new DataView(new ArrayBuffer(8))
const scratchBytes = new Uint8Array(scratch.buffer)

/**
 * GuestMemory over a sorted list of non-overlapping segments, shared by both memory models.
 * Lookup is a binary search; the models swap the segment list when their layout changes.
 */
export class SegmentedMemory implements GuestMemory {
  private starts: number[] = []
  private segments: MemorySegment[] = []

  /** Replaces the layout; `segments` must be sorted and non-overlapping (the models guarantee it). */
  protected setSegments(segments: readonly MemorySegment[]): void {
    this.segments = [...segments]
    this.starts = this.segments.map((s) => s.start)
  }

  /** The RAM/ROM layout, sorted by address. */
  get memorySegments(): readonly MemorySegment[] {
    return this.segments
  }

  ramRanges(): readonly RamRange[] {
    return this.segments.map(({ start, size, readOnly }) => ({ start, size, readOnly }))
  }

  private find(address: number): MemorySegment | undefined {
    const starts = this.starts
    let lo = 0
    let hi = starts.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (starts[mid]! <= address) lo = mid + 1
      else hi = mid - 1
    }
    const seg = this.segments[hi]
    return seg !== undefined && address < seg.start + seg.size ? seg : undefined
  }

  /** Calls `visit` for each segment piece of the range, or throws before visiting anything. */
  private each(
    address: number,
    length: number,
    visit: (seg: MemorySegment, offset: number, done: number, n: number) => void,
  ): void {
    if (
      !Number.isInteger(address) ||
      !Number.isInteger(length) ||
      address < 0 ||
      length < 0 ||
      address + length > 2 ** 52
    ) {
      throw new GuestMemoryError('INVALID_RANGE', address, length)
    }
    // Check the whole range first so a failed write leaves memory untouched.
    const pieces: [MemorySegment, number, number, number][] = []
    let done = 0
    while (done < length) {
      const at = address + done
      const seg = this.find(at)
      if (seg === undefined) throw new GuestMemoryError('UNMAPPED', address, length)
      const n = Math.min(length - done, seg.start + seg.size - at)
      pieces.push([seg, at - seg.start, done, n])
      done += n
    }
    for (const p of pieces) visit(...p)
  }

  isMapped(address: GuestAddress, length: number): boolean {
    try {
      this.each(address, length, () => {})
      return true
    } catch {
      return false
    }
  }

  read(address: GuestAddress, into: Uint8Array): void {
    this.each(address, into.length, (seg, off, done, n) =>
      seg.backing.copyOut(seg.backingOffset + off, into.subarray(done, done + n)),
    )
  }

  write(address: GuestAddress, data: Uint8Array): void {
    this.each(address, data.length, (seg, off, done, n) =>
      seg.backing.copyIn(seg.backingOffset + off, data.subarray(done, done + n)),
    )
  }

  discard(address: GuestAddress, length: number): boolean {
    if (address % PAGE !== 0 || length % PAGE !== 0)
      throw new GuestMemoryError('INVALID_RANGE', address, length)
    const pieces: [MemorySegment, number, number][] = []
    this.each(address, length, (seg, off, _done, n) => pieces.push([seg, off, n]))
    // ROM is the VMM's (firmware, tables): a guest cannot give it away.
    if (pieces.some(([seg]) => seg.readOnly)) throw new GuestMemoryError('UNMAPPED', address, length)
    let zeroed = true
    for (const [seg, off, n] of pieces) zeroed = seg.backing.discard(seg.backingOffset + off, n) && zeroed
    return zeroed
  }

  slice(address: GuestAddress, length: number): Uint8Array {
    const seg = this.find(address)
    if (seg === undefined || address + length > seg.start + seg.size) {
      // Distinguish "not RAM at all" from "RAM, but in more than one piece".
      this.each(address, length, () => {})
      throw new GuestMemoryError('NOT_CONTIGUOUS', address, length)
    }
    const view = seg.backing.view(seg.backingOffset + (address - seg.start), length)
    if (view === undefined) throw new GuestMemoryError('NOT_CONTIGUOUS', address, length)
    return view
  }

  private readScratch(address: GuestAddress, size: number): DataView {
    this.read(address, scratchBytes.subarray(0, size))
    return scratch
  }

  readU8(address: GuestAddress): number {
    return this.readScratch(address, 1).getUint8(0)
  }
  readU16(address: GuestAddress): number {
    return this.readScratch(address, 2).getUint16(0, true)
  }
  readU32(address: GuestAddress): number {
    return this.readScratch(address, 4).getUint32(0, true)
  }
  readU64(address: GuestAddress): bigint {
    return this.readScratch(address, 8).getBigUint64(0, true)
  }
  writeU8(address: GuestAddress, value: number): void {
    scratch.setUint8(0, value)
    this.write(address, scratchBytes.subarray(0, 1))
  }
  writeU16(address: GuestAddress, value: number): void {
    scratch.setUint16(0, value, true)
    this.write(address, scratchBytes.subarray(0, 2))
  }
  writeU32(address: GuestAddress, value: number): void {
    scratch.setUint32(0, value, true)
    this.write(address, scratchBytes.subarray(0, 4))
  }
  writeU64(address: GuestAddress, value: bigint): void {
    scratch.setBigUint64(0, value, true)
    this.write(address, scratchBytes.subarray(0, 8))
  }

  readObj<T>(address: GuestAddress, codec: ByteCodec<T>): T {
    const bytes = new Uint8Array(codec.size)
    this.read(address, bytes)
    return codec.decode(new DataView(bytes.buffer), 0)
  }

  writeObj<T>(address: GuestAddress, codec: ByteCodec<T>, value: T): void {
    const bytes = new Uint8Array(codec.size)
    codec.encode(value, new DataView(bytes.buffer), 0)
    this.write(address, bytes)
  }
}
