// Hostile guests against the standard board's ACPI registers (issue 13, fuzz figures): accesses
// of any width at any port of the block.
//  - PM registers (ACPI 6.5 §4.8.3.6-7): power-off only for SLP_EN with \_S5's SLP_TYP in
//    SLEEP_CONTROL, reset only for RESET_VALUE in RESET_REG; the GED event byte returns the events
//    raised since the last read, and the GED line is high exactly while one is pending (§5.6.9).
//  - PCI hot-plug registers: PCIU/PCID return the slots announced since the last read; a B0EJ write
//    ejects exactly the slots (1-31) whose bits it writes as 1, whatever the access's offset/width.
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { AcpiPmRegisters, PciHotplugRegisters, type PmEvent } from '../src/index.js'

const access = (ports: number) =>
  fc.record({
    write: fc.boolean(),
    offset: fc.integer({ min: 0, max: ports - 1 }),
    bytes: fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 4 }),
      fc.constantFrom(Uint8Array.of(0x34), Uint8Array.of(0x01), Uint8Array.of(0xff, 0xff, 0xff, 0xff)),
    ),
    raise: fc.option(fc.integer({ min: 0, max: 31 }), { freq: 3, nil: undefined }),
  })

describe('PCI hot-plug registers: accesses that straddle two registers (regressions)', () => {
  it('a DWORD write at +5 ejects the slots its last byte names in B0EJ', async () => {
    const ejected: number[] = []
    const hp = new PciHotplugRegisters(
      () => {},
      (s) => ejected.push(s),
    )
    hp.write(5, Uint8Array.of(0, 0, 0, 0x02))
    expect(ejected).toEqual([1])
  })

  it('a DWORD read at +1 returns PCIU bytes 1-3 then PCID byte 0, not PCIU byte 0 again', async () => {
    const hp = new PciHotplugRegisters(
      () => {},
      () => {},
    )
    hp.plugged(3) // PCIU = 0x08
    hp.requestEject(1) // PCID = 0x02
    const d = new Uint8Array(4)
    hp.read(1, d)
    expect([...d]).toEqual([0, 0, 0, 0x02])
  })
})

describe('ACPI registers under hostile accesses (fast-check)', () => {
  it('PM and GED: power-off and reset only as §4.8.3 says; the GED line follows pending events', async () => {
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.array(access(4), { maxLength: 32 }), (ops) => {
            const events: PmEvent[] = []
            let level = false
            const pm = new AcpiPmRegisters((e) => events.push(e), {
              irq: 9,
              setLevel: (h) => {
                level = h
              },
              pulse() {},
            })
            let pending = 0
            const expected: PmEvent[] = []
            for (const o of ops) {
              if (o.raise !== undefined) {
                pm.raiseGedEvent(1 << o.raise)
                pending = (pending | (1 << o.raise)) >>> 0
              }
              if (o.write) {
                const v = o.bytes[0]!
                if (o.offset === 0 && v & 0x20)
                  expected.push(((v >> 2) & 7) === 5 ? 'poweroff' : { sleep: (v >> 2) & 7 })
                else if (o.offset === 2 && v === 1) expected.push('reset')
                pm.write(o.offset, o.bytes)
              } else {
                const d = new Uint8Array(o.bytes.length)
                pm.read(o.offset, d)
                if (o.offset === 3) {
                  expect(d[0]).toBe(pending & 0xff)
                  pending = 0
                }
              }
              expect(level).toBe(pm.pendingGedEvents !== 0)
            }
            expect(events).toEqual(expected)
          }),
          p,
        ),
      300,
    )
  })

  it('PCI hot-plug: PCIU/PCID report what was announced; B0EJ ejects exactly the slots written', async () => {
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.array(access(12), { maxLength: 32 }), (ops) => {
            const ejected: number[] = []
            const hp = new PciHotplugRegisters(
              () => {},
              (s) => ejected.push(s),
            )
            let up = 0
            for (const o of ops) {
              if (o.raise !== undefined && o.raise > 0) {
                hp.plugged(o.raise)
                up = (up | (1 << o.raise)) >>> 0
              }
              const bytes = o.bytes.subarray(0, Math.min(o.bytes.length, 12 - o.offset))
              if (o.write) {
                const want: number[] = []
                for (let i = 0; i < bytes.length; i++) {
                  const at = o.offset + i
                  if (at < 8) continue
                  for (let b = 0; b < 8; b++) if ((bytes[i]! >> b) & 1) want.push(8 * (at - 8) + b)
                }
                ejected.length = 0
                hp.write(o.offset, bytes)
                expect(ejected.sort((a, b) => a - b)).toEqual(
                  want.filter((s) => s >= 1).sort((a, b) => a - b),
                )
              } else {
                const d = new Uint8Array(bytes.length)
                const down = hp.pending.down
                hp.read(o.offset, d)
                for (let i = 0; i < d.length; i++) {
                  const at = o.offset + i
                  const value = at < 4 ? up : at < 8 ? down : 0
                  expect(d[i]).toBe((value >>> (8 * (at % 4))) & 0xff)
                }
                if (o.offset + d.length > 4 && o.offset <= 4) expect(hp.pending.down).toBe(0)
                if (o.offset === 0) up = 0
                expect(hp.pending.up).toBe(up)
              }
            }
          }),
          p,
        ),
      300,
    )
  })
})
