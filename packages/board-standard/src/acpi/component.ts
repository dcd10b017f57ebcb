// The `acpi` component: builds the tables at load time from what the machine has (vCPUs, the PCI
// host bridge, the UARTs, the RTC), puts them in the BIOS area (the RSDP at 0xE0000 so a legacy
// scan finds it), tells a directly booted Linux where the RSDP is, implements the HW-reduced sleep
// and reset registers the FADT names, the power button, and is the PCI host bridge's hot-plug
// controller (Machine.hotplug / unplug of PCI devices).

import type { CmosRtc, Linux, Serial } from '@vmm/board-micro'
import {
  type Component,
  type ComponentResources,
  type ComponentType,
  ContainerModule,
  guestAddress,
  hex,
  type LoadContext,
  type MachineControl,
  type PioBus,
  referenceToken,
  SavedState,
  Tokens,
} from '@vmm/core'
import type { PciHostBridgeComponent } from '@vmm/pci'
import { PCI_HOTPLUG_REGISTERS_SIZE, PciHotplugRegisters } from './pci-hotplug.js'
import { AcpiPmRegisters, type PmEvent } from './pm.js'
import {
  type AcpiBlob,
  type AcpiDeviceAml,
  type AcpiMachine,
  buildAcpi,
  GED_OWN_EVENTS,
  GED_PCI_HOTPLUG,
  GED_POWER_BUTTON,
} from './tables.js'

/** A device another component describes in the DSDT (Acpi.describeDevice). */
export interface AcpiDevice extends AcpiDeviceAml {
  /** Guest RAM the device keeps for itself: the tables must not be laid over it. */
  readonly reserved?: { readonly base: number; readonly size: number }
}

export interface AcpiConfig {
  /** Where the RSDP and the tables go (in the 0xE0000-0xFFFFF BIOS area by default). */
  address: number
  pci?: string
  serial: string[]
  kernel?: string
  rtc?: string
  /** Describe the PCI host bridge's slots for ACPI hot-plug and be its hot-plug controller. */
  pciHotplug: boolean
  i8042: boolean
  oemId: string
}

/** The acpi component's saved state (AcpiPmRegisters' GED bits, PciHotplugRegisters' bitmaps). */
export interface AcpiState {
  ged: number
  hotplug: { up: number; down: number } | null
}

/** The in-kernel IOAPIC: the MP table's choice of id (the first after the CPUs), at the usual base. */
const IOAPIC_ADDRESS = 0xfec00000
const BIOS_AREA_END = 0x100000

export class Acpi implements Component {
  readonly pm: AcpiPmRegisters
  blob: AcpiBlob | undefined
  private readonly pmWindow: { base: number; size: number }
  private readonly sci: number
  /** ACPI PCI hot-plug of the bridge's bus 0, when there is a bridge. */
  readonly pciHotplug: PciHotplugRegisters | undefined
  private readonly hotplugPort: number | undefined
  /** Devices of other components, by the id of the component that described them. */
  private readonly devices = new Map<string, AcpiDevice>()
  /** Set at start (a run's or a restore's): the DSDT is final, in guest RAM, from then on. */
  private sealed = false

  constructor(
    readonly id: string,
    private readonly config: AcpiConfig,
    resources: ComponentResources,
    private readonly pioBus: PioBus,
    private readonly machine: MachineControl,
    private readonly pci: PciHostBridgeComponent | undefined,
    private readonly serial: readonly Serial[],
    kernel: Linux | undefined,
    private readonly rtc: CmosRtc | undefined,
  ) {
    // buildAcpi puts the RSDP first, at `address`. Linux would find it by scanning
    // 0xE0000-0xFFFFF anyway; boot_params / hvm_start_info say it directly.
    kernel?.provideBootInputs({ acpiRsdp: config.address })
    this.pmWindow = resources.window('pm')
    const sci = resources.irq('sci')
    this.sci = sci.irq
    this.pm = new AcpiPmRegisters((e) => this.event(e), sci)
    pioBus.insert(this.pm, this.pmWindow.base, this.pmWindow.size)
    if (pci && config.pciHotplug) {
      const window = resources.window('hotplug')
      const bridge = pci.bridge
      this.pciHotplug = new PciHotplugRegisters(
        () => this.pm.raiseGedEvent(GED_PCI_HOTPLUG),
        (slot) => bridge.ejected(slot),
      )
      bridge.setHotplugController(this.pciHotplug)
      pioBus.insert(this.pciHotplug, window.base, window.size)
      this.hotplugPort = window.base
    }
  }

  private event(e: PmEvent): void {
    if (e === 'poweroff') this.machine.guestStopped('poweroff', 'guest powered off (ACPI S5)')
    else if (e === 'reset')
      this.machine.guestStopped('reset', 'guest requested a reset (ACPI reset register)')
    else this.machine.report(this.id, 'sleep-ignored', { slpTyp: e.sleep })
  }

