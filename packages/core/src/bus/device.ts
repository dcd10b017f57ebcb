// Two-method devices (Firecracker BusDevice, rust-vmm vm-device): a device sees an offset inside its
// own window, never where it is mapped, and a caller-owned `data` whose length is the access size.
// A read fills `data`; a write reads it. Neither may keep `data` after returning: it is a view into
// the vCPU's shared exit page.

/** A device on the port I/O bus. */
export interface PioDevice {
  read(offset: number, data: Uint8Array): void
  write(offset: number, data: Uint8Array): void
}

/** A device on the memory-mapped I/O bus. */
export interface MmioDevice {
  read(offset: number, data: Uint8Array): void
  write(offset: number, data: Uint8Array): void
}

/** Whether `value` has the two device methods (used when mapping components onto buses). */
export function isBusDevice(value: unknown): value is PioDevice & MmioDevice {
  const v = value as Partial<PioDevice> | null
  return typeof v?.read === 'function' && typeof v.write === 'function'
}

/** An access no device claimed, reported to the bus's owner (reads have returned all-ones). */
export interface UnhandledAccess {
  readonly bus: 'pio' | 'mmio'
  readonly address: number
  readonly size: number
  readonly write: boolean
}
