import { GUEST_ADDRESS_LIMIT } from '../address.js'
import type { MmioDevice, UnhandledAccess } from './device.js'
import { BusError } from './errors.js'

/**
 * Memory-mapped I/O windows, kept sorted by base so dispatch is a binary search. MMIO exits are
 * rarer than port exits on the boards we target (virtio-mmio notifies through ioeventfd) and the
 * address space is 2^52, so a table like PioBus's is not an option.
 */
export class MmioBus {
  private bases: number[] = []
  private ends: number[] = []
  private devices: MmioDevice[] = []

  constructor(private readonly onUnhandled: (access: UnhandledAccess) => void = () => {}) {}

  /** Maps `device` at [base, base + size). Throws a BusError if that is not possible. */
  insert(device: MmioDevice, base: number, size: number): void {
    if (!Number.isInteger(size) || size <= 0) throw new BusError('ZERO_SIZE', 'mmio', base, size)
    if (!Number.isInteger(base) || base < 0 || base + size > GUEST_ADDRESS_LIMIT) {
      throw new BusError('OVERFLOW', 'mmio', base, size)
    }
    const at = this.upperBound(base) // first window whose base > base
    const prev = at - 1
    if (prev >= 0 && this.ends[prev]! > base)
      throw new BusError('OVERLAP', 'mmio', base, size, this.bases[prev])
    if (at < this.bases.length && this.bases[at]! < base + size) {
      throw new BusError('OVERLAP', 'mmio', base, size, this.bases[at])
    }
    this.bases.splice(at, 0, base)
    this.ends.splice(at, 0, base + size)
    this.devices.splice(at, 0, device)
  }

  /** Unmaps the window that starts at `base`. */
  remove(base: number): MmioDevice {
    const i = this.upperBound(base) - 1
    if (i < 0 || this.bases[i] !== base) throw new BusError('NOT_FOUND', 'mmio', base, 0)
    const [device] = this.devices.splice(i, 1)
    this.bases.splice(i, 1)
    this.ends.splice(i, 1)
    return device!
  }

  /** The windows on the bus, sorted by base. */
  windows(): { base: number; size: number; device: MmioDevice }[] {
    return this.bases.map((base, i) => ({ base, size: this.ends[i]! - base, device: this.devices[i]! }))
  }

  private upperBound(address: number): number {
    let lo = 0
    let hi = this.bases.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.bases[mid]! <= address) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** The index of the window holding `address`, or -1. */
  private find(address: number): number {
    const i = this.upperBound(address) - 1
    return i >= 0 && address < this.ends[i]! ? i : -1
  }

  /** Dispatches a read; returns false (and fills all-ones) if no window holds `address`. */
  read(address: number, data: Uint8Array): boolean {
    const i = this.find(address)
    if (i < 0) {
      data.fill(0xff)
      this.onUnhandled({ bus: 'mmio', address, size: data.length, write: false })
      return false
    }
    this.devices[i]!.read(address - this.bases[i]!, data)
    return true
  }

  /** Dispatches a write; returns false if no window holds `address`. */
  write(address: number, data: Uint8Array): boolean {
    const i = this.find(address)
    if (i < 0) {
      this.onUnhandled({ bus: 'mmio', address, size: data.length, write: true })
      return false
    }
    this.devices[i]!.write(address - this.bases[i]!, data)
    return true
  }
}
