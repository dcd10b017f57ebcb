// What every virtio transport does the same way, whatever its registers look like (§2, §3): device
// status and reset, feature negotiation in 32-bit windows, queue set-up rules, activation with a
// DeviceContext, notification and DEVICE_NEEDS_RESET. virtio-mmio (§4.2) and virtio-pci (§4.1)
// differ only in where these live and how an interrupt reaches the driver, so each transport owns
// its register decoding and an InterruptSink, and delegates the rest here.
import type { GuestMemory, SavedState } from '@vmm/core'
import type { DeviceContext, VirtioDevice } from '../device.js'
import { SplitQueue, type SplitQueueState } from '../queue/split-queue.js'
import { Feature, Status } from '../spec.js'

/** Features every device gets from the transport and the queues. */
export const TRANSPORT_FEATURES: bigint =
  (1n << Feature.VERSION_1) | (1n << Feature.RING_INDIRECT_DESC) | (1n << Feature.RING_EVENT_IDX)

/** How the transport reports what happened to the device, for logs and tests. */
export interface TransportEvents {
  /** The device went to DEVICE_NEEDS_RESET. */
  onNeedsReset?(error: unknown): void
}

/** How a transport tells the driver something happened (an ISR bit and a line, an MSI-X vector). */
export interface InterruptSink {
  /** Queue `index` has used buffers the driver asked to hear about (§2.7.7 / §2.7.10). */
  usedBuffer(index: number): void
  /** The configuration changed, or the device needs a reset (§2.5.1, §2.1.2). */
  configChange(): void
}

/**
 * Status, features, queues and activation of one device, shared by the transports. It never throws
 * for what the guest does: a device exception becomes DEVICE_NEEDS_RESET.
 */
export class TransportCore {
  readonly queues: SplitQueue[]
  private status = 0
  private driverFeatures = 0n
  private generation = 0
  private context: (DeviceContext & { active: boolean }) | undefined
  /** Whether the device may touch guest memory and signal the driver (PCI Bus Master Enable). */
  private busMaster = true
  /** The machine is paused: nothing may touch guest memory or raise an interrupt until resume. */
  private paused = false
  /**
   * Held while bus mastering is off or the machine is paused: doorbells, used-buffer interrupts,
   * a configuration interrupt; they run, in order, once both allow it again.
   */
  private readonly heldNotify = new Set<number>()
  private readonly heldUsed = new Set<number>()
  private heldConfig = false

  constructor(
    readonly device: VirtioDevice,
    private readonly memory: GuestMemory,
    private readonly interrupts: InterruptSink,
    private readonly events: TransportEvents = {},
  ) {
    this.queues = device.queueSizes.map((n) => new SplitQueue(n))
  }

  /** Every feature bit offered to the driver. */
  get offeredFeatures(): bigint {
    return this.device.features | TRANSPORT_FEATURES
  }

  get deviceStatus(): number {
    return this.status
  }

  /** The configuration generation (§2.5.1); transports show as many bits of it as they have. */
  get configGeneration(): number {
    return this.generation
  }

  /** 32 bits of the offered features, window `select` (0: bits 0-31, 1: bits 32-63, more: 0). */
  deviceFeatureWord(select: number): number {
    return select > 1 ? 0 : Number((this.offeredFeatures >> BigInt(32 * select)) & 0xffff_ffffn)
  }

  /** 32 bits of what the driver accepted so far. */
  driverFeatureWord(select: number): number {
    return select > 1 ? 0 : Number((this.driverFeatures >> BigInt(32 * select)) & 0xffff_ffffn)
  }

