// The virtio-pci modern transport (virtio 1.2 §4.1) for any VirtioDevice: a PCI Express function with
// vendor 0x1af4 and device 0x1040 + type (§4.1.2), one 64-bit memory BAR holding the common
// configuration, ISR, device configuration and notification structures and the MSI-X table and PBA,
// and vendor-specific capabilities that tell the driver where each structure is (§4.1.4). Status,
// features and queue set-up are the shared TransportCore's, as for virtio-mmio; this file decodes
// the registers and chooses how interrupts go out (MSI-X vectors, else ISR + INTx).
import type { GuestMemory, MmioDevice, SavedState } from '@vmm/core'
import { CapabilityId, Command, overlaps, PciDevice, type PciFunctionState, Reg } from '@vmm/pci'
import type { VirtioDevice } from '../device.js'
import type { Disposable, VirtioAccelerator } from '../mmio/accelerator.js'
import type { SplitQueue } from '../queue/split-queue.js'
import { TransportCore, type TransportCoreState, type TransportEvents } from '../transport/core.js'
import { CommonConfig, type CommonConfigState } from './common-cfg.js'
import {
  CLASS_CODES,
  CommonCfg,
  DEVICE_CFG_LENGTH,
  IsrBit,
  Layout,
  OTHER_CLASS,
  PciCapType,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_DEVICE_BASE,
  VIRTIO_PCI_REVISION,
  VIRTIO_PCI_VENDOR,
} from './layout.js'

export {
  CommonCfg,
  IsrBit,
  Layout,
  PciCapType,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_DEVICE_BASE,
  VIRTIO_PCI_REVISION,
  VIRTIO_PCI_VENDOR,
} from './layout.js'

/** A virtio-pci function's saved state: the PCI function, common_cfg's own registers, ISR, the core. */
export interface VirtioPciState {
  function: PciFunctionState
  common: CommonConfigState
  isr: number
  core: TransportCoreState
}

/** Notifications by path, to show where doorbells went (tests, benchmarks). */
export interface NotifyCounters {
  /** Writes to the notification area that exited to the VMM. */
  trapped: number
  /** Doorbells taken by a hypervisor eventfd (KVM ioeventfd). */
  eventfd: number
}

/**
 * A virtio device on PCI (§4.1). Construct, attach to a host bridge, then optionally `accelerate`.
 * It never throws for what the guest does.
 */
export class VirtioPciTransport extends PciDevice {
  readonly counters: NotifyCounters = { trapped: 0, eventfd: 0 }
  private readonly core: TransportCore
  /** Offset in configuration space of the PCI configuration access capability (§4.1.4.9). */
  private readonly cfgCap: number
  private readonly common: CommonConfig
  private isr = 0
  private accelerator: VirtioAccelerator | undefined
  private doorbells: Disposable[] = []
  private closed = false

  constructor(
    readonly device: VirtioDevice,
    memory: GuestMemory,
    events: TransportEvents = {},
    name = `virtio-pci-${device.deviceType}`,
  ) {
    const deviceId = VIRTIO_PCI_DEVICE_BASE + device.deviceType
    super({
      name,
      vendorId: VIRTIO_PCI_VENDOR,
      deviceId,
      classCode: CLASS_CODES[device.deviceType] ?? OTHER_CLASS,
      revision: VIRTIO_PCI_REVISION,
      subsystemVendorId: VIRTIO_PCI_VENDOR,
      subsystemId: deviceId,
      interruptPin: 1,
      pcie: true,
    })
    this.core = new TransportCore(
      device,
      memory,
      { usedBuffer: (i) => this.usedBuffer(i), configChange: () => this.configChange() },
      events,
    )
    // A PCI function comes out of reset with bus mastering off (Command = 0, PCI 3.0 §6.2.2).
    this.core.setBusMaster(false)
    const queues = device.queueSizes.length
    if (queues * Layout.NOTIFY_OFF_MULTIPLIER > Layout.MSIX_TABLE - Layout.NOTIFY)
      throw new RangeError(`${name}: ${queues} queues do not fit the notification area`)
    this.common = new CommonConfig(
      this.core,
      () => this.msix?.count ?? 0,
      () => this.resetDevice(),
    )
    const bar: MmioDevice = { read: (o, d) => this.barRead(o, d), write: (o, d) => this.barWrite(o, d) }
    // §4.1.4: 64-bit BARs; the host bridge puts them in its 64-bit window when it has one.
    // Prefetchable, as QEMU's modern virtio BAR is: an OS puts a non-prefetchable BAR only in a
    // non-prefetchable window, and a PC host bridge's 64-bit window is prefetchable (Linux cannot
    // claim a non-prefetchable BAR there and moves it below 4 GiB).
    this.addBar(Layout.BAR, { kind: 'memory64', size: Layout.SIZE, prefetchable: true, device: bar })
    // One vector for configuration changes and one per queue (§4.1.5.1.2), as Linux asks first.
    this.addMsix(queues + 1, Layout.BAR, Layout.MSIX_TABLE, Layout.MSIX_PBA)
    this.addVirtioCap(PciCapType.COMMON, Layout.COMMON, CommonCfg.SIZE)
    const notify = this.addVirtioCap(
      PciCapType.NOTIFY,
      Layout.NOTIFY,
      queues * Layout.NOTIFY_OFF_MULTIPLIER,
      4,
    )
    this.config.set32(notify + 16, Layout.NOTIFY_OFF_MULTIPLIER)
    this.addVirtioCap(PciCapType.ISR, Layout.ISR, 1)
    this.addVirtioCap(PciCapType.DEVICE, Layout.DEVICE, DEVICE_CFG_LENGTH)
    // §4.1.4.9: bar, offset and length are the driver's to write, then pci_cfg_data reaches the BAR.
    this.cfgCap = this.addVirtioCap(PciCapType.PCI, 0, 0, 4)
    this.config.writable(this.cfgCap + 4, 1, 0xff)
    this.config.writable(this.cfgCap + 8, 4, 0xffffffff)
    this.config.writable(this.cfgCap + 12, 4, 0xffffffff)
    this.config.writable(this.cfgCap + 16, 4, 0xffffffff)
  }

