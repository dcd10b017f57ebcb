// ACPI tables for the standard board, built in TypeScript (ACPI 6.5 §5.2): RSDP, XSDT, FADT
// (hardware-reduced, §4.1), MADT, MCFG (PCI Firmware Specification 3.0 §4.1.2) and a DSDT whose
// AML is in ./dsdt.ts (the header every table shares is ./sdt.ts, what they describe ./machine.ts).
// `buildAcpi` lays them out from one base address and fills in the pointers and checksums.
import { dsdt } from './dsdt.js'
import { type AcpiMachine, LOCAL_APIC_ADDRESS, RESET_VALUE, RTC_CENTURY_INDEX } from './machine.js'
import { checksum, type Oem, table, Writer } from './sdt.js'

export { dsdt, dsdtAml, slotName } from './dsdt.js'
export * from './machine.js'
export { checksum } from './sdt.js'

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
