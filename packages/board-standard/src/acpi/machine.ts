// What the standard board's ACPI tables describe (the acpi component gathers it from the
// machine), and the register values the tables and the PM block (./pm.ts) agree on.

/** What the tables describe; the acpi component gathers it from the machine. */
export interface AcpiMachine {
  /** APIC IDs of the vCPUs, in order (ACPI processor UID = index). */
  readonly apicIds: readonly number[]
  readonly ioapic: { readonly id: number; readonly address: number }
  /** The PCI host bridge, when there is one. */
  readonly pci?: {
    readonly ecam: { readonly base: number; readonly size: number }
    readonly buses: number
    readonly mmio32: { readonly base: number; readonly size: number }
    readonly mmio64?: { readonly base: number; readonly size: number }
    /** GSIs INTA#-INTD# of slot 0 reach; slot s pin p reaches gsis[(s + p) % 4] (p from 0). */
    readonly intxGsis: readonly [number, number, number, number]
    /** The PCI hot-plug registers (./pci-hotplug.ts): bus 0's slots are described for ACPI hot-plug. */
    readonly hotplugPort?: number
  }
  /** 16550s to describe as PNP0501 (COM1, COM2, ...). */
  readonly serial: readonly { readonly port: number; readonly irq: number }[]
  /** The CMOS RTC (PNP0B00): its index port (data at port + 1) and IRQ; absent when the board has none. */
  readonly rtc?: { readonly port: number; readonly irq: number }
  /**
   * The HW-reduced sleep control/status and reset registers: port, port + 1, port + 2; the
   * Generic Event Device's event status at port + 3.
   */
  readonly pmPort: number
  /** An i8042 is present (IA-PC boot architecture flags). */
  readonly i8042: boolean
  /**
   * The SCI's GSI (ISA IRQ 9 by convention). A hardware-reduced machine has no SCI events; the
   * Generic Event Device signals on this line instead (level-triggered, active-high, as the
   * MADT's override says).
   */
  readonly sci: number
  readonly oemId?: string
  readonly oemTableId?: string
  /** Devices other components describe (Acpi.describeDevice), in the order they were added. */
  readonly devices?: readonly AcpiDeviceAml[]
}

/**
 * A device another component puts in the DSDT (Acpi.describeDevice): its Device term for the
 * \_SB scope, and the GED event bit whose _EVT branch sends it Notify(`notify`, `value`).
 */
export interface AcpiDeviceAml {
  /** A complete Device(...) term (./aml.ts device()), placed in \_SB. */
  readonly aml: Uint8Array
  readonly event?: { readonly bit: number; readonly notify: string; readonly value: number }
}

/** The SLP_TYP value \_S5 names; writing (SLP_TYP << 2) | SLP_EN to the sleep control register powers off. */
export const S5_SLP_TYP = 5
/** Sleep control register: SLP_EN is bit 5, SLP_TYP bits 4:2 (§4.8.3.7). */
export const SLP_EN = 1 << 5
/** The value the FADT's RESET_REG takes to reset the machine. */
export const RESET_VALUE = 0x01
/** The GED's event status register, at this offset from the PM port. */
export const GED_EVENT_OFFSET = 3
/** GED event bits: the power button (the DSDT's _EVT notifies \_SB.PWRB with 0x80). */
export const GED_POWER_BUTTON = 0x01
/** GED event bit: PCI hot-plug (the _EVT calls \_SB.PCI0.PCNT, which notifies the slots). */
export const GED_PCI_HOTPLUG = 0x02
/** GED event bit: a new VM Generation ID (the _EVT notifies \_SB.VGEN with 0x80; ../vmgenid). */
export const GED_VMGENID = 0x04
/** The bits the acpi component raises itself; others are for Acpi.describeDevice's devices. */
export const GED_OWN_EVENTS = GED_POWER_BUTTON | GED_PCI_HOTPLUG

/** Where the CMOS RTC keeps the century (the IBM PC/AT location, @vmm/board-micro REG_CENTURY). */
export const RTC_CENTURY_INDEX = 0x32

export const LOCAL_APIC_ADDRESS = 0xfee00000