  /**
   * Presses the power button, as `system_powerdown` does in QEMU: the GED interrupt runs the
   * DSDT's _EVT, which notifies \_SB.PWRB; Linux's button driver reports KEY_POWER, and the guest's
   * userspace decides (the default guest's acpid powers off). Nothing happens to a guest that
   * ignores it; the host may stop the machine after a grace period of its choosing.
   */
  pressPowerButton(): void {
    this.machine.report(this.id, 'power-button', {})
    this.pm.raiseGedEvent(GED_POWER_BUTTON)
  }

  /** A clean shutdown request (Machine.requestShutdown, `vmm run` on SIGTERM): the power button. */
  requestShutdown(): boolean {
    this.pressPowerButton()
    return true
  }

  /**
   * Puts a device of component `owner` in the DSDT (its Device term in \_SB) and, with `event`,
   * a branch of the GED's _EVT that notifies it; returns what raises that event. Called when the
   * owner is built (it references this component, so it is built after it), before the tables
   * are: a device added later (hot-plugged) would not be in them, and is refused.
   */
  describeDevice(owner: string, device: AcpiDevice): () => void {
    if (this.sealed)
      throw new Error(
        `${owner}: the ACPI tables of ${this.id} are already in guest memory; a device they describe must be in the manifest, not hot-plugged`,
      )
    const bit = device.event?.bit
    if (bit !== undefined) {
      // The event status byte (./pm.ts) has 8 bits; this component raises the low two itself.
      const taken = [...this.devices].find(([, d]) => d.event?.bit === bit)
      if (!Number.isInteger(bit) || bit < 0x04 || bit > 0x80 || (bit & (bit - 1)) !== 0 || taken)
        throw new Error(
          `${owner}: GED event bit ${bit} is not free: ${taken ? `${taken[0]} has it` : `expected one bit of 0x04-0x80 (${hex(GED_OWN_EVENTS)} are ${this.id}'s own)`}`,
        )
    }
    this.devices.set(owner, device)
    return () => {
      if (bit !== undefined) this.pm.raiseGedEvent(bit)
    }
  }

  /** What the tables describe, from the machine. */
  describe(vcpus: number): AcpiMachine {
    const apicIds = Array.from({ length: vcpus }, (_, i) => i)
    const serial = this.serial.map((s) => ({ port: s.port, irq: s.irq }))
    const b = this.pci?.bridge
    return {
      apicIds,
      ioapic: { id: vcpus, address: IOAPIC_ADDRESS },
      ...(b
        ? {
            pci: {
              ecam: b.options.ecam,
              buses: b.options.buses,
              mmio32: b.options.mmio32,
              mmio64: b.options.mmio64,
              // Slot s pin p (0-based) reaches line (s + p) % 4: the bridge's swizzle.
              intxGsis: [0, 1, 2, 3].map((i) => b.options.intx[i]!.irq) as [number, number, number, number],
              ...(this.hotplugPort === undefined ? {} : { hotplugPort: this.hotplugPort }),
            },
          }
        : {}),
      serial,
      ...(this.rtc ? { rtc: { port: this.rtc.port, irq: this.rtc.irq } } : {}),
      pmPort: this.pmWindow.base,
      i8042: this.config.i8042,
      sci: this.sci,
      oemId: this.config.oemId,
      devices: [...this.devices.values()],
    }
  }

  load({ memory, vcpus }: LoadContext): void {
    const blob = buildAcpi(this.describe(vcpus.length), this.config.address)
    const end = blob.base + blob.bytes.length
    if (blob.base < BIOS_AREA_END && end > BIOS_AREA_END)
      throw new Error(
        `${this.id}: the ACPI tables (${blob.bytes.length} bytes) run past the BIOS area at ${hex(BIOS_AREA_END)}`,
      )
    if (!memory.isMapped(guestAddress(blob.base), blob.bytes.length))
      throw new Error(`${this.id}: no guest RAM at ${hex(blob.base)} for the ACPI tables`)
    for (const [owner, { reserved: r }] of this.devices)
      if (r && r.base < end && blob.base < r.base + r.size)
        throw new Error(
          `${this.id}: the ACPI tables [${hex(blob.base)}, ${hex(end)}) overlap what ${owner} keeps at [${hex(r.base)}, ${hex(r.base + r.size)}); move one of them (acpi address, ${owner} address)`,
        )
    memory.write(guestAddress(blob.base), blob.bytes)
    this.blob = blob
  }

  start(): void {
    this.sealed = true
  }

  // Snapshottable: the GED's pending events and the hot-plug slots' unread bitmaps (a plug or an
  // eject request the guest has not read yet survives the restore). The tables are guest RAM.
  quiesce(): void {}

  saveState(): AcpiState {
    return { ged: this.pm.pendingGedEvents, hotplug: this.pciHotplug?.pending ?? null }
  }

  restoreState(state: unknown): void {
    const s = new SavedState(this.id, state).only('ged', 'hotplug')
    const ged = s.int('ged', 0, 0xff)
    const known = [...this.devices.values()].reduce((bits, d) => bits | (d.event?.bit ?? 0), GED_OWN_EVENTS)
    if (ged & ~known)
      s.refuse(
        'ged',
        `event bits ${hex(ged & ~known)} belong to no device of this machine (it has ${hex(known)})`,
      )
    if (s.isNull('hotplug') !== (this.pciHotplug === undefined))
      s.refuse(
        'hotplug',
        this.pciHotplug
          ? 'this machine has PCI hot-plug; the state has none'
          : 'this machine has no PCI hot-plug',
      )
    let slots: { up: number; down: number } | undefined
    if (this.pciHotplug) {
      const h = s.nested('hotplug').only('up', 'down')
      // Slot 0 is the host bridge itself: never plugged or ejected.
      slots = { up: h.int('up', 0, 0xffff_fffe), down: h.int('down', 0, 0xffff_fffe) }
      if ((slots.up | slots.down) & 1) h.refuse('up', 'slot 0 (the host bridge) cannot be hot-plugged')
    }
    this.pm.restoreGedEvents(ged)
    if (slots) this.pciHotplug!.restorePending(slots)
  }

  dispose(): void {
    this.pioBus.remove(this.pmWindow.base)
    if (this.hotplugPort !== undefined) this.pioBus.remove(this.hotplugPort)
  }
}

export const acpiType: ComponentType<AcpiConfig> = {
  name: 'acpi',
  description:
    'ACPI tables (RSDP, XSDT, hardware-reduced FADT, MADT, MCFG, DSDT with PCI0, UARTs, RTC, power button), the sleep/reset registers for a clean power-off, a power button the host can press, and ACPI PCI hot-plug of bus 0',
  schema: {
    properties: {
      address: {
        type: 'integer',
        minimum: 0,
        default: 0xe0000,
        description: 'where the RSDP and tables go; 0xE0000 is found by the legacy scan',
      },
      pci: { type: 'string', description: 'the pci-host-bridge to describe (PCI0, MCFG)' },
      serial: {
        type: 'array',
        items: { type: 'string' },
        default: [],
        description: 'serial components (COM1, ...)',
      },
      kernel: { type: 'string', description: 'the linux component, told where the RSDP is' },
      rtc: {
        type: 'string',
        description: 'the cmos-rtc to describe (PNP0B00; the FADT then says a CMOS RTC is present)',
      },
      i8042: {
        type: 'boolean',
        default: true,
        description: 'whether the machine has an i8042 (FADT boot flags)',
      },
      oemId: { type: 'string', maxLength: 6, default: 'VMM', description: 'OEM ID in every table header' },
      pciHotplug: {
        type: 'boolean',
        default: true,
        description:
          "describe the PCI bridge's slots for ACPI hot-plug (Machine.hotplug/unplug); false: a fixed set of devices, and a shorter boot",
      },
    },
  },
  references: [
    { property: 'pci', types: ['pci-host-bridge'] },
    { property: 'serial', types: ['serial'] },
    { property: 'kernel', types: ['linux'] },
    { property: 'rtc', types: ['cmos-rtc'] },
  ],
  // pm: sleep control/status, reset and GED event status ports. sci: the SCI line, which the GED
  // uses (ISA IRQ 9 on a PC; the MADT gives it a level-triggered, active-high override).
  // hotplug: the PCI hot-plug registers (./pci-hotplug.ts), with a PCI host bridge to describe.
  resources: (config) => [
    { kind: 'pio', name: 'pm', size: 4 },
    { kind: 'irq', name: 'sci' },
    ...(config.pci && config.pciHotplug !== false
      ? [{ kind: 'pio', name: 'hotplug', size: PCI_HOTPLUG_REGISTERS_SIZE, align: 4 } as const]
      : []),
  ],
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).toDynamicValue((ctx) => {
      const ref = <T>(p: string) => ctx.get<T>(referenceToken<T>(p), { optional: true })
      return new Acpi(
        ctx.get(Tokens.Id),
        ctx.get(Tokens.Config) as unknown as AcpiConfig,
        ctx.get(Tokens.Resources),
        ctx.get(Tokens.PioBus),
        ctx.get(Tokens.MachineControl),
        ref<PciHostBridgeComponent>('pci'),
        ref<Serial[]>('serial') ?? [],
        ref<Linux>('kernel'),
        ref<CmosRtc>('rtc'),
      )
    })
  }),
}
