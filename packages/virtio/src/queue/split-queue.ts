import { type GuestAddress, type GuestMemory, guestAddress, type SavedState } from '@vmm/core'
import { badRange, VirtqueueError } from './errors.js'

/** Descriptor flags (§2.7.5). */
export const DescFlags = { NEXT: 1, WRITE: 2, INDIRECT: 4 } as const

/** The largest split queue (§2.7: Queue Size is a power of 2, at most 32768). */
export const MAX_QUEUE_SIZE = 32768

const DESC_SIZE = 16
const AVAIL_F_NO_INTERRUPT = 1
/** Addresses above this are outside any guest (core's 52-bit guest physical space). */
const ADDRESS_LIMIT = 2 ** 52
const U32_MAX = 0xffff_ffff

/** One buffer of a chain: guest bytes [address, address + length), already checked to be RAM. */
export interface GuestBuffer {
  readonly address: GuestAddress
  readonly length: number
}

/**
 * A validated descriptor chain (§2.7.5): the device-readable buffers, then the device-writable ones,
 * indirect tables already flattened. Every buffer lies in guest RAM when the chain is popped.
 */
export class DescriptorChain {
  constructor(
    /** The head index, which goes back in the used ring. */
    readonly head: number,
    readonly readable: readonly GuestBuffer[],
    readonly writable: readonly GuestBuffer[],
    readonly readableLength: number,
    readonly writableLength: number,
  ) {}
}

// A full barrier: a sequentially consistent store is an `xchg` on x86-64, which orders the earlier
// stores before the later loads. The event-index handshake (§2.7.10) needs exactly that between
// publishing the used index and reading used_event, as Linux's virtio_mb() does on its side.
const fenceCell = new Int32Array(new SharedArrayBuffer(4))
export function memoryFence(): void {
  Atomics.store(fenceCell, 0, 0)
}

/** SplitQueue's saved state. */
export interface SplitQueueState {
  size: number
  ready: boolean
  descTable: number
  availRing: number
  usedRing: number
  nextAvail: number
  nextUsed: number
  signalledUsed: number
}

/**
 * A split virtqueue, device side (§2.7). It holds the ring addresses the driver configured and the
 * device's own indices; guest memory is passed to each call (rust-vmm virtio-queue's QueueT), so a
 * queue never outlives or caches a view of the guest. Everything the guest wrote is treated as
 * hostile: a bad ring or chain throws a VirtqueueError and never reads or writes outside RAM.
 */
export class SplitQueue {
  size: number
  ready = false
  descTable = 0
  availRing = 0
  usedRing = 0
  /** VIRTIO_F_RING_EVENT_IDX negotiated (§2.7.10). */
  eventIdx = false
  /** VIRTIO_F_RING_INDIRECT_DESC negotiated (§2.7.5.3). */
  indirect = false
  private nextAvail = 0
  private nextUsed = 0
  /** The used index when the driver was last notified, for event suppression. */
  private signalledUsed = 0

  constructor(readonly maxSize: number) {
    if (!isQueueSize(maxSize)) throw new RangeError(`queue size ${maxSize} is not a power of 2 up to 32768`)
    this.size = maxSize
  }

  /** The driver's set-up and the device's indices, for a snapshot (eventIdx/indirect follow the features). */
  saveState(): SplitQueueState {
    const { size, ready, descTable, availRing, usedRing, nextAvail, nextUsed, signalledUsed } = this
    return { size, ready, descTable, availRing, usedRing, nextAvail, nextUsed, signalledUsed }
  }

  /**
   * Takes a saved state, checked field by field first (it is untrusted, like a guest's register
   * writes); the rings themselves are checked by validate() when the device is activated.
   */
  restoreState(s: SavedState): void {
    s.only('size', 'ready', 'descTable', 'availRing', 'usedRing', 'nextAvail', 'nextUsed', 'signalledUsed')
    const size = s.int('size', 1, this.maxSize)
    if (!isQueueSize(size)) s.refuse('size', `must be a power of 2, got ${size}`)
    const v = {
      ready: s.bool('ready'),
      descTable: s.int('descTable', 0, ADDRESS_LIMIT),
      availRing: s.int('availRing', 0, ADDRESS_LIMIT),
      usedRing: s.int('usedRing', 0, ADDRESS_LIMIT),
      nextAvail: s.int('nextAvail', 0, 0xffff),
      nextUsed: s.int('nextUsed', 0, 0xffff),
      signalledUsed: s.int('signalledUsed', 0, 0xffff),
    }
    this.size = size
    Object.assign(this, v)
  }

