// The PCI host bridge: the root bus's functions, the two ways software reaches their configuration
// space (configuration mechanism #1 at 0xCF8/0xCFC, PCI Local Bus 3.0 §3.2.2.3.2, and the
// enhanced configuration access mechanism, PCIe 4.0 §7.2.2), BAR allocation from the board's
// windows, and the INTx swizzle. The bridge is itself function 00:00.0 (class 06 00 00).
import { hex, type InterruptLine, type MmioDevice, type PioDevice } from '@vmm/core'
import type { BarMapper } from './bar-mapper.js'
import { readLe, writeLe } from './config-space.js'
import { PciDevice } from './device.js'
import type { MsiRouter } from './msi-router.js'

/** bus:device.function, e.g. 00:03.0 */
export interface PciAddress {
  readonly bus: number
  readonly device: number
  readonly function: number
}

export function formatPciAddress(a: PciAddress): string {
  const h = (n: number, w: number) => n.toString(16).padStart(w, '0')
  return `${h(a.bus, 2)}:${h(a.device, 2)}.${a.function}`
}

/** A window of addresses the bridge forwards to PCI (what ACPI's _CRS describes). */
export interface AddressWindow {
  readonly base: number
  readonly size: number
}

export interface HostBridgeOptions {
  /** ECAM: base of the window and how many buses it covers (1 MiB each). */
  readonly ecam: AddressWindow
  readonly buses: number
  /** Memory BARs below 4 GiB. */
  readonly mmio32: AddressWindow
  /** 64-bit memory BARs; size 0 puts them in mmio32. */
  readonly mmio64: AddressWindow
  /** I/O BARs. */
  readonly io: AddressWindow
  /** The four lines INTA#-INTD# of the root bus reach (after the swizzle below). */
  readonly intx: readonly InterruptLine[]
  readonly mapper: BarMapper
  readonly msi: MsiRouter
  readonly vendorId?: number
  readonly deviceId?: number
}

export type PciErrorCode =
  | 'SLOT_IN_USE'
  | 'NO_FREE_SLOT'
  | 'NO_SPACE'
  | 'BAD_SLOT'
  | 'NO_HOTPLUG'
  | 'NOT_ATTACHED'

/**
 * Tells the guest about slots of bus 0 changing while it runs (ACPI PCI hot-plug on the standard
 * board). The guest answers an eject request by ejecting the slot: PciHostBridge.ejected.
 */
export interface HotplugController {
  /** A function appeared in `slot`: ask the guest to scan it. */
  plugged(slot: number): void
  /** Ask the guest to release the functions in `slot` and eject it. */
  requestEject(slot: number): void
}

export class PciError extends Error {
  override readonly name = 'PciError'
  constructor(
    readonly code: PciErrorCode,
    message: string,
  ) {
    super(message)
  }
}

/** Bump allocator over one window, naturally aligned (a BAR's address is a multiple of its size). */
class WindowAllocator {
  /** The lowest address not yet handed out (saved by a snapshot, so later hot-plugs go where they would have). */
  next: number
  constructor(readonly window: AddressWindow) {
    this.next = window.base
  }
  allocate(size: number): number | undefined {
    const at = Math.ceil(this.next / size) * size
    if (at + size > this.window.base + this.window.size) return undefined
    this.next = at + size
    return at
  }
}

/** What a host bridge keeps besides its functions: CONFIG_ADDRESS and where each window's allocator is. */
export interface BridgeRegisters {
  configAddress: number
  mmio32: number
  mmio64: number | null
  io: number
}

/** Red Hat's "QEMU PCIe host bridge" ID (pci-ids: 1b36:0008); Linux binds no driver to it. */
export const HOST_BRIDGE_VENDOR = 0x1b36
export const HOST_BRIDGE_DEVICE = 0x0008