  /** The driver writes window `select` of its features; §2.2.2: fixed once FEATURES_OK is set. */
  setDriverFeatureWord(select: number, value: number): void {
    if (this.status & Status.FEATURES_OK || select > 1) return
    const shift = BigInt(32 * select)
    this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) | (BigInt(value >>> 0) << shift)
  }

  /**
   * The queue whose size and ring addresses the driver may still write, or undefined: §4.2.3.2 /
   * §4.1.4.3.2, queue registers are written before the queue is enabled, and a live queue keeps
   * its set-up. Values are only checked when the driver sets DRIVER_OK (SplitQueue.validate), so a
   * bad size or ring fails the device instead of being silently changed.
   */
  queueForSetup(index: number): SplitQueue | undefined {
    const q = this.queues[index]
    return q !== undefined && !q.ready && !(this.status & Status.DRIVER_OK) ? q : undefined
  }

  /** Enables (or, on MMIO, disables) queue `index` before DRIVER_OK. */
  setQueueReady(index: number, ready: boolean): void {
    const q = this.queues[index]
    if (q && !(this.status & Status.DRIVER_OK)) q.ready = ready
  }

  /** A device_status write (§2.1): 0 resets, FEATURES_OK is checked, DRIVER_OK activates. */
  setStatus(value: number): void {
    if (value === 0) {
      this.reset()
      return
    }
    const before = this.status
    let next = (value & ~Status.DEVICE_NEEDS_RESET) | (before & Status.DEVICE_NEEDS_RESET)
    if (next & Status.FEATURES_OK && !(before & Status.FEATURES_OK)) {
      // §2.2.1 / §3.1.1: accept only a subset of what was offered, and VERSION_1 (§4.2.3.1.1, §4.1.2).
      const ok =
        (this.driverFeatures & ~this.offeredFeatures) === 0n &&
        ((this.driverFeatures >> Feature.VERSION_1) & 1n) === 1n
      if (!ok) next &= ~Status.FEATURES_OK
    }
    // §2.1.2: FEATURES_OK, once set, is not cleared by the driver short of a reset.
    if (before & Status.FEATURES_OK) next |= Status.FEATURES_OK
    this.status = next
    if (next & Status.DRIVER_OK && !(before & Status.DRIVER_OK) && next & Status.FEATURES_OK) this.activate()
  }

  /**
   * PCI Bus Master Enable (PCI 3.0 §6.2.2; virtio-mmio has no such bit and never clears it). While
   * it is off the device must not read or write guest memory, and an MSI-X message is a memory
   * write: doorbells and interrupts are held (reading a ring to decide on an interrupt is guest
   * memory too) and run, in order, once the driver turns bus mastering back on.
   */
  setBusMaster(enabled: boolean): void {
    if (enabled === this.busMaster) return
    this.busMaster = enabled
    if (enabled && !this.paused) this.release()
  }

  /**
   * The machine pauses: from now on doorbells (an ioeventfd that fired before the vCPUs stopped)
   * and interrupts are held, and the device stops its host-side sources and finishes what it had
   * in flight (VirtioDevice.pause). Resolves when the device no longer touches guest memory.
   */
  async pause(): Promise<void> {
    if (this.paused) return
    this.paused = true
    await this.device.pause?.()
  }

  /** The machine resumes: the device goes on, then what was held runs in order. */
  resume(): void {
    if (!this.paused) return
    this.paused = false
    try {
      this.device.resume?.()
    } catch (e) {
      if (this.context) this.context.fail(e)
      else this.needsReset(e)
    }
    if (this.busMaster) this.release()
  }

  /** Whether doorbells and interrupts must wait (bus mastering off, or the machine paused). */
  private get held(): boolean {
    return !this.busMaster || this.paused
  }

  private release(): void {
    const kicks = [...this.heldNotify]
    const used = [...this.heldUsed]
    const config = this.heldConfig
    this.heldNotify.clear()
    this.heldUsed.clear()
    this.heldConfig = false
    for (const i of kicks) this.notify(i)
    for (const i of used) this.context?.signalUsed(i)
    if (config) this.interrupts.configChange()
  }

  /** The driver notified queue `index` (§2.7.13.3); ignored unless the device is live. */
  notify(index: number): void {
    const context = this.context
    if (!context?.active || !this.queues[index]?.ready) return
    if (this.held) {
      this.heldNotify.add(index)
      return
    }
    try {
      this.device.notify(index)
    } catch (e) {
      context.fail(e)
    }
  }

  /** Runs device code on the vCPU path: a device bug becomes DEVICE_NEEDS_RESET, not a crash. */
  guarded(f: () => void): void {
    try {
      f()
    } catch (e) {
      if (this.context) this.context.fail(e)
      else this.needsReset(e)
    }
  }

  /**
   * For a snapshot of a paused machine: status, features, each queue, and the device's own state.
   * A live device that cannot save its state refuses, naming its type.
   */
  saveState(): TransportCoreState {
    const active = (this.status & Status.DRIVER_OK) !== 0
    if (active && !this.device.saveState)
      throw new Error(`virtio device type ${this.device.deviceType} cannot save its state yet`)
    return {
      status: this.status,
      driverFeatures: `0x${this.driverFeatures.toString(16)}`,
      generation: this.generation,
      queues: this.queues.map((q) => q.saveState()),
      device: this.device.saveState?.() ?? null,
      // Doorbells and interrupts held while the machine paused (a request pause() finished has
      // its interrupt here): they run at the restored machine's resume, or the driver would wait
      // for a completion it never hears of.
      held: { notify: [...this.heldNotify], used: [...this.heldUsed], config: this.heldConfig },
    }
  }

  /**
   * Puts a saved state back on a device that has not run: every field is checked first, as a
   * guest's register writes would be, then the features are re-negotiated as the driver did and a
   * device that was live is activated again with its queues (which validate() checks against
   * guest RAM: a ring outside it fails the device, it never reaches memory).
   */
  restoreState(s: SavedState): void {
    s.only('status', 'driverFeatures', 'generation', 'queues', 'device', 'held')
    const status = s.u8('status')
    const text = s.string('driverFeatures', /^0x[0-9a-f]{1,16}$/)
    const features = BigInt(text)
    if ((features & ~this.offeredFeatures) !== 0n)
      s.refuse('driverFeatures', `${text} has bits this device does not offer`)
    const generation = s.int('generation', 0, 0xffff_ffff)
    const queues = s.list('queues', this.queues.length)
    // Absent in snapshots written before it was saved: nothing held.
    const held = s.has('held') ? s.nested('held').only('notify', 'used', 'config') : undefined
    const n = this.queues.length - 1
    const heldNotify = held?.ints('notify', 0, n, n + 1) ?? []
    const heldUsed = held?.ints('used', 0, n, n + 1) ?? []
    const heldConfig = held?.bool('config') ?? false
    this.reset()
    queues.forEach((q, i) => {
      this.queues[i]!.restoreState(q)
    })
    this.driverFeatures = features
    this.generation = generation
    this.status = status
    if (status & Status.DRIVER_OK && status & Status.FEATURES_OK && !(status & Status.DEVICE_NEEDS_RESET)) {
      this.activate()
      if (!s.isNull('device')) this.device.restoreState?.(s.nested('device'))
    }
    for (const i of heldNotify) this.heldNotify.add(i)
    for (const i of heldUsed) this.heldUsed.add(i)
    this.heldConfig = heldConfig
  }

  /** §2.1.2 / §4.2.3.1 / §4.1.4.3.2: status 0 resets the device, its queues and the features. */
  reset(): void {
    if (this.context) this.context.active = false
    this.context = undefined
    this.device.reset()
    for (const q of this.queues) q.reset()
    this.status = 0
    this.driverFeatures = 0n
    this.heldNotify.clear()
    this.heldUsed.clear()
    this.heldConfig = false
  }

  private activate(): void {
    const features = this.driverFeatures
    const core = this
    const context = {
      memory: this.memory,
      queues: this.queues,
      features,
      active: true,
      signalUsed(index: number) {
        if (!context.active) return
        if (core.held) {
          core.heldUsed.add(index)
          return
        }
        const q = core.queues[index]
        try {
          if (q?.needsInterrupt(core.memory)) core.interrupts.usedBuffer(index)
        } catch (e) {
          context.fail(e)
        }
      },
      configChanged() {
        if (!context.active) return
        core.generation = (core.generation + 1) >>> 0
        core.configInterrupt()
      },
      fail(error: unknown) {
        if (!context.active) return
        context.active = false
        core.needsReset(error)
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
    this.configInterrupt()
  }

  private configInterrupt(): void {
    if (this.held) this.heldConfig = true
    else this.interrupts.configChange()
  }
}

/** TransportCore's saved state: what §2 gives every transport, and the device's own. */
export interface TransportCoreState {
  status: number
  /** The accepted features, hex (JSON has no 64-bit integers). */
  driverFeatures: string
  generation: number
  queues: SplitQueueState[]
  device: unknown
  held: { notify: number[]; used: number[]; config: boolean }
}

/** The low 32 bits of a ring address (registers show 64-bit addresses as two halves). */
export function low(v: number | undefined): number {
  return (v ?? 0) % 2 ** 32
}

export function high(v: number | undefined): number {
  return Math.floor((v ?? 0) / 2 ** 32)
}

/**
 * Sets one 32-bit half of a 64-bit address. A high half past 2^21 is clamped there: the address is
 * then 2^53 or more, beyond any guest, so validation fails instead of wrapping into RAM.
 */
export function setHalf(current: number, isHigh: boolean, value: number): number {
  return isHigh ? Math.min(value, 2 ** 21) * 2 ** 32 + low(current) : high(current) * 2 ** 32 + value
}
