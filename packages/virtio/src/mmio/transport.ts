import type { GuestMemory, InterruptLine, MmioDevice } from '@vmm/core'
import type { DeviceContext, VirtioDevice } from '../device.js'
import { SplitQueue } from '../queue/split-queue.js'
import { Feature, Status } from '../spec.js'
import type { Disposable, InterruptTrigger, VirtioAccelerator } from './accelerator.js'

/** virtio-mmio register offsets, version 2 (§4.2.2). */
export const MmioReg = {
  MAGIC_VALUE: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  QUEUE_NUM_MAX: 0x034,
  QUEUE_NUM: 0x038,
  QUEUE_READY: 0x044,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DRIVER_HIGH: 0x094,
  QUEUE_DEVICE_LOW: 0x0a0,
  QUEUE_DEVICE_HIGH: 0x0a4,
  SHM_SEL: 0x0ac,
  SHM_LEN_LOW: 0x0b0,
  SHM_LEN_HIGH: 0x0b4,
  SHM_BASE_LOW: 0x0b8,
  SHM_BASE_HIGH: 0x0bc,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
} as const

/** "virt" (§4.2.2). */
export const MMIO_MAGIC = 0x74726976
/** The size of a virtio-mmio window: registers, then configuration space, in one page. */
export const MMIO_WINDOW_SIZE = 0x1000
/** VendorID: "VMM\0", little-endian. Drivers do not match on it. */
export const VENDOR_ID = 0x004d4d56

/** InterruptStatus bits (§4.2.2). */
export const Interrupt = { USED_BUFFER: 1, CONFIG_CHANGE: 2 } as const

/** Features every device gets from the transport and the queues. */
const TRANSPORT_FEATURES =
  (1n << Feature.VERSION_1) | (1n << Feature.RING_INDIRECT_DESC) | (1n << Feature.RING_EVENT_IDX)

/** How the transport reports what happened to the device, for logs and tests. */
export interface TransportEvents {
  /** The device went to DEVICE_NEEDS_RESET. */
  onNeedsReset?(error: unknown): void
}

/**
 * The virtio-mmio transport, version 2 (§4.2), as a core MmioDevice: feature negotiation, device
 * status, queue setup, notification, interrupt status and acknowledgement, configuration space and
 * its generation counter. It never throws for what the guest does.
 */
export class VirtioMmioTransport implements MmioDevice {
  readonly queues: SplitQueue[]
  private status = 0
  private deviceFeaturesSel = 0
  private driverFeaturesSel = 0
  private driverFeatures = 0n
  private queueSel = 0
  private interruptStatus = 0
  private configGeneration = 0
  private context: (DeviceContext & { active: boolean }) | undefined
  private readonly registrations: Disposable[] = []
  private edge: InterruptTrigger | undefined
  private readonly scratch = new DataView(new ArrayBuffer(4))

  constructor(
    readonly device: VirtioDevice,
    private readonly memory: GuestMemory,
    private readonly irq: InterruptLine,
    private readonly events: TransportEvents = {},
  ) {
    this.queues = device.queueSizes.map((n) => new SplitQueue(n))
  }

  /** Every feature bit offered to the driver. */
  get offeredFeatures(): bigint {
    return this.device.features | TRANSPORT_FEATURES
  }

  /** The GSI the transport interrupts on. */
  get irqNumber(): number {
    return this.irq.irq
  }

  get deviceStatus(): number {
    return this.status
  }

  /**
   * Moves the doorbells and the interrupt off the vCPU path where `accelerator` can: queue `i`'s
   * notification at `base + QueueNotify` with value `i`, and the interrupt on the IRQ line's GSI.
   */
  accelerate(base: number, accelerator: VirtioAccelerator): void {
    this.queues.forEach((_, i) => {
      const r = accelerator.notifier(base + MmioReg.QUEUE_NOTIFY, i, () => this.notify(i))
      if (r) this.registrations.push(r)
    })
    this.edge = accelerator.interrupt(this.irq.irq)
    if (this.edge) this.registrations.push(this.edge)
  }

  /** Undoes `accelerate` and releases the device's host resources. */
  async dispose(): Promise<void> {
    this.resetDevice()
    for (const r of this.registrations.splice(0).reverse()) r.dispose()
    this.edge = undefined
    await this.device.dispose?.()
  }

  read(offset: number, data: Uint8Array): void {
    if (offset >= MmioReg.CONFIG) {
      data.fill(0)
      this.guarded(() => this.device.readConfig(offset - MmioReg.CONFIG, data))
      return
    }
    // §4.2.2.2: registers are read 32 bits wide and aligned; anything else reads as zero.
    if (data.length !== 4 || offset % 4 !== 0) {
      data.fill(0)
      return
    }
    this.scratch.setUint32(0, this.register(offset), true)
    data.set(new Uint8Array(this.scratch.buffer))
  }

