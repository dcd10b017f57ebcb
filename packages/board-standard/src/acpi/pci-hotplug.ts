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

  /** A snapshot's unread bitmaps back (a plug or eject request the guest had not read yet). */
  restorePending(p: { up: number; down: number }): void {
    this.up = p.up >>> 0
    this.down = p.down >>> 0
  }

  // Byte by byte: a guest may read or write any width at any port of the block, and an access
  // that straddles two registers touches each one's bytes (a shift by 8 * (offset % 4 + i) wrapped
  // at 32 and took bytes from the wrong register; found by acpi.fuzz.test.ts).
  read(offset: number, data: Uint8Array): void {
    const up = this.up
    const down = this.down
    for (let i = 0; i < data.length; i++) {
      const at = offset + i
      const reg = at >> 2
      const value = reg === 0 ? up : reg === 1 ? down : 0
      data[i] = (value >>> (8 * (at % 4))) & 0xff
      // Reading a register's first byte takes its bits (the AML reads it as one DWORD).
      if (at % 4 === 0) {
        if (reg === 0) this.up = 0
        else if (reg === 1) this.down = 0
      }
    }
  }

  write(offset: number, data: Uint8Array): void {
    let bits = 0
    for (let i = 0; i < data.length; i++) {
      const at = offset + i
      if (at >= 8 && at < PCI_HOTPLUG_REGISTERS_SIZE) bits = (bits | (data[i]! << (8 * (at - 8)))) >>> 0
    }
    for (let slot = 1; slot < 32; slot++) if ((bits >>> slot) & 1) this.onEject(slot)
  }
}
