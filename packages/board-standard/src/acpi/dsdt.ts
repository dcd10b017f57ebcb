// The DSDT (ACPI 6.5 §5.2.11.1): its AML, built with ./aml.ts, describes PCI0, the ECAM reservation,
// the UARTs, the RTC, the power button and the GED that presses it, PCI hot-plug slots, the devices
// other components describe (Acpi.describeDevice) and \_S5.
import * as aml from './aml.js'
import {
  type AcpiMachine,
  GED_EVENT_OFFSET,
  GED_PCI_HOTPLUG,
  GED_POWER_BUTTON,
  S5_SLP_TYP,
} from './machine.js'
import { type Oem, table } from './sdt.js'

/** The DSDT's AML: PCI0 with _CRS and _PRT, the ECAM reservation, the UARTs, the RTC, a power button and the GED that presses it, \_S5. */
export function dsdtAml(m: AcpiMachine): Uint8Array {
  const sb: aml.Aml[] = []
  if (m.pci) {
    const p = m.pci
    const crs = [
      aml.wordBusNumber(0, p.buses),
      // The configuration ports are consumed by the bridge; the rest of the I/O space is forwarded.
      aml.ioPort(0xcf8, 0xcf8, 1, 8),
      aml.wordIo(0x0000, 0x0cf8),
      aml.wordIo(0x0d00, 0x10000 - 0x0d00),
      aml.dwordMemory(p.mmio32.base, p.mmio32.size),
    ]
    if (p.mmio64 && p.mmio64.size > 0) crs.push(aml.qwordMemory(p.mmio64.base, p.mmio64.size, true))
    // _PRT (§6.2.13): for each device (address 0xSSSSFFFF: any function) and pin (0 = INTA#), the
    // GSI it reaches (source 0: the index is a GSI). Slot 0 is the host bridge itself.
    const prt: aml.Aml[] = []
    for (let slot = 1; slot < 32; slot++) {
      for (let pin = 0; pin < 4; pin++) {
        prt.push(
          aml.pkg(
            aml.integer(slot * 0x10000 + 0xffff),
            aml.integer(pin),
            aml.integer(0),
            aml.integer(p.intxGsis[(slot + pin) % 4]!),
          ),
        )
      }
    }
    sb.push(
      aml.device(
        'PCI0',
        aml.name('_HID', aml.eisaId('PNP0A08')), // PCI Express root bridge
        aml.name('_CID', aml.eisaId('PNP0A03')), // compatible with a PCI root bridge
        aml.name('_ADR', aml.integer(0)),
        aml.name('_SEG', aml.integer(0)),
        aml.name('_UID', aml.integer(0)),
        aml.name('_BBN', aml.integer(0)),
        aml.name('_CRS', aml.resourceTemplate(...crs)),
        aml.name('_PRT', aml.pkg(...prt)),
        ...(p.hotplugPort === undefined ? [] : pciHotplugAml(p.hotplugPort)),
      ),
      // Linux uses MMCONFIG only where a motherboard resource device reserves it (PCI Firmware 3.0 §4.1.2).
      aml.device(
        'MRES',
        aml.name('_HID', aml.eisaId('PNP0C02')),
        aml.name('_UID', aml.integer(0)),
        aml.name(
          '_CRS',
          aml.resourceTemplate(
            p.ecam.base + p.ecam.size <= 2 ** 32
              ? aml.memory32Fixed(p.ecam.base, p.ecam.size)
              : aml.qwordMemory(p.ecam.base, p.ecam.size),
          ),
        ),
      ),
    )
  }
  m.serial.forEach((s, i) => {
    sb.push(
      aml.device(
        `COM${i + 1}`,
        aml.name('_HID', aml.eisaId('PNP0501')), // 16550A-compatible UART
        aml.name('_UID', aml.integer(i + 1)),
        aml.name(
          '_CRS',
          aml.resourceTemplate(
            aml.ioPort(s.port, s.port, 8, 8),
            s.irq < 16 ? aml.irqNoFlags(s.irq) : aml.extendedInterrupt(s.irq, false, false),
          ),
        ),
      ),
    )
  })
  if (m.rtc) {
    sb.push(
      aml.device(
        'RTC',
        aml.name('_HID', aml.eisaId('PNP0B00')), // AT real-time clock (MC146818 compatible)
        aml.name(
          '_CRS',
          aml.resourceTemplate(
            aml.ioPort(m.rtc.port, m.rtc.port, 1, 2),
            m.rtc.irq < 16 ? aml.irqNoFlags(m.rtc.irq) : aml.extendedInterrupt(m.rtc.irq, false, false),
          ),
        ),
      ),
    )
  }
  // Devices of other components (Acpi.describeDevice), e.g. the VM Generation ID.
  for (const d of m.devices ?? []) sb.push(d.aml)
  const deviceEvents = (m.devices ?? []).flatMap((d) =>
    d.event
      ? [
          aml.ifThen(
            aml.and(aml.local(0), aml.integer(d.event.bit)),
            aml.notify(d.event.notify, d.event.value),
          ),
        ]
      : [],
  )
  sb.push(
    aml.device(
      'PWRB',
      aml.name('_HID', aml.eisaId('PNP0C0C')), // control-method power button (FADT PWR_BUTTON = 1)
      aml.name('_UID', aml.integer(0)),
      aml.method('_STA', 0, false, aml.ret(aml.integer(0x0f))),
    ),
    // The Generic Event Device (ACPI0013, §5.6.9): how a hardware-reduced machine signals events.
    // Its interrupt runs _EVT, which reads (and so clears) the event status byte and notifies
    // the power button: Notify(PWRB, 0x80) is "button pressed" (§4.8.2.2.1.2).
    aml.device(
      'GED',
      aml.name('_HID', aml.string('ACPI0013')),
      aml.name('_UID', aml.integer(0)),
      aml.name('_CRS', aml.resourceTemplate(aml.extendedInterrupt(m.sci, true, false))),
      aml.operationRegion('EREG', 'SystemIO', m.pmPort + GED_EVENT_OFFSET, 1),
      aml.field('EREG', [['ESEL', 8]]),
      aml.method(
        '_EVT',
        1,
        true,
        aml.store(aml.ref('ESEL'), aml.local(0)),
        aml.ifThen(aml.and(aml.local(0), aml.integer(GED_POWER_BUTTON)), aml.notify('\\_SB.PWRB', 0x80)),
        ...(m.pci?.hotplugPort === undefined
          ? []
          : [aml.ifThen(aml.and(aml.local(0), aml.integer(GED_PCI_HOTPLUG)), aml.call('\\_SB.PCI0.PCNT'))]),
        ...deviceEvents,
      ),
    ),
  )
  return aml.concat(
    aml.scope('\\_SB', ...sb),
    // \_S5 (§7.4.2.4): SLP_TYP for PM1a and PM1b; HW-reduced sleep control uses the first.
    aml.name('\\_S5', aml.pkg(aml.integer(S5_SLP_TYP), aml.integer(0), aml.integer(0), aml.integer(0))),
  )
}

