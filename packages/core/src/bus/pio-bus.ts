import type { PioDevice, UnhandledAccess } from './device.js'
import { BusError } from './errors.js'

const PORTS = 0x10000

/**
 * The x86 I/O port space, 0..0xffff. Every guest `in`/`out` comes through here, so dispatch is one
 * typed-array load: `owner[port]` is the index + 1 of the window that holds the port (0: none).
 * 64 Ki entries x 2 bytes is a price worth paying for O(1) lookup.
 */
export class PioBus {
  private readonly owner = new Uint16Array(PORTS)
  private readonly bases: number[] = [0]
  private readonly sizes: number[] = [0]
  private readonly devices: (PioDevice | undefined)[] = [undefined]
  private readonly free: number[] = []

  constructor(private readonly onUnhandled: (access: UnhandledAccess) => void = () => {}) {}

  /** Maps `device` at ports [base, base + size). Throws a BusError if that is not possible. */
  insert(device: PioDevice, base: number, size: number): void {
    if (!Number.isInteger(size) || size <= 0) throw new BusError('ZERO_SIZE', 'pio', base, size)
    if (!Number.isInteger(base) || base < 0 || base + size > PORTS)
      throw new BusError('OVERFLOW', 'pio', base, size)
    for (let p = base; p < base + size; p++) {
      const i = this.owner[p]!
      if (i !== 0) throw new BusError('OVERLAP', 'pio', base, size, this.bases[i])
    }
    const index = this.free.pop() ?? this.devices.length
    this.bases[index] = base
    this.sizes[index] = size
    this.devices[index] = device
    this.owner.fill(index, base, base + size)
  }

  /** Unmaps the window that starts at `base`. */
  remove(base: number): PioDevice {
    const i = base >= 0 && base < PORTS ? this.owner[base]! : 0
    if (i === 0 || this.bases[i] !== base) throw new BusError('NOT_FOUND', 'pio', base, 0)
    const device = this.devices[i]!
    this.owner.fill(0, base, base + this.sizes[i]!)
    this.devices[i] = undefined
    this.free.push(i)
    return device
  }

  /** The device and window base holding `port`, if any. */
  lookup(port: number): { device: PioDevice; base: number } | undefined {
    const i = this.owner[port] ?? 0
    return i === 0 ? undefined : { device: this.devices[i]!, base: this.bases[i]! }
  }

  read(port: number, data: Uint8Array): void {
    const i = this.owner[port]!
    if (i === 0) {
      // Nothing decodes the port: the ISA bus floats high.
      data.fill(0xff)
      this.onUnhandled({ bus: 'pio', address: port, size: data.length, write: false })
      return
    }
    this.devices[i]!.read(port - this.bases[i]!, data)
  }

  write(port: number, data: Uint8Array): void {
    const i = this.owner[port]!
    if (i === 0) {
      this.onUnhandled({ bus: 'pio', address: port, size: data.length, write: true })
      return
    }
    this.devices[i]!.write(port - this.bases[i]!, data)
  }
}
