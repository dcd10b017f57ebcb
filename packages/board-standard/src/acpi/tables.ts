// ACPI tables for the standard board, built in TypeScript (ACPI 6.5 §5.2): RSDP, XSDT, FADT
// (hardware-reduced, §4.1), MADT, MCFG (PCI Firmware Specification 3.0 §4.1.2) and a DSDT whose
// AML comes from ./aml.ts. `buildAcpi` lays them out from one base address and fills in the
// pointers and checksums.
import * as aml from './aml.js'

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

/** Where the CMOS RTC keeps the century (the IBM PC/AT location, @vmm/board-micro REG_CENTURY). */
export const RTC_CENTURY_INDEX = 0x32

export const LOCAL_APIC_ADDRESS = 0xfee00000
const HEADER_SIZE = 36

export function checksum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let sum = 0
  for (let i = start; i < end; i++) sum = (sum + bytes[i]!) & 0xff
  return (0x100 - sum) & 0xff
}

/** Little-endian writer over a growing byte array. */
class Writer {
  private buf = new Uint8Array(256)
  length = 0
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n))
    next.set(this.buf)
    this.buf = next
  }
  u8(v: number): this {
    this.ensure(1)
    this.buf[this.length++] = v & 0xff
    return this
  }
  u16(v: number): this {
    return this.u8(v).u8(v >>> 8)
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(Math.floor(v / 0x10000) & 0xffff)
  }
  u64(v: number): this {
    return this.u32(v % 2 ** 32).u32(Math.floor(v / 2 ** 32))
  }
  ascii(s: string, n: number): this {
    for (let i = 0; i < n; i++) this.u8(i < s.length ? s.charCodeAt(i) : 0x20)
    return this
  }
  bytes(b: Uint8Array): this {
    this.ensure(b.length)
    this.buf.set(b, this.length)
    this.length += b.length
    return this
  }
  zeros(n: number): this {
    this.ensure(n)
    this.length += n
    return this
  }
  /** Generic Address Structure (§5.2.3.2): System I/O, byte access. */
  gasIo(port: number, bits = 8): this {
    return this.u8(1).u8(bits).u8(0).u8(1).u64(port)
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.length)
  }
}

interface Oem {
  readonly oemId: string
  readonly oemTableId: string
}

/** A table with its System Description Table Header (§5.2.6); length and checksum filled in. */
function table(signature: string, revision: number, oem: Oem, body: Uint8Array): Uint8Array {
  const w = new Writer()
    .ascii(signature, 4)
    .u32(HEADER_SIZE + body.length)
    .u8(revision)
    .u8(0)
    .ascii(oem.oemId, 6)
    .ascii(oem.oemTableId, 8)
    .u32(1) // OEM revision
    .ascii('VMM ', 4) // creator ID
    .u32(1) // creator revision
    .bytes(body)
  const out = w.done()
  out[9] = checksum(out)
  return out
}

/** RSDP, revision 2 (§5.2.5.3): 36 bytes, two checksums; the XSDT is how tables are found. */
export function rsdp(oem: Oem, xsdtAddress: number): Uint8Array {
  const out = new Writer()
    .ascii('RSD PTR ', 8)
    .u8(0)
    .ascii(oem.oemId, 6)
    .u8(2)
    .u32(0) // RsdtAddress: no RSDT, 64-bit guests use the XSDT
    .u32(36)
    .u64(xsdtAddress)
    .u8(0)
    .zeros(3)
    .done()
  out[8] = checksum(out, 0, 20)
  out[32] = checksum(out)
  return out
}

export function xsdt(oem: Oem, entries: readonly number[]): Uint8Array {
  const w = new Writer()
  for (const e of entries) w.u64(e)
  return table('XSDT', 1, oem, w.done())
}

/**
 * FADT, revision 6.5 (§5.2.9), hardware-reduced (§4.1): no PM1/GPE blocks, no FACS; power-off
 * and sleep go through SLEEP_CONTROL_REG/SLEEP_STATUS_REG, reset through RESET_REG.
 */
export function fadt(oem: Oem, m: AcpiMachine, dsdtAddress: number): Uint8Array {
  // Flags (§5.2.9, table 5.10): WBINVD (0), PWR_BUTTON (4) and SLP_BUTTON (5) as control-method
  // devices, RESET_REG_SUP (10), HW_REDUCED_ACPI (20).
  const flags = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 10) | (1 << 20)
  // IA-PC boot architecture flags (table 5.11): legacy devices (1 << 0) when there is a UART,
  // 8042 (1 << 1), VGA not present (1 << 2), ASPM controls off (1 << 4), CMOS RTC not present (1 << 5).
  const iapc = (m.serial.length > 0 ? 1 : 0) | (m.i8042 ? 2 : 0) | (1 << 2) | (1 << 4) | (m.rtc ? 0 : 1 << 5)
  const w = new Writer()
    .u32(0) // FIRMWARE_CTRL: no FACS in hardware-reduced ACPI
    .u32(dsdtAddress < 2 ** 32 ? dsdtAddress : 0)
    .u8(0) // reserved
    .u8(0) // Preferred_PM_Profile: unspecified
    .u16(m.sci)
    .u32(0) // SMI_CMD: no SMM, ACPI is always enabled
    .u8(0)
    .u8(0)
    .u8(0)
    .u8(0)
    .zeros(4 * 8) // PM1a/b event and control, PM2 control, PM timer, GPE0/1 blocks: none
    .zeros(8) // their lengths and GPE1_BASE, CST_CNT
    .u16(0)
    .u16(0) // P_LVL2_LAT, P_LVL3_LAT
    .u16(0)
    .u16(0) // FLUSH_SIZE, FLUSH_STRIDE
    .zeros(4) // DUTY_OFFSET, DUTY_WIDTH, DAY_ALRM, MON_ALRM: no day or month alarm
    .u8(m.rtc ? RTC_CENTURY_INDEX : 0) // CENTURY: the CMOS index of the century byte
    .u16(iapc)
    .u8(0)
    .u32(flags)
    .gasIo(m.pmPort + 2) // RESET_REG
    .u8(RESET_VALUE)
    .u16(0) // ARM_BOOT_ARCH
    .u8(5) // FADT minor version: 6.5
    .u64(0) // X_FIRMWARE_CTRL
    .u64(dsdtAddress) // X_DSDT
    .zeros(12 * 8) // X_PM1a_EVT_BLK .. X_GPE1_BLK: none
    .gasIo(m.pmPort) // SLEEP_CONTROL_REG
    .gasIo(m.pmPort + 1) // SLEEP_STATUS_REG
    .ascii('VMMTSKVM', 8) // Hypervisor Vendor Identity
  const out = table('FACP', 6, oem, w.done())
  if (out.length !== 276) throw new Error(`FADT is ${out.length} bytes; ACPI 6.5 says 276`)
  return out
}