  get queues(): readonly SplitQueue[] {
    return this.core.queues
  }

  get offeredFeatures(): bigint {
    return this.core.offeredFeatures
  }

  get deviceStatus(): number {
    return this.core.deviceStatus
  }

  /** The guest physical address of queue `index`'s doorbell, while BAR 0 decodes. */
  notifyAddress(index: number): number | undefined {
    const base = this.decodedAddress(Layout.BAR)
    return base === undefined ? undefined : base + Layout.NOTIFY + index * Layout.NOTIFY_OFF_MULTIPLIER
  }

  /**
   * Takes doorbells off the vCPU path where `accelerator` can (KVM ioeventfd): a 2-byte eventfd
   * without datamatch at each queue's own address, which is what a driver writes (§4.1.4.4; hosts
   * without KVM_CAP_IOEVENTFD_ANY_LENGTH match the width exactly, other widths still trap). They
   * follow BAR 0 when the guest moves it or turns decoding off. Interrupts need nothing here: MSI-X
   * goes through the bus's MsiRouter (GSI routes + irqfd on KVM).
   */
  accelerate(accelerator: VirtioAccelerator): void {
    this.accelerator = accelerator
    this.placeDoorbells(this.decodedAddress(Layout.BAR))
  }

  protected override onBarMoved(index: number, address: number | undefined): void {
    if (index === Layout.BAR) this.placeDoorbells(address)
  }

  private placeDoorbells(base: number | undefined): void {
    for (const d of this.doorbells.splice(0)) d.dispose()
    const accelerator = this.accelerator
    if (!accelerator || base === undefined || this.closed) return
    this.core.queues.forEach((_, i) => {
      const r = accelerator.notifier(
        base + Layout.NOTIFY + i * Layout.NOTIFY_OFF_MULTIPLIER,
        i,
        () => {
          this.counters.eventfd++
          this.core.notify(i)
        },
        { length: 2, datamatch: false },
      )
      if (r) this.doorbells.push(r)
    })
  }

  /** Unmaps the BAR, drops doorbells and MSI-X routes; the host bridge calls it too, so it may run twice. */
  override dispose(): void {
    this.accelerator = undefined
    this.placeDoorbells(undefined)
    super.dispose()
  }

  /** The machine pauses: doorbells and interrupts are held and the device quiesces (TransportCore.pause). */
  pause(): Promise<void> {
    return this.core.pause()
  }

  /** The machine resumes: the device goes on and what was held runs, in order. */
  resume(): void {
    this.core.resume()
  }

  /** For a snapshot of a paused machine (pause() made the device finish what it took). */
  saveState(): VirtioPciState {
    return {
      function: this.saveFunctionState(),
      common: this.common.saveState(),
      isr: this.isr,
      core: this.core.saveState(),
    }
  }

  /**
   * Puts a saved state back on a function that has not run. The PCI function first (its BAR then
   * decodes where the guest put it, Bus Master Enable follows Command, the MSI-X table is the
   * guest's), then common_cfg's vectors, so that a device the core re-activates signals its
   * driver through the vectors the driver chose, never through INTx.
   */
  restoreState(s: SavedState): void {
    s.only('function', 'common', 'isr', 'core')
    const isr = s.int('isr', 0, IsrBit.QUEUE | IsrBit.CONFIG)
    this.restoreFunctionState(s.nested('function'))
    this.core.setBusMaster((this.config.u16(Reg.Command) & Command.BusMaster) !== 0)
    this.common.restoreState(s.nested('common'))
    this.isr = isr
    this.core.restoreState(s.nested('core'))
  }

  /** Resets the device, then `dispose`, then releases the device's host resources; once. */
  async close(): Promise<void> {
    if (this.closed) return
    this.resetDevice()
    this.dispose()
    this.closed = true
    await this.device.dispose?.()
  }

  // --- capabilities (§4.1.4) ---

