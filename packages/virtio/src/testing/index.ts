// @vmm/virtio/testing: a driver-side fake for testing virtio devices without a guest. It plays the
// guest driver over plain-ArrayBuffer guest memory: negotiates through the virtio-mmio registers,
// lays out split queues, posts chains (direct or indirect) and reads the used ring back.
import {
  FlatMemory,
  type GuestAddress,
  type GuestMemory,
  guestAddress,
  type InterruptLine,
  type MmioDevice,
  RamBacking,
} from '@vmm/core'
import { MmioReg } from '../mmio/transport.js'
import { DescFlags } from '../queue/split-queue.js'
import { Feature, Status } from '../spec.js'

/** Guest memory over a plain ArrayBuffer, `size` bytes from address 0. */
export function testMemory(size = 1 << 20): FlatMemory {
  return new FlatMemory(RamBacking.allocate(size))
}

/** An InterruptLine that remembers its level and counts rising edges. */
export class TestInterruptLine implements InterruptLine {
  level = false
  edges = 0
  constructor(readonly irq = 5) {}
  setLevel(high: boolean): void {
    if (high && !this.level) this.edges++
    this.level = high
  }
  pulse(): void {
    this.edges++
  }
}

/** The most buffers the fake driver puts in one indirect table. */
export const INDIRECT_TABLE_MAX = 32

/** One buffer of a chain the fake driver posts: device-readable unless `write`. */
export interface BufferSpec {
  address: GuestAddress
  length: number
  write?: boolean
}

/** A raw descriptor, for hostile tables. */
export interface RawDescriptor {
  address: number | bigint
  length: number
  flags: number
  next: number
}

/** The driver side of one split queue (§2.7) in guest memory. */
export class DriverQueue {
  private nextDesc = 0
  private availIdx = 0
  private lastUsed = 0

  constructor(
    readonly memory: GuestMemory,
    readonly size: number,
    readonly descTable: GuestAddress,
    readonly availRing: GuestAddress,
    readonly usedRing: GuestAddress,
    /** Where indirect tables go: INDIRECT_TABLE_MAX descriptors' worth per head slot. */
    private readonly indirectArea: GuestAddress,
  ) {}

  writeDescriptor(table: number, index: number, d: RawDescriptor): void {
    const at = table + 16 * index
    this.memory.writeU64(guestAddress(at), BigInt(d.address))
    this.memory.writeU32(guestAddress(at + 8), d.length)
    this.memory.writeU16(guestAddress(at + 12), d.flags)
    this.memory.writeU16(guestAddress(at + 14), d.next)
  }

  /** Puts `head` in the available ring and publishes it (§2.7.13). */
  publish(head: number): void {
    this.memory.writeU16(guestAddress(this.availRing + 4 + 2 * (this.availIdx % this.size)), head)
    this.availIdx = (this.availIdx + 1) & 0xffff
    this.memory.writeU16(guestAddress(this.availRing + 2), this.availIdx)
  }

  /** Sets the available index to anything, for hostile tests. */
  setAvailIndex(idx: number): void {
    this.availIdx = idx & 0xffff
    this.memory.writeU16(guestAddress(this.availRing + 2), this.availIdx)
  }

