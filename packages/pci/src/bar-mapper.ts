// Where a BAR's registers appear when the guest programs its address and enables decoding. With
// the stacked memory model a memory BAR is a MemoryRegion that moves and toggles inside the
// AddressSpace, which re-flattens (and updates the hypervisor's slots); with the flat model it is
// removed from and inserted into the MMIO bus. I/O BARs always go on the port bus.
import {
  type AddressSpace,
  BusError,
  hex,
  MemoryRegion,
  type MmioBus,
  type MmioDevice,
  type PioBus,
  type PioDevice,
} from '@vmm/core'

/** One BAR's mapping: `place(address)` moves it there, `place(undefined)` takes it off the bus. */
export interface BarWindow {
  /** Returns whether the BAR is mapped afterwards (false when the address clashes with another window). */
  place(address: number | undefined): boolean
  readonly address: number | undefined
  dispose(): void
}

export interface BarMapper {
  memory(name: string, device: MmioDevice, size: number): BarWindow
  io(name: string, device: PioDevice, size: number): BarWindow
}

/** Told when the guest programs a BAR where it cannot go (an overlap): the BAR stays unmapped. */
export type BarConflict = (message: string) => void

/**
 * BAR regions sit below RAM (priority -1), as the PCI hole does under system memory on a real
 * chipset: a BAR the guest points at RAM does not hide the RAM.
 */
export const BAR_PRIORITY = -1

class RegionWindow implements BarWindow {
  private placed = false
  address: number | undefined

  constructor(
    private readonly space: AddressSpace,
    private readonly region: MemoryRegion,
  ) {}

  place(address: number | undefined): boolean {
    if (address === this.address) return address !== undefined
    if (address === undefined || address + this.region.size > 2 ** 52) {
      this.region.setEnabled(false)
      this.address = undefined
      return false
    }
    if (!this.placed) {
      this.region.setEnabled(true)
      this.space.root.addSubregion(this.region, address, BAR_PRIORITY)
      this.placed = true
    } else if (!this.region.enabled) {
      // Move while disabled, then enable: one view without the BAR, one with it at its new place.
      this.region.setAddress(address)
      this.region.setEnabled(true)
    } else {
      this.region.setAddress(address)
    }
    this.address = address
    return true
  }

  dispose(): void {
    if (this.placed) this.space.root.removeSubregion(this.region)
    this.placed = false
    this.address = undefined
  }
}

class BusWindow<D> implements BarWindow {
  address: number | undefined

  constructor(
    private readonly bus: { insert(d: D, base: number, size: number): void; remove(base: number): unknown },
    private readonly device: D,
    private readonly size: number,
    private readonly what: string,
    private readonly onConflict: BarConflict,
  ) {}

  place(address: number | undefined): boolean {
    if (address === this.address) return address !== undefined
    if (this.address !== undefined) this.bus.remove(this.address)
    this.address = undefined
    if (address === undefined) return false
    try {
      this.bus.insert(this.device, address, this.size)
      this.address = address
      return true
    } catch (e) {
      if (!(e instanceof BusError)) throw e
      this.onConflict(`${this.what} at ${hex(address)} not mapped: ${e.message}`)
      return false
    }
  }

  dispose(): void {
    this.place(undefined)
  }
}

/** Memory BARs in the stacked AddressSpace, I/O BARs on the port bus. */
export class AddressSpaceBarMapper implements BarMapper {
  constructor(
    private readonly space: AddressSpace,
    private readonly pioBus: PioBus,
    private readonly onConflict: BarConflict = () => {},
  ) {}

  memory(name: string, device: MmioDevice, size: number): BarWindow {
    return new RegionWindow(this.space, MemoryRegion.mmio(name, device, size))
  }

  io(name: string, device: PioDevice, size: number): BarWindow {
    return new BusWindow(this.pioBus, device, size, name, this.onConflict)
  }
}

/** Memory BARs on the MMIO bus (the flat memory model), I/O BARs on the port bus. */
export class BusBarMapper implements BarMapper {
  constructor(
    private readonly mmioBus: MmioBus,
    private readonly pioBus: PioBus,
    private readonly onConflict: BarConflict = () => {},
  ) {}

  memory(name: string, device: MmioDevice, size: number): BarWindow {
    return new BusWindow(this.mmioBus, device, size, name, this.onConflict)
  }

  io(name: string, device: PioDevice, size: number): BarWindow {
    return new BusWindow(this.pioBus, device, size, name, this.onConflict)
  }
}
