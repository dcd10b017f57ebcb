import { completeChain, type DeviceContext, drainQueue, takeChain, type VirtioDevice } from '../../device.js'
import { scatter, views } from '../../queue/buffers.js'
import { DeviceType, featureBits, hasFeature } from '../../spec.js'
import type { NetBackend } from './backend.js'

/** Feature bits (§5.1.3). */
export const NetFeature = {
  CSUM: 0n,
  GUEST_CSUM: 1n,
  MAC: 5n,
  GUEST_TSO4: 7n,
  GUEST_TSO6: 8n,
  HOST_TSO4: 11n,
  HOST_TSO6: 12n,
  MRG_RXBUF: 15n,
  STATUS: 16n,
} as const

/** struct virtio_net_hdr with VERSION_1: num_buffers is always there (§5.1.6). */
export const NET_HDR_SIZE = 12
/** What Linux's TAP puts in front of a frame with IFF_VNET_HDR: the header without num_buffers. */
const TAP_HDR_SIZE = 10
/** The largest frame: a 64 KiB GSO packet plus its Ethernet header, plus the TAP header. */
const MAX_FRAME = 65550 + TAP_HDR_SIZE
const RX = 0
const TX = 1

export interface NetCounters {
  rxFrames: number
  txFrames: number
  /** Frames from the host that did not fit the guest's buffer and were dropped. */
  rxDropped: number
  /** Frames the backend refused (its queue full) and were dropped, as a NIC would. */
  txDropped: number
}

/**
 * virtio-net (§5.1) over a packet backend (a TAP). Offloads are offered only when the backend
 * carries virtio_net_hdr, and the backend is told which ones the driver accepted, so every flag
 * the guest sees or sets is honoured by the host kernel. Transmit gathers straight from guest
 * memory into writev; receive reads into one buffer allocated up front and copies into the guest's
 * chain, so the steady state allocates no packet buffers.
 */
export class NetDevice implements VirtioDevice {
  readonly deviceType = DeviceType.NET
  readonly queueSizes = [256, 256]
  readonly features: bigint
  readonly counters: NetCounters = { rxFrames: 0, txFrames: 0, rxDropped: 0, txDropped: 0 }
  private readonly config = new Uint8Array(6)
  private readonly frame = new Uint8Array(MAX_FRAME)
  /** num_buffers = 1 (no MRG_RXBUF), and a zero header for a backend without one. */
  private readonly rxHeaderTail = Uint8Array.of(1, 0)
  private readonly zeroHeader = new Uint8Array(TAP_HDR_SIZE)
  private context: DeviceContext | undefined
  private watching = false

  constructor(
    private readonly backend: NetBackend,
    mac: Uint8Array,
  ) {
    if (mac.length !== 6) throw new RangeError('a MAC address is 6 bytes')
    this.config.set(mac)
    const f = NetFeature
    this.features = backend.vnetHdr
      ? featureBits(f.MAC, f.CSUM, f.GUEST_CSUM, f.GUEST_TSO4, f.GUEST_TSO6, f.HOST_TSO4, f.HOST_TSO6)
      : featureBits(f.MAC)
  }

  /** struct virtio_net_config (§5.1.4): the MAC; status and the rest need features not offered. */
  readConfig(offset: number, data: Uint8Array): void {
    if (offset < this.config.length) data.set(this.config.subarray(offset, offset + data.length))
  }

  writeConfig(): void {}

  activate(context: DeviceContext): void {
    this.context = context
    if (this.backend.vnetHdr) {
      // TUNSETOFFLOAD: what the kernel may hand us (and so the guest), exactly what was accepted.
      this.backend.setOffloads({
        csum: hasFeature(context.features, NetFeature.GUEST_CSUM),
        tso4: hasFeature(context.features, NetFeature.GUEST_TSO4),
        tso6: hasFeature(context.features, NetFeature.GUEST_TSO6),
      })
    }
    this.watch(true)
  }

  notify(index: number): void {
    if (index === RX) this.receive()
    else if (index === TX) this.transmit()
  }

  reset(): void {
    this.context = undefined
    this.watch(false)
  }

  dispose(): void {
    this.backend.close()
  }

  private watch(on: boolean): void {
    if (on === this.watching) return
    this.watching = on
    this.backend.watch(on ? () => this.receive() : undefined)
  }

  private transmit(): void {
    const context = this.context
    if (!context) return
    drainQueue(context, TX, (chain) => {
      if (chain.readableLength < NET_HDR_SIZE) return 0
      const body = views(context.memory, chain.readable, NET_HDR_SIZE)
      // The TAP wants the 10-byte header: the guest's, without num_buffers (bytes 10-11).
      const out = this.backend.vnetHdr
        ? [...views(context.memory, chain.readable, 0, TAP_HDR_SIZE), ...body]
        : body
      if (this.backend.write(out) < 0) this.counters.txDropped++
      else this.counters.txFrames++
      return 0
    })
  }

  /** Moves frames from the backend into receive buffers while both exist. */
  private receive(): void {
    const context = this.context
    if (!context) return
    const queue = context.queues[RX]
    for (;;) {
      let hasBuffer: boolean
      try {
        hasBuffer = queue?.ready === true && queue.hasAvailable(context.memory)
      } catch (e) {
        context.fail(e)
        return
      }
      // No buffer: stop watching until the driver posts some (notify RX), so a waiting frame does
      // not spin the event loop; the frame stays queued in the host kernel meanwhile.
      this.watch(hasBuffer)
      if (!hasBuffer) return
      const length = this.backend.read(this.frame)
      if (length < 0) return
      const chain = takeChain(context, RX)
      if (!chain) return
      const hdr = this.backend.vnetHdr ? this.frame.subarray(0, TAP_HDR_SIZE) : this.zeroHeader
      const packet = this.frame.subarray(this.backend.vnetHdr ? TAP_HDR_SIZE : 0, length)
      let written = 0
      if (chain.writableLength >= NET_HDR_SIZE + packet.length) {
        try {
          scatter(context.memory, chain.writable, 0, hdr)
          scatter(context.memory, chain.writable, TAP_HDR_SIZE, this.rxHeaderTail)
          scatter(context.memory, chain.writable, NET_HDR_SIZE, packet)
        } catch (e) {
          context.fail(e)
          return
        }
        written = NET_HDR_SIZE + packet.length
        this.counters.rxFrames++
      } else {
        // Too big for the buffer the guest gave: a NIC drops it; the buffer goes back empty.
        this.counters.rxDropped++
      }
      completeChain(context, RX, chain.head, written)
    }
  }
}

/** Parses "52:54:00:12:34:56". */
export function parseMac(text: string): Uint8Array {
  const parts = text.split(':')
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p)))
    throw new RangeError(`bad MAC ${text}`)
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)))
}
