import { type GuestAddress, type GuestMemory, guestAddress, type SavedState } from '@vmm/core'
import { completeChain, type DeviceContext, drainQueue, takeChain, type VirtioDevice } from '../../device.js'
import { gather } from '../../queue/buffers.js'
import type { DescriptorChain } from '../../queue/split-queue.js'
import { DeviceType, featureBits, hasFeature } from '../../spec.js'

/** Feature bits (§5.5.3). */
export const BalloonFeature = { MUST_TELL_HOST: 0n, STATS_VQ: 1n, DEFLATE_ON_OOM: 2n } as const

/** Statistic tags (§5.5.6.3). */
export const BalloonStat = {
  SWAP_IN: 0,
  SWAP_OUT: 1,
  MAJFLT: 2,
  MINFLT: 3,
  MEMFREE: 4,
  MEMTOT: 5,
  AVAIL: 6,
  CACHES: 7,
  HTLB_PGALLOC: 8,
  HTLB_PGFAIL: 9,
} as const

/** The balloon's page size: PFNs count 4 KiB pages whatever the guest's own (§5.5.6). */
export const BALLOON_PAGE = 4096
const INFLATE = 0
const DEFLATE = 1
const STATS = 2
const STAT_SIZE = 10

/** Statistics by tag name (the values are bytes or counts as §5.5.6.3 says). */
export type BalloonStats = Partial<Record<keyof typeof BalloonStat, bigint>>

export interface BalloonOptions {
  /** Offer the statistics queue. */
  stats: boolean
  /** Offer DEFLATE_ON_OOM: the guest may take pages back from the balloon when it runs out. */
  deflateOnOom: boolean
  /** Pages the balloon should hold from the start. */
  targetPages: number
  /**
   * Gives a run of whole pages back to the host; true once they read as zeroes. The default is
   * GuestMemory.discard (whose provider knows what backs guest RAM: on KVM, MADV_DONTNEED on
   * anonymous memory, fresh anonymous pages over a snapshot's memory file).
   */
  discard?: (memory: GuestMemory, address: GuestAddress, length: number) => boolean
}

/**
 * virtio-balloon (§5.5). The host sets a target in pages (`setTarget`); the guest inflates toward it
 * by handing PFNs over the inflate queue, whose pages the device gives back to the host kernel, and
 * deflates by taking them back (they fault in again as zeroes). With STATS_VQ the guest's memory
 * statistics arrive on request (`requestStats`).
 */
export class BalloonDevice implements VirtioDevice {
  readonly deviceType = DeviceType.BALLOON
  readonly queueSizes = [256, 256, 16]
  readonly features: bigint
  private readonly config = new DataView(new ArrayBuffer(8))
  private readonly discard: (memory: GuestMemory, address: GuestAddress, length: number) => boolean
  private context: DeviceContext | undefined
  /** The statistics buffer the driver posted, kept until the host wants fresh numbers. */
  private statsChain: DescriptorChain | undefined
  private statsWaiters: ((s: BalloonStats) => void)[] = []
  /** The machine is paused: a statistics request waits here to give the driver its buffer at resume. */
  private paused = false
  private heldStatsRequest = false
  private pfns = new Uint8Array(4096)
  /** Pages discarded since the device was created, for tests and monitoring. */
  discardedPages = 0
  /** Of those, pages the host freed but could not make read as zeroes (RamMapping.discard). */
  unzeroedPages = 0
  private readonly actualListeners = new Set<(pages: number) => void>()

  constructor(options: BalloonOptions) {
    this.features = featureBits(
      ...(options.stats ? [BalloonFeature.STATS_VQ] : []),
      ...(options.deflateOnOom ? [BalloonFeature.DEFLATE_ON_OOM] : []),
    )
    this.discard = options.discard ?? ((memory, address, length) => memory.discard(address, length))
    this.config.setUint32(0, options.targetPages, true)
  }

  /** The pages the guest says it has given (config `actual`). */
  get actualPages(): number {
    return this.config.getUint32(4, true)
  }

  /**
   * Calls `listener` with the new `actual` each time the driver writes a different one (a control
   * plane's BALLOON_CHANGED, without polling); returns the unsubscribe function. Runs on the vCPU
   * exit path: keep it short.
   */
  watchActual(listener: (pages: number) => void): () => void {
    this.actualListeners.add(listener)
    return () => this.actualListeners.delete(listener)
  }

  get targetPages(): number {
    return this.config.getUint32(0, true)
  }

  /** Asks the guest to hold `pages` pages in the balloon (config `num_pages`, §5.5.6). */
  setTarget(pages: number): void {
    this.config.setUint32(0, pages >>> 0, true)
    this.context?.configChanged()
  }

  /**
   * Fresh statistics from the guest (§5.5.6.3): gives the driver its buffer back and resolves when
   * it posts the refilled one. Rejects when STATS_VQ was not negotiated or the driver has no buffer.
   */
  requestStats(): Promise<BalloonStats> {
    const context = this.context
    const chain = this.statsChain
    if (!context || !hasFeature(context.features, BalloonFeature.STATS_VQ) || !chain)
      return Promise.reject(new Error('the guest has not posted a statistics buffer'))
    const answer = new Promise<BalloonStats>((resolve) => this.statsWaiters.push(resolve))
    // Giving the buffer back writes the used ring: not while the machine is paused.
    if (this.paused) this.heldStatsRequest = true
    else this.returnStatsBuffer(context, chain)
    return answer
  }

  private returnStatsBuffer(context: DeviceContext, chain: DescriptorChain): void {
    this.statsChain = undefined
    completeChain(context, STATS, chain.head, 0)
  }

  /** The machine pauses; inflate and deflate come only through doorbells, which the transport holds. */
  pause(): void {
    this.paused = true
  }

