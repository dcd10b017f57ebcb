// A PCI function with a type 0 configuration header (PCI Local Bus 3.0 §6.1-§6.2): identity
// registers, Command/Status, BARs with the sizing protocol (§6.2.5.1), the capability list (§6.7),
// MSI/MSI-X, and INTx through the Interrupt Pin/Line registers (§6.2.4). A device model builds one
// with its identity and BARs, and calls `interrupt(vector)`; the host bridge attaches it to a bus,
// which gives it a BarMapper, an MsiRouter and an INTx line.
import { hex, type InterruptLine, type MmioDevice, type PioDevice, type SavedState } from '@vmm/core'
import type { BarMapper, BarWindow } from './bar-mapper.js'
import {
  CapabilityId,
  CONFIG_SPACE_SIZE,
  Command,
  ConfigSpace,
  overlaps,
  PCIE_CONFIG_SPACE_SIZE,
  Reg,
  Status,
} from './config-space.js'
import { checkReadOnlyBits, type PciFunctionState } from './function-state.js'
import { MsiCapability, MsixCapability } from './msi.js'
import type { MsiRouter } from './msi-router.js'

export type BarKind = 'memory32' | 'memory64' | 'io'

export interface BarSpec {
  readonly kind: BarKind
  /** A power of two: at least 16 bytes for memory, 4 for I/O (§6.2.5.1). */
  readonly size: number
  readonly prefetchable?: boolean
  /** Who answers accesses inside the BAR, at offsets from its start. */
  readonly device: MmioDevice | PioDevice
}

export interface Bar extends BarSpec {
  readonly index: number
  window?: BarWindow
}

export interface PciDeviceOptions {
  /** For messages: "virtio-blk", "testdev". */
  readonly name: string
  readonly vendorId: number
  readonly deviceId: number
  /** Class code, subclass and programming interface as 0xCCSSPP (§6.2.1, Appendix D). */
  readonly classCode: number
  readonly revision?: number
  readonly subsystemVendorId?: number
  readonly subsystemId?: number
  /** 0: no INTx; 1-4: INTA#-INTD# (§6.2.4). */
  readonly interruptPin?: 0 | 1 | 2 | 3 | 4
  /** A PCI Express function: 4 KiB of configuration space and a PCI Express capability (PCIe 4.0 §7.5.3). */
  readonly pcie?: boolean
}

/** What a bus gives a function it attaches. */
export interface PciAttachment {
  readonly mapper: BarMapper
  readonly msi: MsiRouter
  /** The line INTx drives after the bridge's swizzle; absent for interruptPin 0. */
  readonly intx?: InterruptLine
}

/** How an interrupt went out. */
export type InterruptPath = 'msix' | 'msi' | 'intx' | 'none'

export class PciDevice {
  readonly config: ConfigSpace
  readonly bars: (Bar | undefined)[] = [undefined, undefined, undefined, undefined, undefined, undefined]
  msi: MsiCapability | undefined
  msix: MsixCapability | undefined
  private attachment: PciAttachment | undefined
  private lastCapability = 0
  private nextCapability = 0x40
  private intxLevel = false

  constructor(readonly options: PciDeviceOptions) {
    const c = new ConfigSpace(options.pcie ? PCIE_CONFIG_SPACE_SIZE : CONFIG_SPACE_SIZE)
    this.config = c
    c.set16(Reg.VendorId, options.vendorId)
    c.set16(Reg.DeviceId, options.deviceId)
    c.set8(Reg.RevisionId, options.revision ?? 0)
    c.set8(Reg.ClassCode, options.classCode & 0xff)
    c.set16(Reg.ClassCode + 1, (options.classCode >> 8) & 0xffff)
    c.set16(Reg.SubsystemVendorId, options.subsystemVendorId ?? 0)
    c.set16(Reg.SubsystemId, options.subsystemId ?? 0)
    c.set8(Reg.InterruptPin, options.interruptPin ?? 0)
    // Command: the bits a function that decodes memory and I/O, masters and interrupts implements.
    c.writable(
      Reg.Command,
      2,
      Command.IoSpace |
        Command.MemorySpace |
        Command.BusMaster |
        Command.ParityErrorResponse |
        Command.Serr |
        Command.InterruptDisable,
    )
    c.writeOneToClear(
      Reg.Status,
      2,
      Status.MasterDataParityError |
        Status.SignaledTargetAbort |
        Status.ReceivedTargetAbort |
        Status.ReceivedMasterAbort |
        Status.SignaledSystemError |
        Status.DetectedParityError,
    )
    c.writable(Reg.CacheLineSize, 1, 0xff)
    c.writable(Reg.LatencyTimer, 1, 0xff)
    // Interrupt Line is a scratch register for software (§6.2.4); the bus writes the GSI in it.
    c.writable(Reg.InterruptLine, 1, 0xff)
    if (options.pcie) this.addPcieCapability()
  }

