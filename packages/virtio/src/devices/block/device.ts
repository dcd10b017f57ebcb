import { closeSync, fdatasync, fstatSync, openSync, readv, write, writev } from 'node:fs'
import { errnoWords, type GuestMemory, type SavedState } from '@vmm/core'
import { blockDeviceSize, deallocateFileRange, lockDiskImage } from '@vmm/host'
import { completeChain, type DeviceContext, drainQueue, type VirtioDevice } from '../../device.js'
import { gather, scatter, views } from '../../queue/buffers.js'
import type { DescriptorChain } from '../../queue/split-queue.js'
import { DeviceType, featureBits } from '../../spec.js'
import { type DiskFingerprint, fingerprint, fingerprintMismatch, readFingerprint } from './fingerprint.js'

/** Feature bits (§5.2.3). */
export const BlockFeature = {
  SEG_MAX: 2n,
  RO: 5n,
  BLK_SIZE: 6n,
  FLUSH: 9n,
  DISCARD: 13n,
  WRITE_ZEROES: 14n,
} as const

/** Request types (§5.2.6). */
export const BlockRequest = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8, DISCARD: 11, WRITE_ZEROES: 13 } as const

/** Request status (§5.2.6). */
export const BlockStatus = { OK: 0, IOERR: 1, UNSUPP: 2 } as const

export const SECTOR_SIZE = 512
/** §5.2.6: the ID is 20 bytes, not NUL-terminated when it fills them. */
export const BLOCK_ID_BYTES = 20
const QUEUE_SIZE = 256
/** Discard / write-zeroes limits advertised in the configuration (§5.2.4). */
const MAX_ZEROES_SECTORS = 1 << 16
const MAX_SEGMENTS = 16
const SEGMENT_SIZE = 16
/** struct virtio_blk_discard_write_zeroes flags: bit 0 unmap (§5.2.6). */
const UNMAP = 1
const ZEROES = new Uint8Array(256 * 1024)

export interface BlockOptions {
  /** The raw image. */
  path: string
  readOnly: boolean
  /** The ID a guest reads with GET_ID (/sys/block/vda/serial); at most 20 bytes. */
  serial: string
}

/**
 * virtio-blk over a raw image file (§5.2). Reads and writes go from guest memory straight to the
 * file with readv/writev on views of guest RAM (no copy), asynchronously on libuv's pool, and
 * complete in any order. Any host error reaches the guest as VIRTIO_BLK_S_IOERR.
 */
export class BlockDevice implements VirtioDevice {
  readonly deviceType = DeviceType.BLOCK
  readonly queueSizes = [QUEUE_SIZE]
  readonly features: bigint
  /** Capacity in 512-byte sectors, from the file's size. */
  readonly capacity: number
  /** The image's size in bytes (a file's may not be whole sectors). */
  private readonly bytes: number
  private readonly fd: number
  private readonly config = new DataView(new ArrayBuffer(60))
  private readonly serial: Uint8Array
  private readonly header = new Uint8Array(16)
  private readonly headerView = new DataView(this.header.buffer)
  private context: DeviceContext | undefined
  /** Requests handed to the host and not completed: the count a reset or dispose waits for. */
  private inFlight = 0
  /** Called once nothing is in flight (pause and dispose wait for it). */
  private drained: (() => void)[] = []

  constructor(private readonly options: BlockOptions) {
    this.fd = openDisk(options.path, options.readOnly)
    try {
      // Two machines writing one image corrupt it: exclusive for read-write, shared for read-only
      // (a reader and a writer conflict too), as QEMU's image locking does.
      if (!lockDiskImage(this.fd, !options.readOnly))
        throw new Error(
          `disk image ${options.path} is in use by another machine (it holds a lock on it); ` +
            (options.readOnly
              ? 'another machine writes it'
              : 'two machines must not write one image: stop the other, or give this one a copy'),
        )
      const stat = fstatSync(this.fd)
      const bytes = stat.isBlockDevice() ? blockDeviceSize(this.fd) : stat.size
      this.bytes = bytes
      this.capacity = Math.floor(bytes / SECTOR_SIZE)
    } catch (e) {
      closeSync(this.fd)
      throw e
    }
    // Zero-padded: a shorter ID ends with a NUL, a 20-byte one has none (§5.2.6).
    this.serial = new Uint8Array(BLOCK_ID_BYTES)
    this.serial.set(new TextEncoder().encode(options.serial).subarray(0, BLOCK_ID_BYTES))
    const f = BlockFeature
    this.features = featureBits(
      f.SEG_MAX,
      f.BLK_SIZE,
      f.FLUSH,
      ...(options.readOnly ? [f.RO] : [f.DISCARD, f.WRITE_ZEROES]),
    )
    // struct virtio_blk_config (§5.2.4); fields of features not offered stay zero.
    const c = this.config
    c.setBigUint64(0, BigInt(this.capacity), true)
    c.setUint32(12, QUEUE_SIZE - 2, true) // seg_max: a chain also carries the header and status
    c.setUint32(20, SECTOR_SIZE, true) // blk_size
    c.setUint16(34, 1, true) // num_queues
    c.setUint32(36, MAX_ZEROES_SECTORS, true) // max_discard_sectors
    c.setUint32(40, MAX_SEGMENTS, true) // max_discard_seg
    c.setUint32(44, 1, true) // discard_sector_alignment
    c.setUint32(48, MAX_ZEROES_SECTORS, true) // max_write_zeroes_sectors
    c.setUint32(52, MAX_SEGMENTS, true) // max_write_zeroes_seg
    c.setUint8(56, 1) // write_zeroes_may_unmap: an unmap request punches a hole
  }

