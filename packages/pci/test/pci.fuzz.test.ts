// Hostile guests against PCI configuration space and the MSI-X table (issue 13, fuzz figures).
//  - Configuration writes of any width at any offset, through CF8/CFC and ECAM, to the host bridge
//    and a device: nothing throws, and what PCI Local Bus 3.0 §6.1-§6.2 and §6.7 make read-only
//    stays: Vendor/Device ID, Revision/Class Code, Header Type, the Capabilities Pointer, each
//    capability's ID and Next pointer, MSI-X Table Size, Table and PBA Offset/BIR (§6.8.2.3-5).
//  - Table and PBA accesses of any width at any offset, with device notifications and Message
//    Control writes between them: nothing throws; Vector Control reserved bits read 0 and Message
//    Address bits 1:0 read 0 (§6.8.2.5, §6.8.2.9); the PBA is read-only to software (§6.8.2.10)
//    and holds only vectors the device raised; nothing is delivered that was not raised.
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Command, Reg } from '../src/index.js'
import { setup } from './rig.js'

/** The read-only identity of a function: fixed registers and the capability list's links. */
function identity(t: ReturnType<typeof setup>, slot: number): number[] {
  const fixed = [0x00, 0x04, 0x08, 0x0c].map((r) =>
    r === 0x04 ? t.cfgRead(slot, r) >>> 16 : t.cfgRead(slot, r),
  )
  fixed[3] = (fixed[3]! >>> 16) & 0xff // Header Type
  if (slot === 0) return fixed
  fixed[1] = 0 // Status holds RW1C and device-set bits; the Command half is writable
  const caps: number[] = []
  for (let p = t.cfgRead(slot, 0x34, 1), n = 0; p !== 0 && n < 48; p = t.cfgRead(slot, p + 1, 1), n++)
    caps.push(p, t.cfgRead(slot, p, 1))
  return [...fixed, t.cfgRead(slot, 0x34, 1), ...caps]
}

const width = fc.constantFrom(1 as const, 2 as const, 4 as const)
const value = fc.oneof(
  fc.constantFrom(0, 0xffff_ffff, 0x8000, 0xc000),
  fc.integer({ min: 0, max: 0xffff_ffff }),
)

describe('PCI under hostile configuration and MSI-X accesses (fast-check)', () => {
  it('configuration writes keep the read-only registers and the capability list', async () => {
    const write = fc.record({
      slot: fc.constantFrom(0, 1),
      reg: fc.oneof(fc.integer({ min: 0, max: 0xff }), fc.integer({ min: 0, max: 0xfff })),
      width,
      value,
      ecam: fc.boolean(),
    })
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.array(write, { maxLength: 24 }), (writes) => {
            const t = setup()
            const msixCap = t.dev.msix!.offset
            const before = [identity(t, 0), identity(t, 1)]
            const msix = () => [
              t.cfgRead(1, msixCap + 2, 2) & 0x7ff,
              t.cfgRead(1, msixCap + 4),
              t.cfgRead(1, msixCap + 8),
            ]
            const msixBefore = msix()
            for (const w of writes) {
              const reg = w.reg - (w.reg % w.width)
              if (w.ecam) {
                const d = new Uint8Array(w.width)
                for (let i = 0; i < w.width; i++) d[i] = (w.value >>> (8 * i)) & 0xff
                t.mmio.write(0xe0000000 + (w.slot << 15) + reg, d)
              } else if (reg < 0x100) t.cfgWrite(w.slot, reg, w.value, w.width)
            }
            expect([identity(t, 0), identity(t, 1)]).toEqual(before)
            expect(msix()).toEqual(msixBefore)
          }),
          p,
        ),
      200,
    )
  })

  it('MSI-X table and PBA: reserved bits read 0, the PBA is read-only and holds only raised vectors', async () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('bar' as const),
        offset: fc.oneof(
          fc.integer({ min: 0, max: 0x40 }),
          fc.integer({ min: 0x7f8, max: 0x810 }),
          fc.integer({ min: 0, max: 0x1000 }),
        ),
        width: fc.constantFrom(1, 2, 4, 8),
        value: fc.uint8Array({ minLength: 8, maxLength: 8 }),
      }),
      fc.record({
        kind: fc.constant('raise' as const),
        offset: fc.integer({ min: 0, max: 5 }),
        width: fc.constant(0),
        value: fc.constant(new Uint8Array()),
      }),
      fc.record({
        kind: fc.constant('control' as const),
        offset: fc.constant(0),
        width: fc.constant(2),
        value: fc.uint8Array({ minLength: 2, maxLength: 2 }),
      }),
    )
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.array(op, { maxLength: 32 }), (ops) => {
            const t = setup()
            t.cfgWrite(1, Reg.Command, Command.MemorySpace | Command.BusMaster, 2)
            const table = t.dev.barAddress(2)
            const regs = t.dev.barAddress(0)
            const cap = t.dev.msix!.offset
            const raised = new Set<number>()
            let raises = 0
            for (const o of ops) {
              if (o.kind === 'bar') {
                const d = o.value.slice(0, o.width)
                if (o.offset >= 0x800 && o.offset < 0x808) {
                  const pba = t.mmioRead32(table + 0x800)
                  t.space.mmioWrite(table + o.offset, d) || t.mmio.write(table + o.offset, d)
                  expect(t.mmioRead32(table + 0x800)).toBe(pba)
                } else if (!t.space.mmioWrite(table + o.offset, d)) t.mmio.write(table + o.offset, d)
              } else if (o.kind === 'raise') {
                raised.add(o.offset)
                raises++
                t.mmioWrite32(regs + 0x0c, o.offset)
              } else t.cfgWrite(1, cap + 2, o.value[0]! | (o.value[1]! << 8), 2)
            }
            for (let v = 0; v < 4; v++) {
              expect(t.mmioRead32(table + v * 16 + 12) & ~1).toBe(0)
              expect(t.mmioRead32(table + v * 16) & 3).toBe(0)
            }
            const pba = t.mmioRead32(table + 0x800)
            for (let v = 0; v < 32; v++) if (pba & (1 << v)) expect(raised.has(v) && v < 4).toBe(true)
            expect(t.msi.deliveries.length).toBeLessThanOrEqual(raises)
          }),
          p,
        ),
      200,
    )
  })
})