  get name(): string {
    return this.options.name
  }

  get attached(): boolean {
    return this.attachment !== undefined
  }

  /** Declares BAR `index` (a 64-bit BAR also takes index + 1). Before attaching. */
  addBar(index: number, spec: BarSpec): void {
    if (this.attachment) throw new Error(`${this.name}: BARs are declared before the device is attached`)
    const wide = spec.kind === 'memory64'
    if (!Number.isInteger(index) || index < 0 || index > (wide ? 4 : 5))
      throw new RangeError(`${this.name}: BAR ${index} does not exist for a ${spec.kind} BAR`)
    if (this.bars[index] || (wide && this.bars[index + 1]) || this.isUpperHalf(index))
      throw new Error(`${this.name}: BAR ${index} is already in use`)
    const min = spec.kind === 'io' ? 4 : 16
    if (
      spec.size < min ||
      (spec.size & (spec.size - 1)) !== 0 ||
      (spec.kind !== 'memory64' && spec.size > 2 ** 31)
    )
      throw new RangeError(
        `${this.name}: BAR ${index} size ${hex(spec.size)} is not a power of two >= ${min}`,
      )
    if (spec.kind === 'io' && spec.size > 256)
      throw new RangeError(`${this.name}: an I/O BAR is at most 256 ports (§6.2.5.1)`)
    this.bars[index] = { ...spec, index }
    const at = Reg.Bar0 + 4 * index
    const c = this.config
    if (spec.kind === 'io') {
      c.set32(at, 0x1) // bit 0: I/O space indicator
      c.writable(at, 4, ~(spec.size - 1) & 0xfffc)
    } else {
      // Bits 2:1 type (00: 32-bit, 10: 64-bit), bit 3 prefetchable.
      c.set32(at, (wide ? 0x4 : 0) | (spec.prefetchable ? 0x8 : 0))
      c.writable(at, 4, spec.size >= 2 ** 32 ? 0 : ~(spec.size - 1) & 0xfffffff0)
      if (wide) {
        const hiMask = spec.size > 2 ** 32 ? ~(spec.size / 2 ** 32 - 1) : 0xffffffff
        c.writable(at + 4, 4, hiMask >>> 0)
      }
    }
  }

  private isUpperHalf(index: number): boolean {
    return index > 0 && this.bars[index - 1]?.kind === 'memory64'
  }

  /** Adds a capability of `size` bytes to the list (§6.7) and returns its offset. */
  addCapability(id: number, size: number): number {
    const offset = this.nextCapability
    if (offset + size > CONFIG_SPACE_SIZE)
      throw new RangeError(`${this.name}: no room for capability ${hex(id)} in configuration space`)
    const c = this.config
    c.set8(offset, id)
    c.set8(offset + 1, 0)
    if (this.lastCapability === 0) {
      c.set8(Reg.CapabilitiesPointer, offset)
      c.set16(Reg.Status, c.u16(Reg.Status) | Status.CapabilitiesList)
    } else {
      c.set8(this.lastCapability + 1, offset)
    }
    this.lastCapability = offset
    this.nextCapability = (offset + size + 3) & ~3
    return offset
  }

  /** PCI Express capability of a Root Complex Integrated Endpoint (PCIe 4.0 §7.5.3; type 1001b). */
  private addPcieCapability(): void {
    const at = this.addCapability(CapabilityId.PciExpress, 0x3c)
    const c = this.config
    c.set16(at + 2, 0x2 | (0x9 << 4)) // capability version 2, device/port type RCiEP
    c.set32(at + 4, 1 << 15) // Device Capabilities: role-based error reporting; 128-byte payload
    c.writable(at + 8, 2, 0x7cff) // Device Control: error reporting, payload, read request size, ...
    c.writeOneToClear(at + 0xa, 2, 0x000f) // Device Status: error detected bits are RW1C
  }