export class PciHostBridge {
  /** Functions of bus 0 by device * 8 + function. */
  private readonly functions: (PciDevice | undefined)[] = new Array(256).fill(undefined)
  /** The bridge's own function, 00:00.0. */
  readonly self: PciDevice
  /** The legacy configuration ports, 8 of them from 0xCF8. */
  readonly cam: PioDevice
  /** The ECAM window's device. */
  readonly ecamDevice: MmioDevice
  private configAddress = 0
  private readonly mmio32: WindowAllocator
  private readonly mmio64: WindowAllocator | undefined
  private readonly io: WindowAllocator
  private hotplug: HotplugController | undefined
  /** Eject requests the guest has not answered yet, by slot. */
  private readonly ejectWaiters = new Map<number, (() => void)[]>()
  /** Called when the guest ejects a slot nobody asked it to (it may: acpiphp's sysfs power file). */
  onGuestEject: ((slot: number, devices: readonly PciDevice[]) => void) | undefined

  constructor(readonly options: HostBridgeOptions) {
    if (options.intx.length !== 4) throw new RangeError('a host bridge needs four INTx lines (INTA#-INTD#)')
    if (options.buses < 1 || options.buses > 256)
      throw new RangeError(`buses: ${options.buses}; expected 1 to 256`)
    this.mmio32 = new WindowAllocator(options.mmio32)
    this.mmio64 = options.mmio64.size > 0 ? new WindowAllocator(options.mmio64) : undefined
    this.io = new WindowAllocator(options.io)
    this.self = new PciDevice({
      name: 'host-bridge',
      vendorId: options.vendorId ?? HOST_BRIDGE_VENDOR,
      deviceId: options.deviceId ?? HOST_BRIDGE_DEVICE,
      classCode: 0x060000,
      pcie: true,
    })
    this.attach(this.self, { device: 0 })
    this.cam = {
      read: (offset, data) => this.camRead(offset, data),
      write: (offset, data) => this.camWrite(offset, data),
    }
    this.ecamDevice = {
      read: (offset, data) => this.ecamAccess(offset, data, false),
      write: (offset, data) => this.ecamAccess(offset, data, true),
    }
  }

  /** Attached functions and their addresses. */
  get devices(): { address: PciAddress; device: PciDevice }[] {
    const out: { address: PciAddress; device: PciDevice }[] = []
    this.functions.forEach((d, i) => {
      if (d) out.push({ address: { bus: 0, device: i >> 3, function: i & 7 }, device: d })
    })
    return out
  }

  device(slot: number, fn = 0): PciDevice | undefined {
    return this.functions[slot * 8 + fn]
  }

  /** The GSI INTx pin `pin` (1-4) of device `slot` reaches: the swizzle (slot + pin - 1) mod 4. */
  intxLine(slot: number, pin: number): InterruptLine {
    return this.options.intx[(slot + pin - 1) % 4]!
  }

  /**
   * Puts `device` on bus 0 at `slot` (the first free one from 1 when absent), assigns its BARs from
   * the windows (64-bit BARs from the 64-bit window when there is one, larger BARs first so
   * alignment wastes little), and wires its INTx pin.
   */
  attach(device: PciDevice, at: { device?: number; function?: number } = {}): PciAddress {
    const fn = at.function ?? 0
    let slot = at.device
    if (slot === undefined) {
      slot = this.functions.findIndex((d, i) => i >= 8 && i % 8 === fn && d === undefined) >> 3
      if (slot <= 0) throw new PciError('NO_FREE_SLOT', `no free slot on bus 0 for ${device.name}`)
    } else if (!Number.isInteger(slot) || slot < 0 || slot > 31 || fn < 0 || fn > 7) {
      throw new PciError(
        'BAD_SLOT',
        `${device.name}: slot ${slot}.${fn} does not exist; expected 0-31 and 0-7`,
      )
    }
    const existing = this.functions[slot * 8 + fn]
    if (existing)
      throw new PciError(
        'SLOT_IN_USE',
        `${device.name}: slot 00:${hex(slot)}.${fn} is taken by ${existing.name}`,
      )

    const bars = device.bars.filter((b) => b !== undefined).sort((a, b) => b.size - a.size)
    const assigned: [number, number][] = []
    for (const bar of bars) {
      const pool =
        bar.kind === 'io' ? this.io : bar.kind === 'memory64' ? (this.mmio64 ?? this.mmio32) : this.mmio32
      const address = pool.allocate(bar.size)
      if (address === undefined)
        throw new PciError(
          'NO_SPACE',
          `${device.name}: no room for BAR ${bar.index} (${hex(bar.size)} bytes) in the ${bar.kind === 'io' ? 'I/O' : 'MMIO'} window [${hex(pool.window.base)}, +${hex(pool.window.size)})`,
        )
      assigned.push([bar.index, address])
    }
    const pin = device.options.interruptPin ?? 0
    device.attach({
      mapper: this.options.mapper,
      msi: this.options.msi,
      ...(pin ? { intx: this.intxLine(slot, pin) } : {}),
    })
    for (const [index, address] of assigned) device.setBarAddress(index, address)
    this.functions[slot * 8 + fn] = device
    return { bus: 0, device: slot, function: fn }
  }

