import type { SavedState } from '@vmm/core'
import { completeChain, type DeviceContext, drainQueue, takeChain, type VirtioDevice } from '../../device.js'
import { scatter, views } from '../../queue/buffers.js'
import type { DescriptorChain } from '../../queue/split-queue.js'
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

/**
 * struct virtio_net_hdr with VERSION_1: num_buffers is always there (§5.1.6). @vmm/kvm's TAP uses
 * the same 12 bytes (TUNSETVNETHDRSZ), so headers pass through unchanged.
 */
export const NET_HDR_SIZE = 12
/** Where num_buffers sits in the header; the TAP leaves it alone, the device sets it to 1. */
const NUM_BUFFERS = 10
/** The largest frame: a 64 KiB GSO packet plus its Ethernet header. */
const MAX_FRAME = 65550
/** The largest frame without guest TSO: 1500 bytes of MTU, Ethernet header and a VLAN tag. */
const MAX_PLAIN_FRAME = 1518
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
 * the guest sees or sets is honoured by the host kernel. Transmit hands views of guest memory to
 * writev. Receive reads straight into the guest's buffer when it is one piece big enough for any
 * frame the negotiated features allow (Linux's buffers without MRG_RXBUF are), else into one buffer
 * allocated up front and copied; either way the steady state allocates no packet buffers.
 */
export class NetDevice implements VirtioDevice {
  readonly deviceType = DeviceType.NET
  readonly queueSizes = [256, 256]
  readonly features: bigint
  readonly counters: NetCounters = { rxFrames: 0, txFrames: 0, rxDropped: 0, txDropped: 0 }
  private readonly config = new Uint8Array(6)
  /** The copy path's frame: header then packet. Without a backend header the header stays zero. */
  private readonly frame = new Uint8Array(NET_HDR_SIZE + MAX_FRAME)
  private context: DeviceContext | undefined
  private watching = false
  /** The machine is paused: frames wait in the TAP, the TAP is not watched. */
  private paused = false
  /** A receive chain taken while no frame was waiting; it gets the next one. */
  private rxChain: DescriptorChain | undefined
  /** The frame size a receive buffer must hold to be read into directly. */
  private directMin = NET_HDR_SIZE + MAX_FRAME

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
    this.directMin =
      NET_HDR_SIZE +
      (hasFeature(context.features, NetFeature.GUEST_TSO4) ||
      hasFeature(context.features, NetFeature.GUEST_TSO6)
        ? MAX_FRAME
        : MAX_PLAIN_FRAME)
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
    this.rxChain = undefined
    this.watch(false)
  }

  /** The machine pauses: stop watching the TAP, so no frame is written into guest memory. */
  pause(): void {
    this.paused = true
    this.watch(false)
  }

  /** Frames that waited in the TAP go to the guest now, in order, and the TAP is watched again. */
  resume(): void {
    this.paused = false
    this.receive()
  }

  dispose(): void {
    this.backend.close()
  }

  /**
   * For a snapshot: the receive buffer taken from the ring and waiting for a frame (its head; the
   * restored device reads that chain again from the descriptor table), and the MAC the guest was
   * given. Frames waiting in the TAP stay with the TAP: the restored machine opens its own.
   */
  saveState(): { rxHead: number | null; mac: string } {
    return { rxHead: this.rxChain?.head ?? null, mac: formatMac(this.config) }
  }

  /**
   * After the restored transport activated the device: takes the held receive buffer back. A MAC
   * that differs from the saved one is a clone's override: the device offers the new MAC, but a
   * Linux driver reads it only when it probes the device, so the running guest keeps the old one
   * until it is told otherwise (README, "Clones").
   */
  restoreState(s: SavedState): void {
    s.only('rxHead', 'mac')
    s.string('mac', /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/)
    const context = this.context
    if (s.isNull('rxHead') || !context) return
    const head = s.int('rxHead', 0, 0xffff)
    const queue = context.queues[RX]
    if (!queue?.ready) s.refuse('rxHead', 'a held receive buffer, but the receive queue is not live')
    try {
      this.rxChain = queue.chainAt(context.memory, head)
    } catch (e) {
      s.refuse('rxHead', (e as Error).message)
    }
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
      const frame = views(context.memory, chain.readable, this.backend.vnetHdr ? 0 : NET_HDR_SIZE)
      if (this.backend.write(frame) < 0) this.counters.txDropped++
      else this.counters.txFrames++
      return 0
    })
  }

  /** Moves frames from the backend into receive buffers while both exist. */
  private receive(): void {
    const context = this.context
    if (!context || this.paused) return
    for (;;) {
      const chain = this.rxChain ?? takeChain(context, RX)
      // No buffer: stop watching until the driver posts some (notify RX), so a waiting frame does
      // not spin the event loop; it stays queued in the host kernel meanwhile.
      this.watch(chain !== undefined)
      if (!chain) return
      this.rxChain = chain
      let direct: Uint8Array | undefined
      try {
        const v = views(context.memory, chain.writable)
        if (v.length === 1 && v[0]!.length >= this.directMin) direct = v[0]
      } catch (e) {
        context.fail(e)
        return
      }
      const target = direct ?? this.frame
      const skip = this.backend.vnetHdr ? 0 : NET_HDR_SIZE
      const n = this.backend.read(target.subarray(skip))
      if (n < 0) return
      this.rxChain = undefined
      const length = skip + n
      let written = 0
      if (direct) {
        // A read that filled the buffer may have been cut short (a TAP truncates silently when
        // its MTU is above what the guest was told): drop it rather than pass a partial frame.
        if (length < direct.length) {
          if (skip) direct.fill(0, 0, NET_HDR_SIZE)
          direct[NUM_BUFFERS] = 1
          direct[NUM_BUFFERS + 1] = 0
          written = length
        }
      } else if (length <= chain.writableLength) {
        this.frame[NUM_BUFFERS] = 1
        this.frame[NUM_BUFFERS + 1] = 0
        try {
          scatter(context.memory, chain.writable, 0, this.frame.subarray(0, length))
        } catch (e) {
          context.fail(e)
          return
        }
        written = length
      }
      // A frame too big for the buffer the guest gave is dropped, as by a NIC; the buffer goes back empty.
      if (written > 0) this.counters.rxFrames++
      else this.counters.rxDropped++
      completeChain(context, RX, chain.head, written)
    }
  }
}

/** "52:54:00:12:34:56" from 6 bytes. */
export function formatMac(mac: Uint8Array): string {
  return [...mac.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':')
}

/** Parses "52:54:00:12:34:56". */
export function parseMac(text: string): Uint8Array {
  const parts = text.split(':')
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p)))
    throw new RangeError(`bad MAC ${text}`)
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)))
}