  readConfig(offset: number, data: Uint8Array): void {
    const bytes = new Uint8Array(this.config.buffer)
    if (offset < bytes.length) data.set(bytes.subarray(offset, offset + data.length))
  }

  /** The configuration is read-only (no CONFIG_WCE): writes are ignored. */
  writeConfig(): void {}

  activate(context: DeviceContext): void {
    this.context = context
  }

  notify(): void {
    const context = this.context
    if (context) drainQueue(context, 0, (chain) => this.start(context, chain))
  }

  reset(): void {
    this.context = undefined
  }

  /**
   * The machine pauses: requests already handed to the host finish (their data, status byte and
   * used entry reach guest memory; the transport holds the interrupt) before this resolves. New
   * requests come only from doorbells, which the transport holds until resume.
   */
  pause(): Promise<void> {
    return this.idle()
  }

  private idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => this.drained.push(r))
  }

  /**
   * For a snapshot (the machine paused, so pause() already waited for every request in flight:
   * none is popped and unfinished): the disk's fingerprint, nothing else; the queue is the
   * transport's.
   */
  saveState(): { disk: DiskFingerprint } {
    if (this.inFlight > 0)
      throw new Error(`disk image ${this.options.path}: ${this.inFlight} requests in flight`)
    return { disk: fingerprint(this.fd, this.options.path, this.bytes) }
  }

  /** Refuses a disk that is not the one the snapshot saw (fingerprint.ts says what is compared). */
  restoreState(s: SavedState): void {
    s.only('disk')
    const then = readFingerprint(s.nested('disk'))
    const problem = fingerprintMismatch(then, fingerprint(this.fd, this.options.path, this.bytes))
    if (problem) throw new Error(problem)
  }

  /** Waits for requests in flight, then closes the image. */
  async dispose(): Promise<void> {
    this.context = undefined
    await this.idle()
    closeSync(this.fd)
  }

  /** Starts one request; completes it now (returning the used length) or later (undefined). */
  private start(context: DeviceContext, chain: DescriptorChain): number | undefined {
    const memory = context.memory
    // The last writable byte is the status (§5.2.6); without it nothing can be reported.
    if (chain.writableLength < 1) return 0
    const dataOut = chain.writableLength - 1
    const done = (status: number, written = 0) => this.finish(context, chain, status, written)
    const later = (status: number, written = 0) => this.completeLater(context, chain, status, written)
    if (gather(memory, chain.readable, 0, this.header) < 16) return done(BlockStatus.IOERR)
    const type = this.headerView.getUint32(0, true)
    const sector = Number(this.headerView.getBigUint64(8, true))
    const dataIn = chain.readableLength - 16
    switch (type) {
      case BlockRequest.IN:
        if (!this.inRange(sector, dataOut)) return done(BlockStatus.IOERR)
        return this.io(readv, views(memory, chain.writable, 0, dataOut), sector, dataOut, later)
      case BlockRequest.OUT:
        if (this.options.readOnly || !this.inRange(sector, dataIn)) return done(BlockStatus.IOERR)
        return this.io(writev, views(memory, chain.readable, 16), sector, 0, later)
      case BlockRequest.FLUSH:
        this.inFlight++
        fdatasync(this.fd, (err) => this.settle(() => later(err ? BlockStatus.IOERR : BlockStatus.OK)))
        return undefined
      case BlockRequest.GET_ID: {
        const n = scatter(
          memory,
          chain.writable,
          0,
          this.serial.subarray(0, Math.min(dataOut, BLOCK_ID_BYTES)),
        )
        return done(BlockStatus.OK, n)
      }
      case BlockRequest.DISCARD:
      case BlockRequest.WRITE_ZEROES: {
        if (this.options.readOnly) return done(BlockStatus.UNSUPP)
        const ranges = this.segments(memory, chain, dataIn)
        if (!ranges) return done(BlockStatus.IOERR)
        // §5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP.
        if (ranges.some((r) => r.flags & ~(type === BlockRequest.WRITE_ZEROES ? UNMAP : 0)))
          return done(BlockStatus.UNSUPP)
        if (type === BlockRequest.DISCARD) {
          // A hint (§5.2.6.2: the device MAY deallocate): the file's blocks go back to the host's
          // file system; where it cannot punch holes, nothing happens and that is still OK.
          for (const r of ranges) {
            const status = this.deallocate(r.at, r.length, false)
            if (status === 'error') return done(BlockStatus.IOERR)
          }
          return done(BlockStatus.OK)
        }
        // Write-zeroes must leave zeroes: a hole (unmap allowed) or a zeroed range, else written
        // zeroes where the file system has neither.
        const toWrite: [number, number][] = []
        for (const r of ranges) {
          const status = this.deallocate(r.at, r.length, !(r.flags & UNMAP))
          if (status === 'error') return done(BlockStatus.IOERR)
          if (status === 'unsupported') toWrite.push([r.at, r.length])
        }
        if (toWrite.length === 0) return done(BlockStatus.OK)
        this.inFlight++
        this.zero(toWrite, 0, (ok) => this.settle(() => later(ok ? BlockStatus.OK : BlockStatus.IOERR)))
        return undefined
      }
      default:
        return done(BlockStatus.UNSUPP)
    }
  }

  private inRange(sector: number, length: number): boolean {
    return length % SECTOR_SIZE === 0 && sector + length / SECTOR_SIZE <= this.capacity
  }

  /** fallocate on the image: done, not supported by its file system, or a host error. */
  private deallocate(at: number, length: number, zeroOnly: boolean): 'done' | 'unsupported' | 'error' {
    if (length === 0) return 'done'
    try {
      deallocateFileRange(this.fd, at, length, zeroOnly)
      return 'done'
    } catch (e) {
      return (e as { code?: string }).code === 'EOPNOTSUPP' ? 'unsupported' : 'error'
    }
  }

  /** Parses discard / write-zeroes segments (§5.2.6: struct virtio_blk_discard_write_zeroes). */
  private segments(
    memory: GuestMemory,
    chain: DescriptorChain,
    length: number,
  ): { at: number; length: number; flags: number }[] | undefined {
    const count = length / SEGMENT_SIZE
    if (!Number.isInteger(count) || count < 1 || count > MAX_SEGMENTS) return undefined
    const bytes = new Uint8Array(length)
    gather(memory, chain.readable, 16, bytes)
    const view = new DataView(bytes.buffer)
    const out: { at: number; length: number; flags: number }[] = []
    for (let i = 0; i < count; i++) {
      const sector = Number(view.getBigUint64(i * SEGMENT_SIZE, true))
      const sectors = view.getUint32(i * SEGMENT_SIZE + 8, true)
      const flags = view.getUint32(i * SEGMENT_SIZE + 12, true)
      if (sectors > MAX_ZEROES_SECTORS || sector + sectors > this.capacity) return undefined
      out.push({ at: sector * SECTOR_SIZE, length: sectors * SECTOR_SIZE, flags })
    }
    return out
  }

  private zero(ranges: [number, number][], i: number, cb: (ok: boolean) => void): void {
    const range = ranges[i]
    if (!range) {
      cb(true)
      return
    }
    const [at, length] = range
    if (length === 0) {
      this.zero(ranges, i + 1, cb)
      return
    }
    const n = Math.min(length, ZEROES.length)
    write(this.fd, ZEROES, 0, n, at, (err) => {
      if (err) {
        cb(false)
        return
      }
      ranges[i] = [at + n, length - n]
      this.zero(ranges, i, cb)
    })
  }

  /** readv/writev `buffers` at `sector`; a short transfer is an error too. */
  private io(
    op: typeof readv | typeof writev,
    buffers: Uint8Array[],
    sector: number,
    written: number,
    later: (status: number, written: number) => void,
  ): undefined {
    const expected = buffers.reduce((n, b) => n + b.length, 0)
    this.inFlight++
    op(this.fd, buffers, sector * SECTOR_SIZE, (err, bytes) =>
      this.settle(() => later(err || bytes !== expected ? BlockStatus.IOERR : BlockStatus.OK, written)),
    )
    return undefined
  }

  private settle(complete: () => void): void {
    this.inFlight--
    complete()
    if (this.inFlight === 0) for (const f of this.drained.splice(0)) f()
  }

  /** Writes the status byte and returns the used length: data bytes written plus the status (§5.2.6). */
  private finish(context: DeviceContext, chain: DescriptorChain, status: number, written: number): number {
    scatter(context.memory, chain.writable, chain.writableLength - 1, Uint8Array.of(status))
    return written + 1
  }

  /** Completes an asynchronous request, unless the device was reset meanwhile. */
  private completeLater(
    context: DeviceContext,
    chain: DescriptorChain,
    status: number,
    written: number,
  ): void {
    if (!context.active) return
    let used: number
    try {
      used = this.finish(context, chain, status, written)
    } catch (e) {
      context.fail(e)
      return
    }
    completeChain(context, 0, chain.head, used)
  }
}

/** Opens the image, a refusal naming the path and, for a file vmm may only read, the fix. */
function openDisk(path: string, readOnly: boolean): number {
  try {
    return openSync(path, readOnly ? 'r' : 'r+')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    const fix =
      !readOnly && (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
        ? '; it cannot be opened for writing: set `readOnly: true` to give the guest a read-only disk'
        : ''
    throw new Error(`disk image ${path}: ${errnoWords(e)}${fix}`, { cause: e })
  }
}
