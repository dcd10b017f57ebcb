// The ACPI tables, checked by ACPICA's disassembler (Debian's acpica-tools): every table must
// disassemble without errors, and the DSDT must say what we meant.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import * as aml from '../src/acpi/aml.js'
import { type AcpiMachine, buildAcpi, checksum } from '../src/acpi/tables.js'

const iasl = spawnSync('iasl', ['-v'], { encoding: 'utf8' })
const iaslMissing = iasl.error
  ? `iasl not found (${iasl.error.message}); apt-get install -y acpica-tools`
  : undefined
if (iaslMissing) console.warn(`[ACPI disassembly tests skipped] ${iaslMissing}`)

export const machine: AcpiMachine = {
  apicIds: [0, 1, 2, 3],
  ioapic: { id: 4, address: 0xfec00000 },
  pci: {
    ecam: { base: 0xe0000000, size: 0x1000000 },
    buses: 16,
    mmio32: { base: 0xc0000000, size: 0x10000000 },
    mmio64: { base: 0x4000000000, size: 0x4000000000 },
    intxGsis: [16, 17, 18, 19],
    hotplugPort: 0x610,
  },
  serial: [{ port: 0x3f8, irq: 4 }],
  rtc: { port: 0x70, irq: 8 },
  pmPort: 0x600,
  i8042: true,
  sci: 9,
}

function disassemble(name: string, bytes: Uint8Array): { dsl: string; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-acpi-'))
  const file = join(dir, `${name}.dat`)
  writeFileSync(file, bytes)
  const r = spawnSync('iasl', ['-d', file], { encoding: 'utf8', cwd: dir })
  const output = `${r.stdout}\n${r.stderr}`
  if (r.status !== 0) throw new Error(`iasl -d ${name} failed (${r.status}):\n${output}`)
  return { dsl: readFileSync(join(dir, `${name}.dsl`), 'utf8'), output }
}

describe('AML encoding', () => {
  it('encodes package lengths in 1 to 4 bytes (ACPI 6.5 §20.2.4)', () => {
    expect([...aml.pkgLength(10)]).toEqual([11])
    expect([...aml.pkgLength(62)]).toEqual([63])
    expect([...aml.pkgLength(63)]).toEqual([0x41, 0x04]) // 65 = 0x41: lead 01xx0001, then 0x04
    expect([...aml.pkgLength(0x1000)]).toEqual([0x83, 0x00, 0x01]) // 0x1003 needs 3 bytes
  })

  it('encodes integers in the shortest form and EISA IDs compressed', () => {
    expect([...aml.integer(0)]).toEqual([0x00])
    expect([...aml.integer(1)]).toEqual([0x01])
    expect([...aml.integer(0x12)]).toEqual([0x0a, 0x12])
    expect([...aml.integer(0x1234)]).toEqual([0x0b, 0x34, 0x12])
    expect([...aml.integer(0x4000000000)]).toEqual([0x0e, 0, 0, 0, 0, 0x40, 0, 0, 0])
    expect([...aml.eisaId('PNP0A03')]).toEqual([0x0c, 0x41, 0xd0, 0x0a, 0x03])
  })

  it('encodes name paths with root, dual and multi name prefixes', () => {
    expect(new TextDecoder().decode(aml.nameString('\\_SB'))).toBe('\\_SB_')
    expect([...aml.nameString('\\_SB.PCI0')].slice(0, 2)).toEqual([0x5c, 0x2e])
    expect([...aml.nameString('A.B.C')].slice(0, 2)).toEqual([0x2f, 3])
  })
})