  /** The bridge's own registers and allocators, for a snapshot (bridge-state.ts). */
  get registers(): BridgeRegisters {
    return {
      configAddress: this.configAddress >>> 0,
      mmio32: this.mmio32.next,
      mmio64: this.mmio64?.next ?? null,
      io: this.io.next,
    }
  }

  /** Puts saved registers back; each allocator position is checked against its window. */
  setRegisters(r: BridgeRegisters): void {
    const check = (name: string, a: WindowAllocator | undefined, at: number | null) => {
      if ((a === undefined) !== (at === null))
        throw new RangeError(
          `${name}: ${a ? 'this bridge has the window; the state has none' : 'this bridge has no such window'}`,
        )
      if (a && at !== null && (at < a.window.base || at > a.window.base + a.window.size))
        throw new RangeError(
          `${name}: ${hex(at)} is outside the window [${hex(a.window.base)}, +${hex(a.window.size)})`,
        )
    }
    check('mmio32', this.mmio32, r.mmio32)
    check('mmio64', this.mmio64, r.mmio64)
    check('io', this.io, r.io)
    this.configAddress = (r.configAddress & 0x80fffffc) >>> 0
    this.mmio32.next = r.mmio32
    if (this.mmio64 && r.mmio64 !== null) this.mmio64.next = r.mmio64
    this.io.next = r.io
  }

  /** Takes the controller that tells the guest about hot-plug (one per bridge). */
  setHotplugController(controller: HotplugController): void {
    if (this.hotplug && this.hotplug !== controller)
      throw new Error('this PCI host bridge has a hot-plug controller already')
    this.hotplug = controller
  }

  /** The slot `device` is attached at, or undefined. */
  slotOf(device: PciDevice): number | undefined {
    const i = this.functions.indexOf(device)
    return i < 0 ? undefined : i >> 3
  }

  /**
   * Tells the guest that `device` (attached while the machine runs) is there: the hot-plug
   * controller asks it to scan the slot. Without a controller the guest would never find it.
   */
  announce(device: PciDevice): void {
    const slot = this.slotOf(device)
    if (slot === undefined) throw new PciError('NOT_ATTACHED', `${device.name} is not on this bus`)
    if (!this.hotplug)
      throw new PciError(
        'NO_HOTPLUG',
        `${device.name}: this PCI host bridge has no hot-plug controller, so a running guest cannot be told about a new device (give the acpi component pci: <this bridge>)`,
      )
    this.hotplug.plugged(slot)
  }

  /**
   * Asks the guest to release `device`'s slot; resolves when the guest has ejected it (and the
   * functions are off the bus), at once when it is not on the bus. The guest may take its time or
   * never answer: callers time out.
   */
  requestEject(device: PciDevice): Promise<void> {
    const slot = this.slotOf(device)
    // Not on the bus (the guest ejected it after an earlier request timed out): nothing to wait for.
    if (slot === undefined) return Promise.resolve()
    const hotplug = this.hotplug
    if (!hotplug)
      return Promise.reject(
        new PciError(
          'NO_HOTPLUG',
          `${device.name}: this PCI host bridge has no hot-plug controller to ask the guest to release it`,
        ),
      )
    return new Promise((resolve) => {
      const waiting = this.ejectWaiters.get(slot) ?? []
      waiting.push(resolve)
      this.ejectWaiters.set(slot, waiting)
      hotplug.requestEject(slot)
    })
  }