  resume(): void {
    this.paused = false
    if (!this.heldStatsRequest) return
    this.heldStatsRequest = false
    if (this.context && this.statsChain) this.returnStatsBuffer(this.context, this.statsChain)
  }

  /**
   * For a snapshot: the target and what the guest says it gave (the configuration), and the
   * statistics buffer the driver posted and the device holds (its head; read again at restore).
   * The pages in the balloon are holes in guest RAM, and so in the memory file. A statistics
   * request still unanswered is not kept: its caller belongs to the machine that was saved.
   */
  saveState(): { targetPages: number; actualPages: number; statsHead: number | null } {
    return {
      targetPages: this.targetPages,
      actualPages: this.actualPages,
      statsHead: this.statsChain?.head ?? null,
    }
  }

  restoreState(s: SavedState): void {
    s.only('targetPages', 'actualPages', 'statsHead')
    this.config.setUint32(0, s.int('targetPages', 0, 0xffff_ffff), true)
    this.config.setUint32(4, s.int('actualPages', 0, 0xffff_ffff), true)
    const context = this.context
    if (s.isNull('statsHead') || !context) return
    const head = s.int('statsHead', 0, 0xffff)
    const queue = context.queues[STATS]
    if (!queue?.ready) s.refuse('statsHead', 'a held statistics buffer, but the statistics queue is not live')
    try {
      this.statsChain = queue.chainAt(context.memory, head)
    } catch (e) {
      s.refuse('statsHead', (e as Error).message)
    }
  }

  readConfig(offset: number, data: Uint8Array): void {
    const bytes = new Uint8Array(this.config.buffer)
    if (offset < bytes.length) data.set(bytes.subarray(offset, offset + data.length))
  }

  writeConfig(offset: number, data: Uint8Array): void {
    // Only `actual` (offset 4) is the driver's to write (§5.5.4).
    if (offset < 4 || offset + data.length > 8) return
    const before = this.actualPages
    new Uint8Array(this.config.buffer).set(data, offset)
    const after = this.actualPages
    if (after !== before)
      for (const l of this.actualListeners) {
        try {
          l(after)
        } catch {
          // A listener's failure is its own; the guest's write stands.
        }
      }
  }

  activate(context: DeviceContext): void {
    this.context = context
  }

  notify(index: number): void {
    const context = this.context
    if (!context) return
    if (index === INFLATE) drainQueue(context, INFLATE, (chain) => this.inflate(context.memory, chain))
    // Deflated pages need nothing from the host: they fault in again, zeroed, when the guest uses
    // them (§5.5.6: the device may have changed a page's contents while it was in the balloon).
    else if (index === DEFLATE) drainQueue(context, DEFLATE, () => 0)
    else if (index === STATS) this.receiveStats(context)
  }

  reset(): void {
    this.context = undefined
    this.statsChain = undefined
    this.heldStatsRequest = false
    this.config.setUint32(4, 0, true)
  }

  private inflate(memory: GuestMemory, chain: DescriptorChain): number {
    for (let at = 0; at < chain.readableLength; at += this.pfns.length) {
      const n = gather(memory, chain.readable, at, this.pfns) & ~3
      // Runs of consecutive PFNs go back in one call each (Linux sends up to 256 PFNs a request,
      // often in runs): fewer system calls, and over a snapshot's memory file fewer separate
      // anonymous ranges, each a kernel mapping (@vmm/kvm bounds their number).
      const pages = new Uint32Array(this.pfns.buffer.slice(0, n)).sort()
      for (let i = 0; i < pages.length; ) {
        let j = i + 1
        while (j < pages.length && pages[j]! <= pages[j - 1]! + 1) j++
        this.discardRun(memory, pages[i]!, pages[j - 1]! + 1)
        i = j
      }
    }
    return 0
  }

  /** Gives back PFNs [first, end); pages that are not RAM (the guest's mistake) are skipped. */
  private discardRun(memory: GuestMemory, first: number, end: number): void {
    if (this.give(memory, first, end)) return
    if (end - first > 1) for (let pfn = first; pfn < end; pfn++) this.give(memory, pfn, pfn + 1)
  }

  private give(memory: GuestMemory, first: number, end: number): boolean {
    const address = guestAddress(first * BALLOON_PAGE)
    const length = (end - first) * BALLOON_PAGE
    if (!memory.isMapped(address, length)) return false
    let zeroed: boolean
    try {
      zeroed = this.discard(memory, address, length)
    } catch {
      // ROM, or a host that cannot give these pages back (a hugetlb memfd at 4 KiB): §5.5.6 lets
      // the device leave a page's contents as they are, so the request still completes.
      return false
    }
    this.discardedPages += end - first
    if (!zeroed) this.unzeroedPages += end - first
    return true
  }

  private receiveStats(context: DeviceContext): void {
    const chain = takeChain(context, STATS)
    if (!chain) return
    // A second buffer while one is held: the driver restarted; keep the newer one.
    if (this.statsChain) completeChain(context, STATS, this.statsChain.head, 0)
    this.statsChain = chain
    const bytes = new Uint8Array(Math.min(chain.readableLength, 64 * STAT_SIZE))
    gather(context.memory, chain.readable, 0, bytes)
    const view = new DataView(bytes.buffer)
    const stats: BalloonStats = {}
    const names = Object.keys(BalloonStat) as (keyof typeof BalloonStat)[]
    for (let at = 0; at + STAT_SIZE <= bytes.length; at += STAT_SIZE) {
      const name = names[view.getUint16(at, true)]
      if (name) stats[name] = view.getBigUint64(at + 2, true)
    }
    for (const resolve of this.statsWaiters.splice(0)) resolve(stats)
  }
}