  write(offset: number, data: Uint8Array): void {
    if (offset >= MmioReg.CONFIG) {
      this.guarded(() => this.device.writeConfig(offset - MmioReg.CONFIG, data))
      return
    }
    if (data.length !== 4 || offset % 4 !== 0) return
    const value = data[0]! | (data[1]! << 8) | (data[2]! << 16) | ((data[3]! << 24) >>> 0)
    this.setRegister(offset, value >>> 0)
  }

  /** Runs device code on the vCPU path: a device bug becomes DEVICE_NEEDS_RESET, not a crash. */
  private guarded(f: () => void): void {
    try {
      f()
    } catch (e) {
      if (this.context) this.context.fail(e)
      else this.needsReset(e)
    }
  }

  private get selected(): SplitQueue | undefined {
    return this.queues[this.queueSel]
  }

  private register(offset: number): number {
    const q = this.selected
    switch (offset) {
      case MmioReg.MAGIC_VALUE:
        return MMIO_MAGIC
      case MmioReg.VERSION:
        return 2
      case MmioReg.DEVICE_ID:
        return this.device.deviceType
      case MmioReg.VENDOR_ID:
        return VENDOR_ID
      case MmioReg.DEVICE_FEATURES:
        return this.deviceFeaturesSel > 1
          ? 0
          : Number((this.offeredFeatures >> BigInt(32 * this.deviceFeaturesSel)) & 0xffff_ffffn)
      case MmioReg.QUEUE_NUM_MAX:
        // §4.2.2: 0 says the queue does not exist.
        return q?.maxSize ?? 0
      case MmioReg.QUEUE_READY:
        return q?.ready ? 1 : 0
      case MmioReg.INTERRUPT_STATUS:
        return this.interruptStatus
      case MmioReg.STATUS:
        return this.status
      case MmioReg.QUEUE_DESC_LOW:
        return low(q?.descTable)
      case MmioReg.QUEUE_DESC_HIGH:
        return high(q?.descTable)
      case MmioReg.QUEUE_DRIVER_LOW:
        return low(q?.availRing)
      case MmioReg.QUEUE_DRIVER_HIGH:
        return high(q?.availRing)
      case MmioReg.QUEUE_DEVICE_LOW:
        return low(q?.usedRing)
      case MmioReg.QUEUE_DEVICE_HIGH:
        return high(q?.usedRing)
      // §4.2.2: a length of all ones says "no such shared memory region"; the devices have none.
      case MmioReg.SHM_LEN_LOW:
      case MmioReg.SHM_LEN_HIGH:
      case MmioReg.SHM_BASE_LOW:
      case MmioReg.SHM_BASE_HIGH:
        return 0xffff_ffff
      case MmioReg.CONFIG_GENERATION:
        return this.configGeneration
      default:
        return 0
    }
  }