  /** Posts a chain of `buffers`, through an indirect table when `indirect`; returns its head. */
  add(buffers: readonly BufferSpec[], options: { indirect?: boolean } = {}): number {
    const raw = (b: BufferSpec, i: number, last: boolean): RawDescriptor => ({
      address: b.address,
      length: b.length,
      flags: (b.write ? DescFlags.WRITE : 0) | (last ? 0 : DescFlags.NEXT),
      next: i + 1,
    })
    const head = this.nextDesc % this.size
    if (options.indirect) {
      if (buffers.length > INDIRECT_TABLE_MAX)
        throw new RangeError(`at most ${INDIRECT_TABLE_MAX} buffers per indirect chain`)
      const table = this.indirectArea + head * 16 * INDIRECT_TABLE_MAX
      buffers.forEach((b, i) => {
        this.writeDescriptor(table, i, raw(b, i, i === buffers.length - 1))
      })
      this.writeDescriptor(this.descTable, head, {
        address: table,
        length: 16 * buffers.length,
        flags: DescFlags.INDIRECT,
        next: 0,
      })
      this.nextDesc++
    } else {
      buffers.forEach((b, i) => {
        const index = (head + i) % this.size
        this.writeDescriptor(this.descTable, index, {
          ...raw(b, i, i === buffers.length - 1),
          next: (index + 1) % this.size,
        })
      })
      this.nextDesc += buffers.length
    }
    this.publish(head)
    return head
  }

  /** The used index the device last published. */
  get usedIndex(): number {
    return this.memory.readU16(guestAddress(this.usedRing + 2))
  }

  /** The used elements published since the last call. */
  takeUsed(): { id: number; length: number }[] {
    const out: { id: number; length: number }[] = []
    const idx = this.usedIndex
    while (this.lastUsed !== idx) {
      const at = this.usedRing + 4 + 8 * (this.lastUsed % this.size)
      out.push({
        id: this.memory.readU32(guestAddress(at)),
        length: this.memory.readU32(guestAddress(at + 4)),
      })
      this.lastUsed = (this.lastUsed + 1) & 0xffff
    }
    return out
  }

  /** used_event (§2.7.10): interrupt when the used index passes this. */
  setUsedEvent(value: number): void {
    this.memory.writeU16(guestAddress(this.availRing + 4 + 2 * this.size), value)
  }

  /** VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.7). */
  setNoInterrupt(on: boolean): void {
    this.memory.writeU16(guestAddress(this.availRing), on ? 1 : 0)
  }

  /** avail_event as the device wrote it (§2.7.10). */
  get availEvent(): number {
    return this.memory.readU16(guestAddress(this.usedRing + 4 + 8 * this.size))
  }
}

export interface MmioDriverOptions {
  /** Features to accept besides VERSION_1 (intersected with the offer unless `force`). */
  features?: bigint
  /** Accept exactly `features`, VERSION_1 only if listed, even where not offered (to test refusal). */
  force?: boolean
  /** Queue sizes to set up (defaults to each queue's maximum, capped at 256). */
  queueSizes?: readonly number[]
}

/**
 * A virtio-mmio driver (§4.2.3) over a transport: the sequence Linux's virtio_mmio.c performs,
 * with guest memory laid out by a bump allocator from `heap`.
 */
export class MmioDriver {
  readonly queues: DriverQueue[] = []
  private heapNext: number
  private readonly word = new Uint8Array(4)

  constructor(
    readonly transport: MmioDevice,
    readonly memory: GuestMemory,
    heap = 0x1000,
  ) {
    this.heapNext = heap
  }

  /** `size` bytes of guest memory, `align`-aligned, zeroed. */
  alloc(size: number, align = 16): GuestAddress {
    const at = Math.ceil(this.heapNext / align) * align
    this.heapNext = at + size
    this.memory.write(guestAddress(at), new Uint8Array(size))
    return guestAddress(at)
  }

  readReg(offset: number): number {
    this.transport.read(offset, this.word)
    return new DataView(this.word.buffer).getUint32(0, true)
  }

  writeReg(offset: number, value: number): void {
    new DataView(this.word.buffer).setUint32(0, value >>> 0, true)
    this.transport.write(offset, this.word)
  }

  get status(): number {
    return this.readReg(MmioReg.STATUS)
  }

  get offeredFeatures(): bigint {
    this.writeReg(MmioReg.DEVICE_FEATURES_SEL, 0)
    const lo = this.readReg(MmioReg.DEVICE_FEATURES)
    this.writeReg(MmioReg.DEVICE_FEATURES_SEL, 1)
    return (BigInt(this.readReg(MmioReg.DEVICE_FEATURES)) << 32n) | BigInt(lo)
  }