  /** The guest ejected `slot` (the controller's eject register): its functions leave the bus. */
  ejected(slot: number): void {
    if (!Number.isInteger(slot) || slot < 1 || slot > 31) return // slot 0 is the bridge itself
    const devices: PciDevice[] = []
    for (let fn = 0; fn < 8; fn++) {
      const d = this.functions[slot * 8 + fn]
      if (d) devices.push(d)
    }
    for (const d of devices) this.detach(d)
    const waiting = this.ejectWaiters.get(slot)
    this.ejectWaiters.delete(slot)
    if (waiting) for (const w of waiting) w()
    else if (devices.length > 0) this.onGuestEject?.(slot, devices)
  }

  /** Takes `device` off the bus: its slot is free, its BARs unmapped and MSI routes released. */
  detach(device: PciDevice): void {
    const i = this.functions.indexOf(device)
    if (i < 0 || device === this.self) return
    this.functions[i] = undefined
    device.dispose()
  }

  /** A configuration read of bus/device/function at `offset`; no function there reads all-ones. */
  configRead(bus: number, slot: number, fn: number, offset: number, data: Uint8Array): void {
    const d = bus === 0 ? this.functions[slot * 8 + fn] : undefined
    if (!d || offset + data.length > d.config.size) data.fill(0xff)
    else d.configRead(offset, data)
  }

  configWrite(bus: number, slot: number, fn: number, offset: number, data: Uint8Array): void {
    const d = bus === 0 ? this.functions[slot * 8 + fn] : undefined
    if (d && offset + data.length <= d.config.size) d.configWrite(offset, data)
  }

  // Configuration mechanism #1 (PCI 3.0 §3.2.2.3.2): CONFIG_ADDRESS at 0xCF8 is a DWORD register
  // (bit 31 enable, 23:16 bus, 15:11 device, 10:8 function, 7:2 register); CONFIG_DATA at
  // 0xCFC-0xCFF reaches the selected DWORD, any byte of it. Narrower accesses to 0xCF8-0xCFB are not
  // CONFIG_ADDRESS (the spec passes them on as ordinary I/O): they read all-ones and are dropped.

  private camRead(offset: number, data: Uint8Array): void {
    if (offset === 0 && data.length === 4) {
      writeLe(data, this.configAddress)
      return
    }
    if (offset < 4) {
      data.fill(0xff)
      return
    }
    const a = this.configAddress
    if (!(a & 0x80000000)) {
      data.fill(0xff)
      return
    }
    this.configRead((a >>> 16) & 0xff, (a >>> 11) & 0x1f, (a >>> 8) & 7, (a & 0xfc) + (offset - 4), data)
  }

  private camWrite(offset: number, data: Uint8Array): void {
    if (offset === 0 && data.length === 4) {
      // Bits 1:0 are read-only 0; bits 30:24 are reserved (read back 0).
      this.configAddress = readLe(data) & 0x80fffffc
      return
    }
    if (offset < 4) return
    const a = this.configAddress
    if (!(a & 0x80000000)) return
    this.configWrite((a >>> 16) & 0xff, (a >>> 11) & 0x1f, (a >>> 8) & 7, (a & 0xfc) + (offset - 4), data)
  }

  // ECAM (PCIe 4.0 §7.2.2, table 7-1): offset bits 27:20 bus, 19:15 device, 14:12 function, 11:0
  // register. A QWORD access is split into two DWORDs.
  private ecamAccess(offset: number, data: Uint8Array, write: boolean): void {
    if (data.length === 8) {
      this.ecamAccess(offset, data.subarray(0, 4), write)
      this.ecamAccess(offset + 4, data.subarray(4, 8), write)
      return
    }
    const bus = Math.floor(offset / 2 ** 20)
    const slot = (offset >>> 15) & 0x1f
    const fn = (offset >>> 12) & 7
    const reg = offset & 0xfff
    if (write) this.configWrite(bus, slot, fn, reg, data)
    else this.configRead(bus, slot, fn, reg, data)
  }

  dispose(): void {
    for (const d of this.functions) d?.dispose()
    this.options.msi.dispose()
  }
}
