import { resolve } from 'node:path'
import { errnoWords, type SavedState } from '@vmm/core'
import { completeChain, type DeviceContext, takeChain, type VirtioDevice } from '../../device.js'
import { gather, scatter, views } from '../../queue/buffers.js'
import type { DescriptorChain } from '../../queue/split-queue.js'
import { DeviceType, featureBits } from '../../spec.js'
import { Errno, HEADER_SIZE, header, Msg, NOTAG, RREAD_HEADER, rlerror, TWRITE_HEADER } from './protocol.js'
import { MAX_MSIZE, P9Server } from './server.js'
import type { P9Reply } from './session.js'
import type { SessionState } from './state.js'

/**
 * Feature bits. Virtio 1.2 lists device id 9 ("9P transport") in its device-id table (§5) but has
 * no section for it; the feature and configuration are Linux's include/uapi/linux/virtio_9p.h
 * (VIRTIO_9P_MOUNT_TAG, struct virtio_9p_config), which QEMU's virtio-9p implements too.
 */
export const P9Feature = {
  /** The configuration holds the mount tag. */
  MOUNT_TAG: 0n,
} as const

/** Requests in the ring (QEMU's MAX_REQ is 128 too). */
export const P9_QUEUE_SIZE = 128
/**
 * Requests handed to the host at once. More would only queue on libuv's pool (4 threads by
 * default) and pin more guest buffers; the rest wait in the ring until one completes.
 */
export const P9_MAX_IN_FLIGHT = 32
/** The mount tag's longest length (bytes). */
export const P9_TAG_MAX = 255

export interface P9DeviceOptions {
  /** The mount tag the guest names: `mount -t 9p -o trans=virtio <tag> /mnt`. */
  tag: string
  /** The shared host directory. */
  path: string
  readonly: boolean
}

/**
 * virtio-9p: a host directory served over 9P2000.L by the VMM itself (device id 9; the transport
 * is Linux's net/9p/trans_virtio.c: one request queue, each chain the T-message in its readable
 * buffers and room for the R-message in its writable ones). Twrite's payload and Tread's data go
 * between guest memory and the file with writev/readv on views of guest RAM, no copy, on libuv's
 * pool; requests complete in any order (9P matches replies by tag). The configuration space is
 * `struct virtio_9p_config { le16 tag_len; u8 tag[tag_len]; }`.
 */
export class P9Device implements VirtioDevice {
  readonly deviceType = DeviceType.P9
  readonly queueSizes = [P9_QUEUE_SIZE]
  readonly features = featureBits(P9Feature.MOUNT_TAG)
  readonly server: P9Server
  private readonly config: Uint8Array
  private context: DeviceContext | undefined
  private inFlight = 0
  private paused = false
  private drained: (() => void)[] = []
  private readonly root: string

  constructor(options: P9DeviceOptions) {
    this.root = resolve(options.path)
    const tag = new TextEncoder().encode(options.tag)
    if (tag.length === 0 || tag.length > P9_TAG_MAX)
      throw new Error(`virtio-9p: the mount tag must be 1 to ${P9_TAG_MAX} bytes`)
    this.config = new Uint8Array(2 + tag.length)
    new DataView(this.config.buffer).setUint16(0, tag.length, true)
    this.config.set(tag, 2)
    try {
      this.server = new P9Server({ root: options.path, readonly: options.readonly })
    } catch (e) {
      throw new Error(`virtio-9p: shared directory ${options.path}: ${errnoWords(e)}`, { cause: e })
    }
  }

  readConfig(offset: number, data: Uint8Array): void {
    data.fill(0)
    if (offset < this.config.length) data.set(this.config.subarray(offset, offset + data.length))
  }

  /** The configuration is read-only. */
  writeConfig(): void {}

  activate(context: DeviceContext): void {
    this.context = context
  }

  notify(): void {
    this.pump()
  }

  reset(): void {
    this.context = undefined
  }

  /** Requests already with the host finish; none starts until resume (guest memory holds still). */
  pause(): Promise<void> {
    this.paused = true
    return this.idle()
  }