  /** Reset, negotiate, set up every queue and set DRIVER_OK; returns the accepted features. */
  init(options: MmioDriverOptions = {}): bigint {
    this.writeReg(MmioReg.STATUS, 0)
    this.writeReg(MmioReg.STATUS, Status.ACKNOWLEDGE)
    this.writeReg(MmioReg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER)
    const wanted = options.features ?? 0n
    const features = options.force ? wanted : (wanted | (1n << Feature.VERSION_1)) & this.offeredFeatures
    for (const sel of [0, 1]) {
      this.writeReg(MmioReg.DRIVER_FEATURES_SEL, sel)
      this.writeReg(MmioReg.DRIVER_FEATURES, Number((features >> BigInt(32 * sel)) & 0xffff_ffffn))
    }
    const negotiating = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK
    this.writeReg(MmioReg.STATUS, negotiating)
    if (!(this.status & Status.FEATURES_OK)) throw new Error('the device refused the features')
    this.queues.length = 0
    for (let i = 0; ; i++) {
      this.writeReg(MmioReg.QUEUE_SEL, i)
      const max = this.readReg(MmioReg.QUEUE_NUM_MAX)
      if (max === 0) break
      const size = options.queueSizes?.[i] ?? Math.min(max, 256)
      const desc = this.alloc(16 * size, 16)
      const avail = this.alloc(6 + 2 * size, 2)
      const used = this.alloc(6 + 8 * size, 4)
      const indirect = this.alloc(16 * INDIRECT_TABLE_MAX * size, 16)
      this.writeReg(MmioReg.QUEUE_NUM, size)
      this.writeReg(MmioReg.QUEUE_DESC_LOW, desc)
      this.writeReg(MmioReg.QUEUE_DESC_HIGH, 0)
      this.writeReg(MmioReg.QUEUE_DRIVER_LOW, avail)
      this.writeReg(MmioReg.QUEUE_DRIVER_HIGH, 0)
      this.writeReg(MmioReg.QUEUE_DEVICE_LOW, used)
      this.writeReg(MmioReg.QUEUE_DEVICE_HIGH, 0)
      this.writeReg(MmioReg.QUEUE_READY, 1)
      this.queues.push(new DriverQueue(this.memory, size, desc, avail, used, indirect))
    }
    this.writeReg(MmioReg.STATUS, negotiating | Status.DRIVER_OK)
    return features
  }

  queue(index: number): DriverQueue {
    const q = this.queues[index]
    if (!q) throw new Error(`queue ${index} is not set up`)
    return q
  }

  notify(index: number): void {
    this.writeReg(MmioReg.QUEUE_NOTIFY, index)
  }

  /** Reads and acknowledges InterruptStatus, as the driver's interrupt handler does. */
  acknowledge(): number {
    const status = this.readReg(MmioReg.INTERRUPT_STATUS)
    this.writeReg(MmioReg.INTERRUPT_ACK, status)
    return status
  }

  /** `length` bytes of configuration space from `offset`. */
  readConfig(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length)
    this.transport.read(MmioReg.CONFIG + offset, out)
    return out
  }

  writeConfig(offset: number, data: Uint8Array): void {
    this.transport.write(MmioReg.CONFIG + offset, data)
  }

  /** Copies `data` into fresh guest memory; returns its address. */
  put(data: Uint8Array, align = 16): GuestAddress {
    const at = this.alloc(data.length, align)
    this.memory.write(at, data)
    return at
  }

  get(address: GuestAddress, length: number): Uint8Array {
    const out = new Uint8Array(length)
    this.memory.read(address, out)
    return out
  }
}

/** Resolves when `condition` holds, polling the event loop; rejects after `timeoutMs`. */
export async function until(condition: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 1))
  }
}