  /** Back to the state after a device reset (§2.1.2 / §4.2.3.1). */
  reset(): void {
    this.size = this.maxSize
    this.ready = false
    this.descTable = this.availRing = this.usedRing = 0
    this.eventIdx = this.indirect = false
    this.nextAvail = this.nextUsed = this.signalledUsed = 0
  }

  /** Checks size, alignment and that all three rings are in RAM; throws RING_ADDRESS otherwise. */
  validate(memory: GuestMemory): void {
    const n = this.size
    const areas: [string, number, number, number][] = [
      ['descriptor table', this.descTable, DESC_SIZE * n, 16],
      ['available ring', this.availRing, 6 + 2 * n, 2],
      ['used ring', this.usedRing, 6 + 8 * n, 4],
    ]
    if (!isQueueSize(n) || n > this.maxSize)
      throw new VirtqueueError('RING_ADDRESS', `queue size ${n} is not a power of 2 up to ${this.maxSize}`)
    for (const [what, address, length, align] of areas) {
      if (
        address % align !== 0 ||
        address + length > ADDRESS_LIMIT ||
        !memory.isMapped(guestAddress(address), length)
      )
        throw new VirtqueueError(
          'RING_ADDRESS',
          `${what} ${badRange(address, length)} is not ${align}-byte aligned guest RAM`,
        )
    }
  }

  /** The driver's avail index (§2.7.6 avail->idx): how many buffers it has made available, mod 2^16. */
  availIndex(memory: GuestMemory): number {
    return memory.readU16(guestAddress(this.availRing + 2))
  }

  /** Whether the driver has made buffers available that the device has not taken yet. */
  hasAvailable(memory: GuestMemory): boolean {
    return memory.readU16(guestAddress(this.availRing + 2)) !== this.nextAvail
  }

  /**
   * Takes the next available chain, or undefined when there is none. With EVENT_IDX it also asks
   * the driver to notify at the next buffer (avail_event, §2.7.10), re-checking afterwards so a
   * buffer made available meanwhile is not missed.
   */
  pop(memory: GuestMemory): DescriptorChain | undefined {
    let pending = this.pending(memory)
    if (pending === 0) {
      if (!this.eventIdx) return undefined
      memory.writeU16(guestAddress(this.usedRing + 4 + 8 * this.size), this.nextAvail)
      memoryFence()
      pending = this.pending(memory)
      if (pending === 0) return undefined
    }
    const slot = this.nextAvail % this.size
    const head = memory.readU16(guestAddress(this.availRing + 4 + 2 * slot))
    this.nextAvail = (this.nextAvail + 1) & 0xffff
    if (this.eventIdx) memory.writeU16(guestAddress(this.usedRing + 4 + 8 * this.size), this.nextAvail)
    return this.walk(memory, head)
  }

  /** Returns `head` to the driver with `length` bytes written into its writable buffers (§2.7.8). */
  addUsed(memory: GuestMemory, head: number, length: number): void {
    const slot = this.nextUsed % this.size
    const elem = this.usedRing + 4 + 8 * slot
    memory.writeU32(guestAddress(elem), head)
    memory.writeU32(guestAddress(elem + 4), length)
    // The element must be visible before the index that publishes it; x86 keeps stores in order.
    this.nextUsed = (this.nextUsed + 1) & 0xffff
    memory.writeU16(guestAddress(this.usedRing + 2), this.nextUsed)
  }

  /**
   * Whether the driver wants an interrupt for the buffers used since the last one (§2.7.7, §2.7.10):
   * used_event with EVENT_IDX, else the NO_INTERRUPT flag. Calling it marks them as signalled.
   */
  needsInterrupt(memory: GuestMemory): boolean {
    const newIdx = this.nextUsed
    const old = this.signalledUsed
    if (newIdx === old) return false
    this.signalledUsed = newIdx
    memoryFence()
    if (this.eventIdx) {
      const usedEvent = memory.readU16(guestAddress(this.availRing + 4 + 2 * this.size))
      // vring_need_event(): did new_idx step past used_event since the last signal?
      return ((newIdx - usedEvent - 1) & 0xffff) < ((newIdx - old) & 0xffff)
    }
    return (memory.readU16(guestAddress(this.availRing)) & AVAIL_F_NO_INTERRUPT) === 0
  }