  resume(): void {
    this.paused = false
    this.pump()
  }

  /**
   * The session for a snapshot of the paused machine (pause waited for requests in flight; chains
   * not yet taken stay in the ring, which the transport saves): msize and every fid as a path.
   */
  saveState(): { root: string; session: SessionState } {
    if (this.inFlight > 0) throw new Error('virtio-9p: requests in flight (the machine is not paused)')
    return { root: this.root, session: this.server.saveState() }
  }

  /**
   * The fids are walked again from the share's root; those not found answer ESTALE (state.ts).
   * The share may be another directory than at the snapshot (a restore override of `path`: one
   * pre-booted guest, each clone with its own directory) only while the guest holds no fid: a fid
   * is a path the guest walked in the old directory, and the same names in another one are other
   * files, so such a rebind is refused, naming both directories.
   */
  restoreState(state: SavedState): void {
    state.only('root', 'session')
    const root = state.string('root', /^\/[^\0]*$/, 4096)
    const session = state.nested('session')
    const fids = session.int('count', 0, 0xffff_ffff)
    if (fids > 0 && resolve(root) !== this.root)
      state.refuse(
        'root',
        `the guest holds ${fids} fid${fids === 1 ? '' : 's'} in ${root} (mounted there at the snapshot): the share cannot be rebound to ${this.root}`,
      )
    this.server.restoreState(session)
  }

  async dispose(): Promise<void> {
    this.context = undefined
    await this.idle()
    this.server.close()
  }

  private idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => this.drained.push(r))
  }

  /** Starts chains while fewer than P9_MAX_IN_FLIGHT are with the host. */
  private pump(): void {
    const context = this.context
    while (context && !this.paused && this.inFlight < P9_MAX_IN_FLIGHT) {
      const chain = takeChain(context, 0)
      if (!chain) return
      this.start(context, chain)
    }
  }

  private start(context: DeviceContext, chain: DescriptorChain): void {
    let reply: Promise<P9Reply>
    try {
      reply = this.request(context, chain)
    } catch (e) {
      // A descriptor outside guest RAM: the driver broke the ring (§2.1.2), not a 9P matter.
      context.fail(e)
      return
    }
    this.inFlight++
    void reply.then((r) => this.finish(context, chain, r))
  }

  /** Parses the chain into a request for the server (a malformed one gets its Rlerror at once). */
  private request(context: DeviceContext, chain: DescriptorChain): Promise<P9Reply> {
    const memory = context.memory
    const head = new Uint8Array(HEADER_SIZE)
    if (gather(memory, chain.readable, 0, head) < HEADER_SIZE)
      return Promise.resolve({ bytes: rlerror(NOTAG, Errno.EPROTO), data: 0 })
    const { size, type, tag } = header(head)
    // The declared size must fit the chain and the largest msize (the buffer we gather into).
    if (size < HEADER_SIZE || size > chain.readableLength || size > MAX_MSIZE)
      return Promise.resolve({ bytes: rlerror(tag, Errno.EPROTO), data: 0 })
    const isWrite = type === Msg.TWRITE && size >= TWRITE_HEADER
    const message = new Uint8Array(isWrite ? TWRITE_HEADER : size)
    gather(memory, chain.readable, 0, message)
    const writable = chain.writableLength
    return this.server.handle({
      message,
      data: isWrite ? views(memory, chain.readable, TWRITE_HEADER, size - TWRITE_HEADER) : undefined,
      readTarget: (count) =>
        views(memory, chain.writable, RREAD_HEADER, Math.max(0, Math.min(count, writable - RREAD_HEADER))),
      replyCapacity: writable,
    })
  }

  private finish(context: DeviceContext, chain: DescriptorChain, reply: P9Reply): void {
    this.inFlight--
    if (context.active && this.context === context) {
      try {
        const n = scatter(context.memory, chain.writable, 0, reply.bytes)
        completeChain(context, 0, chain.head, n + reply.data)
      } catch (e) {
        context.fail(e)
      }
    }
    if (this.inFlight === 0) for (const f of this.drained.splice(0)) f()
    this.pump()
  }
}