  /**
   * struct virtio_pci_cap: cap_vndr, cap_next, cap_len, cfg_type, bar, id, padding[2], offset,
   * length; `extra` bytes follow (notify_off_multiplier, pci_cfg_data).
   */
  private addVirtioCap(type: number, offset: number, length: number, extra = 0): number {
    const at = this.addCapability(CapabilityId.VendorSpecific, 16 + extra)
    const c = this.config
    c.set8(at + 2, 16 + extra)
    c.set8(at + 3, type)
    c.set8(at + 4, type === PciCapType.PCI ? 0 : Layout.BAR)
    c.set32(at + 8, offset)
    c.set32(at + 12, length)
    return at
  }

  override configRead(offset: number, data: Uint8Array): void {
    if (overlaps(offset, data.length, this.cfgCap + 16, 4)) this.cfgAccess(false)
    super.configRead(offset, data)
  }

  protected override onConfigWrite(offset: number, length: number): void {
    if (overlaps(offset, length, this.cfgCap + 16, 4)) this.cfgAccess(true)
    if (overlaps(offset, length, Reg.Command, 2))
      this.core.setBusMaster((this.config.u16(Reg.Command) & Command.BusMaster) !== 0)
  }

  /**
   * §4.1.4.9.1: an access to pci_cfg_data is an access of cap.length bytes at cap.offset of BAR
   * cap.bar. Anything but an aligned 1, 2 or 4 byte access inside our BAR is ignored.
   */
  private cfgAccess(write: boolean): void {
    const c = this.config
    const at = this.cfgCap
    const bar = c.u8(at + 4)
    const offset = c.u32(at + 8)
    const length = c.u32(at + 12)
    if (bar !== Layout.BAR || ![1, 2, 4].includes(length) || offset % length !== 0) return
    if (offset + length > Layout.SIZE) return
    const data = c.bytes.subarray(at + 16, at + 16 + length)
    if (write) this.barWrite(offset, data.slice())
    else this.barRead(offset, data)
  }

  // --- BAR 0 ---

  private barRead(offset: number, data: Uint8Array): void {
    if (offset >= Layout.MSIX_TABLE) {
      this.msix!.mmio.read(offset, data)
      return
    }
    data.fill(0)
    if (offset < Layout.ISR) this.common.read(offset - Layout.COMMON, data)
    else if (offset < Layout.DEVICE) {
      if (offset === Layout.ISR) data[0] = this.readIsr()
    } else if (offset < Layout.NOTIFY) {
      this.core.guarded(() => this.device.readConfig(offset - Layout.DEVICE, data))
    }
    // The notification area is write-only: reads are 0.
  }

  private barWrite(offset: number, data: Uint8Array): void {
    if (offset >= Layout.MSIX_TABLE) this.msix!.mmio.write(offset, data)
    else if (offset < Layout.ISR) this.common.write(offset - Layout.COMMON, data)
    else if (offset < Layout.DEVICE) {
      // ISR status is read-only (§4.1.4.5).
    } else if (offset < Layout.NOTIFY) {
      this.core.guarded(() => this.device.writeConfig(offset - Layout.DEVICE, data))
    } else {
      // §4.1.4.4: queue n's doorbell is at queue_notify_off * notify_off_multiplier; the value
      // written (the queue index, without VIRTIO_F_NOTIFICATION_DATA) adds nothing.
      const rel = offset - Layout.NOTIFY
      if (rel % Layout.NOTIFY_OFF_MULTIPLIER !== 0) return
      this.counters.trapped++
      this.core.notify(rel / Layout.NOTIFY_OFF_MULTIPLIER)
    }
  }

  // --- interrupts (§4.1.4.5, §4.1.5.1.2) ---

  private usedBuffer(index: number): void {
    if (this.msix?.enabled) {
      const vector = this.common.queueVectors[index] ?? VIRTIO_MSI_NO_VECTOR
      if (vector !== VIRTIO_MSI_NO_VECTOR) this.msix.notify(vector)
      return
    }
    this.raiseIsr(IsrBit.QUEUE)
  }

  private configChange(): void {
    if (this.msix?.enabled) {
      // §4.1.4.5.1: the configuration bit is set even when the vector carries the news.
      this.isr |= IsrBit.CONFIG
      if (this.common.configVector !== VIRTIO_MSI_NO_VECTOR) this.msix.notify(this.common.configVector)
      return
    }
    this.raiseIsr(IsrBit.CONFIG)
  }

  /** Without MSI-X, INTx is the OR of the ISR bits (§4.1.4.5.1). */
  private raiseIsr(bit: number): void {
    this.isr |= bit
    this.setIntx(true)
  }

  /** §4.1.4.5: reading ISR status clears it and deasserts INTx. */
  private readIsr(): number {
    const value = this.isr
    this.isr = 0
    if (this.intxAsserted) this.setIntx(false)
    return value
  }

  /** The machine resets (Machine.reset): as the driver writing 0 to the status register. */
  reset(): void {
    this.resetDevice()
  }

  /** §4.1.4.3.2: writing 0 to device_status resets the device and the transport's registers. */
  private resetDevice(): void {
    this.core.reset()
    this.common.reset()
    this.isr = 0
    if (this.intxAsserted) this.setIntx(false)
  }
}
