// The registers behind ACPI PCI hot-plug of bus 0 (the DSDT's \_SB.PCI0.PCNT and slot _EJ0
// methods read and write them; the layout is ours, modelled on QEMU's PIIX4 "PCI hotplug"
// block): three DWORD ports.
//   +0 PCIU (read clears): slots with a new function the guest should scan (Notify Device Check)
//   +4 PCID (read clears): slots the host asks the guest to release (Notify Eject Request)
//   +8 B0EJ (write): the guest ejected these slots (a slot's _EJ0 writes its bit)
// A change raises the Generic Event Device's PCI hot-plug event, whose _EVT calls PCNT.
import type { PioDevice } from '@vmm/core'
import type { HotplugController } from '@vmm/pci'

export const PCI_HOTPLUG_REGISTERS_SIZE = 12

export class PciHotplugRegisters implements PioDevice, HotplugController {
  private up = 0
  private down = 0

  constructor(
    /** Raises the GED's PCI hot-plug event. */
    private readonly signal: () => void,
    /** The guest ejected `slot` (PciHostBridge.ejected). */
    private readonly onEject: (slot: number) => void,
  ) {}

  plugged(slot: number): void {
    this.up = (this.up | (1 << slot)) >>> 0
    this.signal()
  }

  requestEject(slot: number): void {
    this.down = (this.down | (1 << slot)) >>> 0
    this.signal()
  }

  /** Bitmaps not yet read by the guest, for tests and diagnostics. */
  get pending(): { up: number; down: number } {
    return { up: this.up, down: this.down }
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0)
    const reg = offset >> 2
    const value = reg === 0 ? this.up : reg === 1 ? this.down : 0
    for (let i = 0; i < data.length; i++) data[i] = (value >>> (8 * ((offset % 4) + i))) & 0xff
    // Reading the register's first byte takes its bits (the AML reads it as one DWORD).
    if (offset % 4 === 0) {
      if (reg === 0) this.up = 0
      else if (reg === 1) this.down = 0
    }
  }

  write(offset: number, data: Uint8Array): void {
    if (offset < 8) return
    let bits = 0
    for (let i = 0; i < data.length; i++) bits |= data[i]! << (8 * (offset - 8 + i))
    for (let slot = 1; slot < 32; slot++) if ((bits >>> slot) & 1) this.onEject(slot)
  }
}
