// The Intel MultiProcessor Specification 1.4 table (chapter 4): how a guest without ACPI learns
// its CPUs, the IOAPIC and how ISA interrupts reach it. Linux (CONFIG_X86_MPPARSE) scans the last
// KiB of base memory for the floating pointer, which is where we put it.
import { type GuestMemory, guestAddress } from '@vmm/core'

export const APIC_DEFAULT_BASE = 0xfee00000
export const IOAPIC_DEFAULT_BASE = 0xfec00000
/** The in-kernel IOAPIC has 24 pins (KVM_IOAPIC_NUM_PINS). */
const IOAPIC_PINS = 24

const FLOATING_SIZE = 16
const HEADER_SIZE = 44
const PROCESSOR_SIZE = 20
const SMALL_ENTRY_SIZE = 8

function checksum(bytes: Uint8Array): number {
  let sum = 0
  for (const b of bytes) sum = (sum + b) & 0xff
  return (256 - sum) & 0xff
}

function ascii(dv: DataView, at: number, text: string, width: number): void {
  for (let i = 0; i < width; i++) dv.setUint8(at + i, i < text.length ? text.charCodeAt(i) : 0x20)
}

/** Bytes the table for `cpus` vCPUs takes, so a board can check it fits before the EBDA ends. */
export function mpTableSize(cpus: number): number {
  return FLOATING_SIZE + HEADER_SIZE + cpus * PROCESSOR_SIZE + (1 + 1 + IOAPIC_PINS + 2) * SMALL_ENTRY_SIZE
}

/** Writes the floating pointer and configuration table at `address` for `cpus` vCPUs (APIC ids 0..n-1). */
export function writeMpTable(memory: GuestMemory, address: number, cpus: number): void {
  if (cpus < 1 || cpus > 254) throw new RangeError(`an MP table describes 1 to 254 CPUs, not ${cpus}`)
  const size = mpTableSize(cpus)
  const buf = new Uint8Array(size)
  const dv = new DataView(buf.buffer)
  const table = FLOATING_SIZE
  const ioapicId = cpus // the first id after the CPUs' APIC ids

  // MP floating pointer structure (MPS §4.1)
  ascii(dv, 0, '_MP_', 4)
  dv.setUint32(4, address + table, true) // physical address of the configuration table
  dv.setUint8(8, 1) // length in 16-byte units
  dv.setUint8(9, 4) // spec revision 1.4
  dv.setUint8(10, checksum(buf.subarray(0, FLOATING_SIZE)))

  // Configuration table entries (MPS §4.3)
  let p = table + HEADER_SIZE
  let count = 0
  for (let cpu = 0; cpu < cpus; cpu++) {
    dv.setUint8(p, 0) // processor
    dv.setUint8(p + 1, cpu) // local APIC id
    dv.setUint8(p + 2, 0x14) // local APIC version (integrated APIC)
    dv.setUint8(p + 3, cpu === 0 ? 0x3 : 0x1) // enabled, bootstrap processor for cpu 0
    dv.setUint32(p + 4, 0x600, true) // CPU signature: family 6
    dv.setUint32(p + 8, 0x201, true) // feature flags: FPU, APIC
    p += PROCESSOR_SIZE
    count++
  }
  dv.setUint8(p, 1) // bus
  dv.setUint8(p + 1, 0)
  ascii(dv, p + 2, 'ISA', 6)
  p += SMALL_ENTRY_SIZE
  count++
  dv.setUint8(p, 2) // I/O APIC
  dv.setUint8(p + 1, ioapicId)
  dv.setUint8(p + 2, 0x11) // version
  dv.setUint8(p + 3, 1) // enabled
  dv.setUint32(p + 4, IOAPIC_DEFAULT_BASE, true)
  p += SMALL_ENTRY_SIZE
  count++
  for (let irq = 0; irq < IOAPIC_PINS; irq++) {
    dv.setUint8(p, 3) // I/O interrupt assignment
    dv.setUint8(p + 1, 0) // INT (vectored)
    dv.setUint16(p + 2, 0, true) // polarity and trigger conform to the bus
    dv.setUint8(p + 4, 0) // source bus: ISA
    dv.setUint8(p + 5, irq)
    dv.setUint8(p + 6, ioapicId)
    dv.setUint8(p + 7, irq) // IOAPIC pin = ISA irq, as the in-kernel IOAPIC is wired
    p += SMALL_ENTRY_SIZE
    count++
  }
  for (const [type, lint] of [
    [3, 0], // ExtINT -> LINT0: the 8259 PIC in virtual-wire mode
    [1, 1], // NMI -> LINT1
  ] as const) {
    dv.setUint8(p, 4) // local interrupt assignment
    dv.setUint8(p + 1, type)
    dv.setUint16(p + 2, 0, true)
    dv.setUint8(p + 4, 0)
    dv.setUint8(p + 5, 0)
    dv.setUint8(p + 6, 0xff) // all local APICs
    dv.setUint8(p + 7, lint)
    p += SMALL_ENTRY_SIZE
    count++
  }

  // Configuration table header (MPS §4.2)
  ascii(dv, table, 'PCMP', 4)
  dv.setUint16(table + 4, size - table, true) // base table length
  dv.setUint8(table + 6, 4)
  ascii(dv, table + 8, 'VMM-TS', 8) // OEM id
  ascii(dv, table + 16, 'MICROVM', 12) // product id
  dv.setUint16(table + 34, count, true)
  dv.setUint32(table + 36, APIC_DEFAULT_BASE, true)
  dv.setUint8(table + 7, checksum(buf.subarray(table)))
  memory.write(guestAddress(address), buf)
}