describe('ACPI tables', () => {
  const blob = buildAcpi(machine, 0xe0000)

  it('checksums every table to zero and the RSDP over its first 20 and all 36 bytes', () => {
    for (const [sig, t] of Object.entries(blob.tables)) {
      if (sig === 'RSDP') {
        expect(checksum(t.bytes, 0, 20)).toBe(0)
        expect(checksum(t.bytes, 0, 36)).toBe(0)
      } else {
        expect(checksum(t.bytes), sig).toBe(0)
        expect(new DataView(t.bytes.buffer).getUint32(4, true)).toBe(t.bytes.length)
      }
    }
    expect(blob.rsdp).toBe(0xe0000)
    expect(new TextDecoder().decode(blob.bytes.subarray(0, 8))).toBe('RSD PTR ')
  })

  it('points the RSDP at the XSDT and the XSDT at FADT, MADT and MCFG; the FADT at the DSDT', () => {
    const t = blob.tables
    const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength)
    expect(Number(dv(t.RSDP!.bytes).getBigUint64(24, true))).toBe(t.XSDT!.address)
    const x = dv(t.XSDT!.bytes)
    const entries = [0, 1, 2].map((i) => Number(x.getBigUint64(36 + 8 * i, true)))
    expect(entries).toEqual([t.FACP!.address, t.APIC!.address, t.MCFG!.address])
    expect(Number(dv(t.FACP!.bytes).getBigUint64(140, true))).toBe(t.DSDT!.address)
  })

  describe.skipIf(iaslMissing)('disassembled by iasl -d', () => {
    // The RSDP has no standard table header, and iasl 20200925 refuses it as a file of its own
    // ("Binary file does not contain a valid ACPI table"); the checksum test above covers it.
    it.each(['DSDT', 'FACP', 'APIC', 'MCFG', 'XSDT'])('%s disassembles without errors', (sig) => {
      const { dsl, output } = disassemble(sig, blob.tables[sig]!.bytes)
      expect(output).not.toMatch(/\bError\b|Invalid|Warning|checksum/i)
      expect(dsl).not.toMatch(/Invalid|Incorrect|\*\*\*\*\*|Unknown/)
      expect(dsl).toMatch(/Checksum\s+:?\s*(0x)?[0-9A-F]{2}\s*$/m)
    })

    it('shows PCI0, its windows and routing, the UART, the power button and \\_S5 in the DSDT', () => {
      const { dsl } = disassemble('DSDT', blob.tables.DSDT!.bytes)
      expect(dsl).toContain('Device (PCI0)')
      expect(dsl).toContain('EisaId ("PNP0A08")')
      expect(dsl).toContain('EisaId ("PNP0A03")')
      expect(dsl).toMatch(/WordBusNumber[\s\S]*0x0000,[\s\S]*0x000F,/)
      expect(dsl).toMatch(/DWordMemory[\s\S]*0xC0000000,[\s\S]*0xCFFFFFFF,/)
      expect(dsl).toMatch(/QWordMemory[\s\S]*0x0000004000000000,[\s\S]*0x0000007FFFFFFFFF,/)
      expect(dsl).toContain('Name (_PRT, Package (0x7C)')
      expect(dsl).toContain('EisaId ("PNP0501")')
      expect(dsl).toMatch(/IO \(Decode16,\s*0x03F8,[^\n]*\n\s*0x03F8,/)
      expect(dsl).toContain('EisaId ("PNP0C0C")')
      expect(dsl).toContain('EisaId ("PNP0C02")')
      expect(dsl).toMatch(
        /Device \(RTC\)[\s\S]*?EisaId \("PNP0B00"\)[\s\S]*?IO \(Decode16,\s*0x0070,\s*\/\/[^\n]*\n\s*0x0070,[\s\S]*?0x02,[\s\S]*?IRQNoFlags \(\)\s*\{8\}/,
      )
      expect(dsl).toMatch(/Memory32Fixed \(ReadWrite,\s*0xE0000000,[^\n]*\n\s*0x01000000,/)
      expect(dsl).toMatch(/Name \(\\_S5, Package \(0x04\)[^\n]*\n\s*\{\s*0x05,/)
      // The GED: its interrupt (the SCI line, level, active-high) and the _EVT that reads the
      // event byte at pm + 3 and notifies the power button.
      expect(dsl).toMatch(/Device \(GED\)[\s\S]*?Name \(_HID, "ACPI0013"/)
      expect(dsl).toMatch(
        /Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive[^)]*\)\s*\{\s*0x00000009,/,
      )
      expect(dsl).toMatch(/OperationRegion \(EREG, SystemIO, 0x0603, One\)/)
      expect(dsl).toMatch(/Field \(EREG, ByteAcc, NoLock, Preserve\)\s*\{\s*ESEL,\s*8\s*\}/)
      expect(dsl).toMatch(
        /Method \(_EVT, 1, Serialized\)[^\n]*\s*\{\s*Local0 = ESEL[^\n]*\n\s*If \(\(Local0 & One\)\)\s*\{\s*Notify \(\\_SB\.PWRB, 0x80\)/,
      )
    })

    it('describes bus 0 for ACPI PCI hot-plug: slot devices with _EJ0, PCNT, and the GED calling it', () => {
      const { dsl } = disassemble('DSDT', blob.tables.DSDT!.bytes)
      expect(dsl).toMatch(/OperationRegion \(PHPR, SystemIO, 0x0610, 0x0C\)/)
      expect(dsl).toMatch(
        /Field \(PHPR, DWordAcc, NoLock, WriteAsZeros\)\s*\{\s*PCIU,\s*32,\s*PCID,\s*32,\s*B0EJ,\s*32\s*\}/,
      )
      expect(dsl.match(/Device \(S[0-9A-F]{2}\)/g)).toHaveLength(31)
      expect(dsl).toMatch(
        /Device \(S1F\)\s*\{\s*Name \(_ADR, 0x001F0000\)[^\n]*\n\s*Name \(_SUN, 0x1F\)[^\n]*\n\s*Method \(_EJ0, 1, NotSerialized\)[^\n]*\s*\{\s*B0EJ = 0x80000000/,
      )
      expect(dsl).toMatch(/Method \(PCNT, 0, Serialized\)[^\n]*\s*\{\s*Local0 = PCIU[^\n]*\n\s*Local1 = PCID/)
      expect(dsl).toMatch(/If \(\(Local0 & 0x02\)\)\s*\{\s*Notify \(S01, One\)/)
      expect(dsl).toMatch(/If \(\(Local1 & 0x80000000\)\)\s*\{\s*Notify \(S1F, 0x03\)/)
      expect(dsl).toMatch(/If \(\(Local0 & 0x02\)\)\s*\{\s*\\_SB\.PCI0\.PCNT \(\)/)
      // Without the registers, no slots and no call.
      const plain = buildAcpi({ ...machine, pci: { ...machine.pci!, hotplugPort: undefined } }, 0xe0000)
      const plainDsl = disassemble('DSDT', plain.tables.DSDT!.bytes).dsl
      expect(plainDsl).not.toContain('PCNT')
      expect(plainDsl).not.toMatch(/Device \(S01\)/)
    })

    it('shows a hardware-reduced FADT with sleep control and reset registers, and the MADT entries', () => {
      const fadt = disassemble('FACP', blob.tables.FACP!.bytes).dsl
      expect(fadt).toMatch(/Hardware Reduced \(V5\) : 1/)
      expect(fadt).toMatch(/Sleep Control Register[\s\S]*?Address : 0000000000000600/)
      expect(fadt).toMatch(/Reset Register[\s\S]*?Address : 0000000000000602/)
      expect(fadt).toMatch(/Sleep Status Register[\s\S]*?Address : 0000000000000601/)
      // The RTC is there: its century byte at CMOS 0x32, and no "CMOS RTC not present" flag.
      expect(fadt).toMatch(/Century Index[^:]*: 32/)
      expect(fadt).toMatch(/CMOS RTC Not Present[^:]*: 0/)
      const { rtc: _, ...noRtc } = machine
      const without = disassemble('FACP', buildAcpi(noRtc, 0xe0000).tables.FACP!.bytes).dsl
      expect(without).toMatch(/Century Index[^:]*: 00/)
      expect(without).toMatch(/CMOS RTC Not Present[^:]*: 1/)
      const madt = disassemble('APIC', blob.tables.APIC!.bytes).dsl
      expect(madt.match(/Subtable Type : 00 \[Processor Local APIC\]/g)).toHaveLength(4)
      expect(madt).toContain('[I/O APIC]')
      expect(madt).toMatch(/Source : 00\s*\n.*Interrupt : 00000002/)
      expect(madt).toMatch(/Source : 09\s*\n.*Interrupt : 00000009\s*\n.*: 000D/)
      const mcfg = disassemble('MCFG', blob.tables.MCFG!.bytes).dsl
      expect(mcfg).toMatch(/Base Address : 00000000E0000000/)
      expect(mcfg).toMatch(/End Bus Number : 0F/)
    })

    it('encodes x2APIC entries for APIC IDs from 255', () => {
      const b = buildAcpi({ ...machine, apicIds: [0, 300] }, 0xe0000)
      const madt = disassemble('APIC', b.tables.APIC!.bytes).dsl
      expect(madt).toContain('[Processor Local x2APIC]')
      expect(madt).toMatch(/Processor x2Apic ID : 0000012C/)
    })
  })
})