  /** Adds an MSI capability with `count` vectors (64-bit, per-vector masking). */
  addMsi(count: number): MsiCapability {
    const at = this.addCapability(CapabilityId.Msi, MsiCapability.SIZE)
    this.msi = new MsiCapability(this.config, at, count, () => this.router())
    return this.msi
  }

  /**
   * Adds an MSI-X capability with `count` vectors whose table sits at `tableOffset` and PBA at
   * `pbaOffset` of BAR `bar`; map `msix.mmio` there from the BAR's device.
   */
  addMsix(count: number, bar: number, tableOffset: number, pbaOffset: number): MsixCapability {
    const at = this.addCapability(CapabilityId.MsiX, MsixCapability.SIZE)
    this.msix = new MsixCapability(this.config, at, count, bar, tableOffset, pbaOffset, () => this.router())
    return this.msix
  }

  private router(): MsiRouter {
    if (!this.attachment) throw new Error(`${this.name}: an interrupt before the device is attached to a bus`)
    return this.attachment.msi
  }

  /** Called by the bus: where BARs map, where MSIs go, which line INTx drives. */
  attach(attachment: PciAttachment): void {
    if (this.attachment) throw new Error(`${this.name} is already attached`)
    this.attachment = attachment
    for (const bar of this.bars) {
      if (!bar) continue
      const what = `${this.name} BAR ${bar.index}`
      bar.window =
        bar.kind === 'io'
          ? attachment.mapper.io(what, bar.device as PioDevice, bar.size)
          : attachment.mapper.memory(what, bar.device as MmioDevice, bar.size)
    }
    if (attachment.intx) this.config.set8(Reg.InterruptLine, attachment.intx.irq & 0xff)
    this.updateBars()
  }

  /** The address BAR `index` holds (what the guest or the allocator wrote), ignoring decode enables. */
  barAddress(index: number): number {
    const bar = this.bars[index]
    if (!bar) throw new RangeError(`${this.name} has no BAR ${index}`)
    const c = this.config
    const at = Reg.Bar0 + 4 * index
    if (bar.kind === 'io') return c.u32(at) & 0xfffc
    const lo = (c.u32(at) & 0xfffffff0) >>> 0
    return bar.kind === 'memory64' ? lo + c.u32(at + 4) * 2 ** 32 : lo
  }

  /** Programs BAR `index` as firmware would (the bridge's allocator). */
  setBarAddress(index: number, address: number): void {
    const bar = this.bars[index]
    if (!bar) throw new RangeError(`${this.name} has no BAR ${index}`)
    if (address % bar.size !== 0)
      throw new RangeError(`${this.name} BAR ${index}: ${hex(address)} is not aligned`)
    const c = this.config
    const at = Reg.Bar0 + 4 * index
    c.set32(at, (c.u32(at) & (bar.kind === 'io' ? 0x3 : 0xf)) | (address % 2 ** 32))
    if (bar.kind === 'memory64') c.set32(at + 4, Math.floor(address / 2 ** 32))
    this.updateBars()
  }

  /**
   * Where BAR `index` decodes now, or undefined: decoding off in Command, address 0, or a range
   * that reaches the top of its space (the all-ones pattern of the sizing protocol), as QEMU's
   * pci_bar_address does.
   */
  decodedAddress(index: number): number | undefined {
    const bar = this.bars[index]!
    const cmd = this.config.u16(Reg.Command)
    const address = this.barAddress(index)
    if (address === 0) return undefined
    if (bar.kind === 'io') {
      if (!(cmd & Command.IoSpace)) return undefined
      return address + bar.size >= 0x10000 ? undefined : address
    }
    if (!(cmd & Command.MemorySpace)) return undefined
    const limit = bar.kind === 'memory64' ? 2 ** 52 : 2 ** 32 - 1
    return address + bar.size > limit ? undefined : address
  }

  private updateBars(): void {
    if (!this.attachment) return
    for (const bar of this.bars) {
      const window = bar?.window
      if (!window) continue
      const before = window.address
      window.place(this.decodedAddress(bar.index))
      if (window.address !== before) this.onBarMoved(bar.index, window.address)
    }
  }