/**
 * MADT (§5.2.12): a Local APIC per vCPU (a Local x2APIC for IDs of 255 and up), the IOAPIC,
 * interrupt source overrides for the PIT (ISA IRQ 0 is IOAPIC pin 2) and the SCI (level,
 * active-high), and LINT1 as NMI on every processor.
 */
export function madt(oem: Oem, m: AcpiMachine): Uint8Array {
  const w = new Writer().u32(LOCAL_APIC_ADDRESS).u32(1) // PCAT_COMPAT: the in-kernel 8259s exist
  m.apicIds.forEach((id, uid) => {
    if (id < 255) w.u8(0).u8(8).u8(uid).u8(id).u32(1)
    else w.u8(9).u8(16).u16(0).u32(id).u32(1).u32(uid)
  })
  w.u8(1).u8(12).u8(m.ioapic.id).u8(0).u32(m.ioapic.address).u32(0)
  w.u8(2).u8(10).u8(0).u8(0).u32(2).u16(0) // ISA IRQ 0 -> GSI 2, bus-conforming polarity/trigger
  // SCI: level-triggered (trigger mode 11b at bits 3:2), active-high (01b at bits 1:0) (§5.2.12.5).
  w.u8(2).u8(10).u8(0).u8(m.sci).u32(m.sci).u16(0x000d)
  w.u8(4).u8(6).u8(0xff).u16(0).u8(1) // Local APIC NMI: all processors, LINT1
  return table('APIC', 5, oem, w.done())
}

/** MCFG (PCI Firmware 3.0 §4.1.2): the ECAM window of segment 0. */
export function mcfg(oem: Oem, ecam: { base: number }, buses: number): Uint8Array {
  const w = new Writer()
    .zeros(8)
    .u64(ecam.base)
    .u16(0)
    .u8(0)
    .u8(buses - 1)
    .u32(0)
  return table('MCFG', 1, oem, w.done())
}

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

export interface AcpiBlob {
  /** The bytes to copy to `base`. */
  readonly bytes: Uint8Array
  readonly base: number
  readonly rsdp: number
  /** Where each table went, by signature. */
  readonly tables: Readonly<Record<string, { address: number; bytes: Uint8Array }>>
}

/**
 * Builds every table and lays them out from `base` (16-byte aligned, the RSDP first so a legacy
 * scan of 0xE0000-0xFFFFF finds it, §5.2.5.1).
 */
export function buildAcpi(m: AcpiMachine, base: number): AcpiBlob {
  if (base % 16 !== 0) throw new RangeError('the RSDP must be on a 16-byte boundary')
  const oem: Oem = { oemId: m.oemId ?? 'VMM', oemTableId: m.oemTableId ?? 'VMMSTD' }
  const align = (n: number) => Math.ceil(n / 16) * 16
  const rsdpAt = base
  let at = align(base + 36)
  const dsdtBytes = dsdt(oem, m)
  const dsdtAt = at
  at = align(at + dsdtBytes.length)
  const fadtBytes = fadt(oem, m, dsdtAt)
  const fadtAt = at
  at = align(at + fadtBytes.length)
  const madtBytes = madt(oem, m)
  const madtAt = at
  at = align(at + madtBytes.length)
  const entries = [fadtAt, madtAt]
  const tables: Record<string, { address: number; bytes: Uint8Array }> = {
    DSDT: { address: dsdtAt, bytes: dsdtBytes },
    FACP: { address: fadtAt, bytes: fadtBytes },
    APIC: { address: madtAt, bytes: madtBytes },
  }
  if (m.pci) {
    const mcfgBytes = mcfg(oem, m.pci.ecam, m.pci.buses)
    tables.MCFG = { address: at, bytes: mcfgBytes }
    entries.push(at)
    at = align(at + mcfgBytes.length)
  }
  const xsdtAt = at
  // The XSDT's size is known before its contents: 8 bytes per entry.
  const xsdtBytes = xsdt(oem, entries)
  tables.XSDT = { address: xsdtAt, bytes: xsdtBytes }
  at += xsdtBytes.length
  const rsdpBytes = rsdp(oem, xsdtAt)
  tables.RSDP = { address: rsdpAt, bytes: rsdpBytes }
  const out = new Uint8Array(at - base)
  for (const t of Object.values(tables)) out.set(t.bytes, t.address - base)
  return { bytes: out, base, rsdp: rsdpAt, tables }
}