/** The slot name of device `slot` on bus 0: S01..S1F. */
export const slotName = (slot: number): string => `S${slot.toString(16).toUpperCase().padStart(2, '0')}`

/**
 * ACPI PCI hot-plug of bus 0 (ACPI 6.5 §6.3.3 _EJx, §5.6.6 Device Object Notifications): a
 * device per slot with _ADR, _SUN and _EJ0 (writing its bit to B0EJ ejects it), and PCNT, which
 * reads which slots gained a function (Notify 1, Device Check: the OS scans the slot) and which
 * the host wants back (Notify 3, Eject Request: the OS lets go of the slot, then calls _EJ0).
 * Linux's acpiphp registers a hot-plug slot for each device with _EJ0.
 */
function pciHotplugAml(port: number): aml.Aml[] {
  const slots = Array.from({ length: 31 }, (_, i) => i + 1)
  const bit = (slot: number) => aml.integer((1 << slot) >>> 0)
  return [
    aml.operationRegion('PHPR', 'SystemIO', port, 12),
    aml.field(
      'PHPR',
      [
        ['PCIU', 32],
        ['PCID', 32],
        ['B0EJ', 32],
      ],
      { access: 'DWordAcc', update: 'WriteAsZeros' },
    ),
    aml.method(
      'PCNT',
      0,
      true,
      aml.store(aml.ref('PCIU'), aml.local(0)),
      aml.store(aml.ref('PCID'), aml.local(1)),
      ...slots.map((s) => aml.ifThen(aml.and(aml.local(0), bit(s)), aml.notify(slotName(s), 1))),
      ...slots.map((s) => aml.ifThen(aml.and(aml.local(1), bit(s)), aml.notify(slotName(s), 3))),
    ),
    ...slots.map((s) =>
      aml.device(
        slotName(s),
        aml.name('_ADR', aml.integer(s * 0x10000)),
        aml.name('_SUN', aml.integer(s)),
        aml.method('_EJ0', 1, false, aml.store(bit(s), aml.ref('B0EJ'))),
      ),
    ),
  ]
}

export function dsdt(oem: Oem, m: AcpiMachine): Uint8Array {
  return table('DSDT', 2, oem, dsdtAml(m))
}