  /**
   * The chain at descriptor `head`, read again from the descriptor table: for a device restored
   * from a snapshot that had taken this chain (popped, not yet used) and holds it for later, e.g. a
   * receive buffer waiting for a frame. The head is untrusted (it comes from a file) and checked as
   * every chain is; a bad one throws a VirtqueueError.
   */
  chainAt(memory: GuestMemory, head: number): DescriptorChain {
    if (!Number.isInteger(head) || head < 0 || head >= this.size)
      throw new VirtqueueError('DESCRIPTOR_INDEX', `descriptor index ${head} is not below ${this.size}`)
    return this.walk(memory, head)
  }

  private pending(memory: GuestMemory): number {
    const availIdx = memory.readU16(guestAddress(this.availRing + 2))
    const pending = (availIdx - this.nextAvail) & 0xffff
    if (pending > this.size)
      throw new VirtqueueError(
        'AVAIL_INDEX',
        `available index ${availIdx} is ${pending} ahead of the device, more than the queue size ${this.size}`,
      )
    return pending
  }

  /** Follows the chain from `head`, flattening an indirect table, checking every rule on the way. */
  private walk(memory: GuestMemory, head: number): DescriptorChain {
    const readable: GuestBuffer[] = []
    const writable: GuestBuffer[] = []
    let readableLength = 0
    let writableLength = 0
    // §2.7.5.3.1: the whole chain, indirect descriptors included, fits in the queue size; counting
    // against it also catches loops.
    let budget = this.size
    let table = this.descTable
    let tableSize = this.size
    let inIndirect = false
    let index = head
    const desc = new DataView(new ArrayBuffer(DESC_SIZE))
    const descBytes = new Uint8Array(desc.buffer)
    for (;;) {
      if (index >= tableSize)
        throw new VirtqueueError('DESCRIPTOR_INDEX', `descriptor index ${index} is not below ${tableSize}`)
      if (budget-- === 0)
        throw new VirtqueueError('CHAIN_TOO_LONG', `chain from head ${head} is longer than ${this.size}`)
      memory.read(guestAddress(table + DESC_SIZE * index), descBytes)
      const low = desc.getUint32(0, true)
      const high = desc.getUint32(4, true)
      const length = desc.getUint32(8, true)
      const flags = desc.getUint16(12, true)
      const next = desc.getUint16(14, true)
      const address = high * 2 ** 32 + low
      if (address + length > ADDRESS_LIMIT)
        throw new VirtqueueError(
          'BAD_ADDRESS',
          `descriptor ${index} ${badRange(address, length)} is outside guest memory`,
        )

      if (flags & DescFlags.INDIRECT) {
        // §2.7.5.3.1: only with the feature, never inside a table, never with NEXT, whole descriptors.
        if (
          !this.indirect ||
          inIndirect ||
          flags & DescFlags.NEXT ||
          length === 0 ||
          length % DESC_SIZE !== 0
        )
          throw new VirtqueueError('BAD_INDIRECT', `descriptor ${index} is not a valid indirect descriptor`)
        if (!memory.isMapped(guestAddress(address), length))
          throw new VirtqueueError(
            'BAD_ADDRESS',
            `indirect table ${badRange(address, length)} is not guest RAM`,
          )
        inIndirect = true
        table = address
        tableSize = length / DESC_SIZE
        index = 0
        continue
      }

      if (length > 0) {
        if (!memory.isMapped(guestAddress(address), length))
          throw new VirtqueueError(
            'BAD_ADDRESS',
            `descriptor ${index} ${badRange(address, length)} is not guest RAM`,
          )
        const buffer = { address: guestAddress(address), length }
        if (flags & DescFlags.WRITE) {
          writableLength += length
          if (writableLength > U32_MAX)
            throw new VirtqueueError('LENGTH_OVERFLOW', `chain from head ${head} writes more than 4 GiB`)
          writable.push(buffer)
        } else {
          // §2.7.4.2: every device-readable buffer comes before every device-writable one.
          if (writable.length > 0)
            throw new VirtqueueError('DIRECTION', `descriptor ${index} is readable after a writable one`)
          readableLength += length
          if (readableLength > U32_MAX)
            throw new VirtqueueError('LENGTH_OVERFLOW', `chain from head ${head} reads more than 4 GiB`)
          readable.push(buffer)
        }
      }
      if (!(flags & DescFlags.NEXT)) break
      index = next
    }
    return new DescriptorChain(head, readable, writable, readableLength, writableLength)
  }
}

function isQueueSize(n: number): boolean {
  return Number.isInteger(n) && n > 0 && n <= MAX_QUEUE_SIZE && (n & (n - 1)) === 0
}
