// The hardware-reduced ACPI power management registers (ACPI 6.5 §4.8.3.7 "Sleep Control and
// Status Registers", §4.8.3.6 reset register): three byte-wide ports the FADT points at.
//   +0 SLEEP_CONTROL_REG: SLP_TYP in bits 4:2, SLP_EN in bit 5. SLP_EN with \_S5's SLP_TYP powers off.
//   +1 SLEEP_STATUS_REG: WAK_STS (bit 7), write 1 to clear; we never sleep, so it reads 0.
//   +2 RESET_REG: writing RESET_VALUE resets the machine.
//   +3 event status of the Generic Event Device (ours, not the spec's: the DSDT's GED _EVT method
//      reads it, §5.6.9): a bit per event source (GED_POWER_BUTTON); reading returns and clears
//      them and lowers the GED's interrupt line, which is high while any bit is set.
import type { InterruptLine, PioDevice } from '@vmm/core'
import { GED_EVENT_OFFSET, RESET_VALUE, S5_SLP_TYP, SLP_EN } from './tables.js'

export type PmEvent = 'poweroff' | 'reset' | { sleep: number }

export class AcpiPmRegisters implements PioDevice {
  private gedEvents = 0

  constructor(
    private readonly onEvent: (e: PmEvent) => void,
    private readonly gedLine?: InterruptLine,
  ) {}

  /** Latches GED event bits and raises the GED interrupt (level-triggered: it stays up until read). */
  raiseGedEvent(bits: number): void {
    this.gedEvents |= bits
    if (this.gedEvents) this.gedLine?.setLevel(true)
  }

  get pendingGedEvents(): number {
    return this.gedEvents
  }

  /**
   * A snapshot's GED event bits back (the sleep and reset registers keep nothing: a write acts at
   * once and WAK_STS reads 0). The line is raised again while bits are pending: the restored
   * IOAPIC holds it already, and this gives the hypervisor the source's level, so the guest's read
   * lowers it.
   */
  restoreGedEvents(bits: number): void {
    this.gedEvents = bits
    if (bits) this.gedLine?.setLevel(true)
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0)
    if (offset === GED_EVENT_OFFSET) {
      data[0] = this.gedEvents
      if (this.gedEvents) this.gedLine?.setLevel(false)
      this.gedEvents = 0
    }
  }

  write(offset: number, data: Uint8Array): void {
    const v = data[0]!
    if (offset === 0 && v & SLP_EN) {
      const typ = (v >> 2) & 7
      this.onEvent(typ === S5_SLP_TYP ? 'poweroff' : { sleep: typ })
    } else if (offset === 2 && v === RESET_VALUE) {
      this.onEvent('reset')
    }
  }
}