  /**
   * For subclasses that keep something at an address inside a BAR (a KVM ioeventfd on a doorbell):
   * BAR `index` now decodes at `address`, or nowhere (decoding off, moved to a clash, sizing).
   */
  protected onBarMoved(_index: number, _address: number | undefined): void {}

  /** A configuration read from the bus (offset within this function's space). */
  configRead(offset: number, data: Uint8Array): void {
    this.config.read(offset, data)
  }

  /** A configuration write from the bus: masks applied, then the side effects of what changed. */
  configWrite(offset: number, data: Uint8Array): void {
    this.config.write(offset, data)
    const len = data.length
    if (overlaps(offset, len, Reg.Command, 2)) this.driveIntx()
    if (overlaps(offset, len, Reg.Command, 2) || overlaps(offset, len, Reg.Bar0, 24)) this.updateBars()
    this.msi?.configWritten(offset, len)
    this.msix?.configWritten(offset, len)
    this.onConfigWrite(offset, len)
  }

  /** For subclasses that own registers in configuration space (vendor capabilities). */
  protected onConfigWrite(_offset: number, _length: number): void {}

  /**
   * Raises interrupt `vector`: MSI-X when enabled, else MSI, else INTx (asserted until the device
   * calls `setIntx(false)`, as a level-triggered line is).
   */
  interrupt(vector = 0): InterruptPath {
    if (this.msix?.notify(vector)) return 'msix'
    if (this.msi?.notify(vector)) return 'msi'
    if (!this.options.interruptPin) return 'none'
    this.setIntx(true)
    return 'intx'
  }

  /** INTx's level as the device drives it; Status.InterruptStatus follows it (§6.2.3). */
  setIntx(level: boolean): void {
    this.intxLevel = level
    const c = this.config
    const st = c.u16(Reg.Status)
    c.set16(Reg.Status, level ? st | Status.InterruptStatus : st & ~Status.InterruptStatus)
    this.driveIntx()
  }

  private lineLevel = false

  /** The pin is asserted when the device wants it and Command.InterruptDisable is clear (§6.2.2). */
  private driveIntx(): void {
    const line = this.attachment?.intx
    if (!line) return
    const level = this.intxLevel && !(this.config.u16(Reg.Command) & Command.InterruptDisable)
    if (level === this.lineLevel) return
    this.lineLevel = level
    line.setLevel(level)
  }

  get intxAsserted(): boolean {
    return this.intxLevel
  }

  /** For a snapshot of a paused machine (function-state.ts). */
  saveFunctionState(): PciFunctionState {
    return { config: this.config.bytes.slice(), intx: this.intxLevel, msix: this.msix?.saveState() ?? null }
  }

  /**
   * Puts a saved state back on an attached function that has not run, everything checked first:
   * the configuration space (the guest's BAR values, Command, capability registers), MSI's pending
   * bits, the MSI-X table and PBA, INTx's level. The BARs then decode where the guest had put them
   * (their windows move, onBarMoved follows), and each MSI/MSI-X vector is routed again at its next
   * message. Subclasses put back what they derive from configuration space after this.
   */
  restoreFunctionState(s: SavedState): void {
    s.only('config', 'intx', 'msix')
    const bytes = s.buffer('config', this.config.size)
    const intx = s.bool('intx')
    // Bits the model sets itself, outside the guest's masks: Status.InterruptStatus, MSI's pending bits.
    const owned = new Uint8Array(this.config.size)
    owned[Reg.Status] = Status.InterruptStatus
    if (this.msi) owned.fill(0xff, this.msi.offset + 0x14, this.msi.offset + 0x18)
    checkReadOnlyBits(this.config, bytes, owned, s)
    if (s.isNull('msix') !== (this.msix === undefined))
      s.refuse(
        'msix',
        this.msix ? 'this function has MSI-X; the state has none' : 'this function has no MSI-X',
      )
    const msix = this.msix ? this.msix.checkState(s.nested('msix')) : undefined
    this.config.bytes.set(bytes)
    this.msi?.restored()
    if (msix) this.msix!.restore(msix)
    this.intxLevel = intx
    this.driveIntx()
    this.updateBars()
  }

  /** Unmaps the BARs and releases MSI routes. */
  dispose(): void {
    for (const bar of this.bars) bar?.window?.dispose()
    this.msi?.reset()
    this.msix?.reset()
  }
}
