import type { GuestMemory, InterruptLine, MmioDevice, SavedState } from '@vmm/core'
import type { VirtioDevice } from '../device.js'
import type { SplitQueue } from '../queue/split-queue.js'
import {
  high,
  low,
  setHalf,
  TransportCore,
  type TransportCoreState,
  type TransportEvents,
} from '../transport/core.js'
import type { Disposable, InterruptTrigger, VirtioAccelerator } from './accelerator.js'

export type { TransportEvents } from '../transport/core.js'

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

/**
 * The virtio-mmio transport, version 2 (§4.2), as a core MmioDevice: feature negotiation, device
 * status, queue setup, notification, interrupt status and acknowledgement, configuration space and
 * its generation counter. It never throws for what the guest does.
 */
/** VirtioMmioTransport's saved state. */
export interface VirtioMmioState {
  deviceFeaturesSel: number
  driverFeaturesSel: number
  queueSel: number
  interruptStatus: number
  core: TransportCoreState
}

export class VirtioMmioTransport implements MmioDevice {
  private readonly core: TransportCore
  private deviceFeaturesSel = 0
  private driverFeaturesSel = 0
  private queueSel = 0
  private interruptStatus = 0
  private readonly registrations: Disposable[] = []
  private edge: InterruptTrigger | undefined
  private readonly scratch = new DataView(new ArrayBuffer(4))

  constructor(
    readonly device: VirtioDevice,
    memory: GuestMemory,
    private readonly irq: InterruptLine,
    events: TransportEvents = {},
  ) {
    this.core = new TransportCore(
      device,
      memory,
      {
        usedBuffer: () => this.raise(Interrupt.USED_BUFFER),
        configChange: () => this.raise(Interrupt.CONFIG_CHANGE),
      },
      events,
    )
  }

  get queues(): readonly SplitQueue[] {
    return this.core.queues
  }

  /** Every feature bit offered to the driver. */
  get offeredFeatures(): bigint {
    return this.core.offeredFeatures
  }

  /** The GSI the transport interrupts on. */
  get irqNumber(): number {
    return this.irq.irq
  }

  get deviceStatus(): number {
    return this.core.deviceStatus
  }

  /**
   * Moves the doorbells and the interrupt off the vCPU path where `accelerator` can: queue `i`'s
   * notification at `base + QueueNotify` with value `i`, and the interrupt on the IRQ line's GSI.
   */
  accelerate(base: number, accelerator: VirtioAccelerator): void {
    this.core.queues.forEach((_, i) => {
      const r = accelerator.notifier(base + MmioReg.QUEUE_NOTIFY, i, () => this.core.notify(i))
      if (r) this.registrations.push(r)
    })
    this.edge = accelerator.interrupt(this.irq.irq)
    if (this.edge) this.registrations.push(this.edge)
  }

  /** The machine pauses: doorbells and interrupts are held and the device quiesces (TransportCore.pause). */
  pause(): Promise<void> {
    return this.core.pause()
  }

  /** The machine resumes: the device goes on and what was held runs, in order. */
  resume(): void {
    this.core.resume()
  }

  /** The registers of §4.2.2 beyond the common core, and the core's state, for a snapshot. */
  saveState(): VirtioMmioState {
    const { deviceFeaturesSel, driverFeaturesSel, queueSel, interruptStatus } = this
    return { deviceFeaturesSel, driverFeaturesSel, queueSel, interruptStatus, core: this.core.saveState() }
  }

  /**
   * Puts a saved state back before the machine runs (checked first). A pending interrupt on a
   * level line is asserted again: the irqchip already holds it (restored before the devices), and
   * asserting it once more gives the hypervisor this source's level, so the driver's acknowledgement
   * lowers it. With an irqfd (set up in start, after this) the pending edge is in the irqchip's state.
   */
  restoreState(s: SavedState): void {
    s.only('deviceFeaturesSel', 'driverFeaturesSel', 'queueSel', 'interruptStatus', 'core')
    const v = {
      deviceFeaturesSel: s.int('deviceFeaturesSel', 0, 0xffff_ffff),
      driverFeaturesSel: s.int('driverFeaturesSel', 0, 0xffff_ffff),
      queueSel: s.int('queueSel', 0, 0xffff_ffff),
      interruptStatus: s.int('interruptStatus', 0, Interrupt.USED_BUFFER | Interrupt.CONFIG_CHANGE),
    }
    this.core.restoreState(s.nested('core'))
    Object.assign(this, v)
    if (this.interruptStatus !== 0 && !this.edge) this.irq.setLevel(true)
  }

  async dispose(): Promise<void> {
    this.resetDevice()
    for (const r of this.registrations.splice(0).reverse()) r.dispose()
    this.edge = undefined
    await this.device.dispose?.()
  }

  read(offset: number, data: Uint8Array): void {
    if (offset >= MmioReg.CONFIG) {
      data.fill(0)
      this.core.guarded(() => this.device.readConfig(offset - MmioReg.CONFIG, data))
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
      this.core.guarded(() => this.device.writeConfig(offset - MmioReg.CONFIG, data))
      return
    }
    if (data.length !== 4 || offset % 4 !== 0) return
    const value = data[0]! | (data[1]! << 8) | (data[2]! << 16) | ((data[3]! << 24) >>> 0)
    this.setRegister(offset, value >>> 0)
  }

  private get selected(): SplitQueue | undefined {
    return this.core.queues[this.queueSel]
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
        return this.core.deviceFeatureWord(this.deviceFeaturesSel)
      case MmioReg.QUEUE_NUM_MAX:
        // §4.2.2: 0 says the queue does not exist.
        return q?.maxSize ?? 0
      case MmioReg.QUEUE_READY:
        return q?.ready ? 1 : 0
      case MmioReg.INTERRUPT_STATUS:
        return this.interruptStatus
      case MmioReg.STATUS:
        return this.core.deviceStatus
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
        return this.core.configGeneration
      default:
        return 0
    }
  }

  private setRegister(offset: number, value: number): void {
    const setupQueue = this.core.queueForSetup(this.queueSel)
    switch (offset) {
      case MmioReg.DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = value
        return
      case MmioReg.DRIVER_FEATURES:
        this.core.setDriverFeatureWord(this.driverFeaturesSel, value)
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
        this.core.setQueueReady(this.queueSel, value === 1)
        return
      case MmioReg.QUEUE_NOTIFY:
        this.core.notify(value)
        return
      case MmioReg.INTERRUPT_ACK:
        this.acknowledge(value)
        return
      case MmioReg.STATUS:
        if (value === 0) this.resetDevice()
        else this.core.setStatus(value)
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

  /** The machine resets (Machine.reset): as the driver writing 0 to the status register. */
  reset(): void {
    this.resetDevice()
  }

  /** §4.2.3.1 / §2.1.2: writing 0 to Status resets the device and the transport. */
  private resetDevice(): void {
    this.core.reset()
    this.deviceFeaturesSel = this.driverFeaturesSel = this.queueSel = 0
    if (this.interruptStatus !== 0 && !this.edge) this.irq.setLevel(false)
    this.interruptStatus = 0
  }
}