  private setRegister(offset: number, value: number): void {
    const q = this.selected
    // §4.2.3.2: queue registers are written before QueueReady; a ready queue keeps its set-up.
    const setupQueue = q !== undefined && !q.ready && !(this.status & Status.DRIVER_OK) ? q : undefined
    switch (offset) {
      case MmioReg.DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = value
        return
      case MmioReg.DRIVER_FEATURES:
        // §2.2.2: features are fixed once FEATURES_OK is set.
        if (this.status & Status.FEATURES_OK || this.driverFeaturesSel > 1) return
        {
          const shift = BigInt(32 * this.driverFeaturesSel)
          this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) | (BigInt(value) << shift)
        }
        return
      case MmioReg.DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = value
        return
      case MmioReg.QUEUE_SEL:
        this.queueSel = value
        return
      case MmioReg.QUEUE_NUM:
        if (setupQueue) setupQueue.size = value
        return
      case MmioReg.QUEUE_READY:
        if (q && !(this.status & Status.DRIVER_OK)) q.ready = value === 1
        return
      case MmioReg.QUEUE_NOTIFY:
        this.notify(value)
        return
      case MmioReg.INTERRUPT_ACK:
        this.acknowledge(value)
        return
      case MmioReg.STATUS:
        this.setStatus(value)
        return
      case MmioReg.QUEUE_DESC_LOW:
      case MmioReg.QUEUE_DESC_HIGH:
        if (setupQueue)
          setupQueue.descTable = setHalf(setupQueue.descTable, offset === MmioReg.QUEUE_DESC_HIGH, value)
        return
      case MmioReg.QUEUE_DRIVER_LOW:
      case MmioReg.QUEUE_DRIVER_HIGH:
        if (setupQueue)
          setupQueue.availRing = setHalf(setupQueue.availRing, offset === MmioReg.QUEUE_DRIVER_HIGH, value)
        return
      case MmioReg.QUEUE_DEVICE_LOW:
      case MmioReg.QUEUE_DEVICE_HIGH:
        if (setupQueue)
          setupQueue.usedRing = setHalf(setupQueue.usedRing, offset === MmioReg.QUEUE_DEVICE_HIGH, value)
        return
      default:
        return
    }
  }

  private setStatus(value: number): void {
    if (value === 0) {
      this.resetDevice()
      return
    }
    const before = this.status
    let next = (value & ~Status.DEVICE_NEEDS_RESET) | (before & Status.DEVICE_NEEDS_RESET)
    if (next & Status.FEATURES_OK && !(before & Status.FEATURES_OK)) {
      // §2.2.1 / §3.1.1: accept only a subset of what was offered, and VERSION_1 (§4.2.3.1.1 for v2).
      const ok =
        (this.driverFeatures & ~this.offeredFeatures) === 0n &&
        ((this.driverFeatures >> Feature.VERSION_1) & 1n) === 1n
      if (!ok) next &= ~Status.FEATURES_OK
    }
    this.status = next
    if (next & Status.DRIVER_OK && !(before & Status.DRIVER_OK) && next & Status.FEATURES_OK) this.activate()
  }

  private activate(): void {
    const features = this.driverFeatures
    const transport = this
    const context = {
      memory: this.memory,
      queues: this.queues,
      features,
      active: true,
      signalUsed(index: number) {
        if (!context.active) return
        const q = transport.queues[index]
        try {
          if (q?.needsInterrupt(transport.memory)) transport.raise(Interrupt.USED_BUFFER)
        } catch (e) {
          context.fail(e)
        }
      },
      configChanged() {
        if (!context.active) return
        transport.configGeneration = (transport.configGeneration + 1) >>> 0
        transport.raise(Interrupt.CONFIG_CHANGE)
      },
      fail(error: unknown) {
        if (!context.active) return
        context.active = false
        transport.needsReset(error)
      },
    }
    this.context = context
    try {
      for (const q of this.queues) {
        q.eventIdx = ((features >> Feature.RING_EVENT_IDX) & 1n) === 1n
        q.indirect = ((features >> Feature.RING_INDIRECT_DESC) & 1n) === 1n
        if (q.ready) q.validate(this.memory)
      }
      this.device.activate(context)
    } catch (e) {
      context.fail(e)
    }
  }

  /** §2.1.2: the device stops using the queues and tells the driver through a config interrupt. */
  private needsReset(error: unknown): void {
    this.status |= Status.DEVICE_NEEDS_RESET
    this.events.onNeedsReset?.(error)
    this.raise(Interrupt.CONFIG_CHANGE)
  }

  private notify(index: number): void {
    const context = this.context
    if (!context?.active || !this.queues[index]?.ready) return
    try {
      this.device.notify(index)
    } catch (e) {
      context.fail(e)
    }
  }

  private raise(bits: number): void {
    const before = this.interruptStatus
    this.interruptStatus |= bits
    if (this.edge) this.edge.trigger()
    else if (before === 0) this.irq.setLevel(true)
  }

  private acknowledge(bits: number): void {
    this.interruptStatus &= ~bits
    if (this.edge) return
    this.irq.setLevel(false)
    // A cause the driver did not acknowledge stays pending: raise it again, so an edge-triggered
    // pin sees a new edge as well.
    if (this.interruptStatus !== 0) this.irq.setLevel(true)
  }

  /** §4.2.3.1 / §2.1.2: writing 0 to Status resets the device and the transport. */
  private resetDevice(): void {
    if (this.context) this.context.active = false
    this.context = undefined
    this.device.reset()
    for (const q of this.queues) q.reset()
    this.status = 0
    this.driverFeatures = 0n
    this.deviceFeaturesSel = this.driverFeaturesSel = this.queueSel = 0
    if (this.interruptStatus !== 0 && !this.edge) this.irq.setLevel(false)
    this.interruptStatus = 0
  }
}

function low(v: number | undefined): number {
  return (v ?? 0) % 2 ** 32
}

function high(v: number | undefined): number {
  return Math.floor((v ?? 0) / 2 ** 32)
}

/**
 * Sets one 32-bit half of a 64-bit address. A high half past 2^21 is clamped there: the address is
 * then 2^53 or more, beyond any guest, so validation fails instead of wrapping into RAM.
 */
function setHalf(current: number, isHigh: boolean, value: number): number {
  return isHigh ? Math.min(value, 2 ** 21) * 2 ** 32 + low(current) : high(current) * 2 ** 32 + value
}
