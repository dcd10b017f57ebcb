// Hostile guests against the legacy devices' register files (issue 13, fuzz figures): random
// sequences of port accesses. Invariants from the datasheets: nothing throws, every read is a byte,
// and what the spec fixes stays fixed.
//  - 16550A (TI PC16550D datasheet, "Register Description"): bytes written to THR with DLAB = 0 and
//    loopback off reach the console in order, and nothing else does; the RX FIFO holds at most 16.
//  - i8042 (IBM PC/AT technical reference, 8042 commands): the CPU is reset only by command 0xFE
//    (or 0xF0-0xFD with bit 0 low: a pulse of output-port bit 0) or an output-port write (0xD1)
//    with bit 0 low.
//  - MC146818A (datasheet, "Registers"): register D reads VRT (0x80), writes to C and D are
//    dropped, and the user RAM bytes (0x0e-0x7f, less the century byte 0x32) read back what was
//    last written.
import type { InterruptLine } from '@vmm/core'
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  I8042Controller,
  Mc146818,
  REG_CENTURY,
  type RtcClock,
  RX_FIFO_SIZE,
  Uart16550,
} from '../src/index.js'

const irq: InterruptLine = { irq: 4, setLevel() {}, pulse() {} }
const byte = fc.integer({ min: 0, max: 255 })

describe('legacy devices under hostile port accesses (fast-check)', () => {
  it('16550A: THR bytes reach the console exactly; reads are bytes; the RX FIFO stays bounded', async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('write' as const), offset: fc.integer({ min: 0, max: 7 }), value: byte }),
      fc.record({
        kind: fc.constant('read' as const),
        offset: fc.integer({ min: 0, max: 7 }),
        value: fc.constant(0),
      }),
      fc.record({
        kind: fc.constant('receive' as const),
        offset: fc.constant(0),
        value: fc.integer({ min: 0, max: 40 }),
      }),
    )
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.array(op, { maxLength: 64 }), (ops) => {
            const out: number[] = []
            const expected: number[] = []
            const u = new Uart16550(irq, { write: (b) => out.push(...b) })
            let lcr = 0
            let mcr = 0
            const d = new Uint8Array(1)
            for (const { kind, offset, value } of ops) {
              if (kind === 'write') {
                if (offset === 0 && !(lcr & 0x80) && !(mcr & 0x10)) expected.push(value)
                if (offset === 3) lcr = value
                if (offset === 4) mcr = value
                u.write(offset, Uint8Array.of(value))
              } else if (kind === 'read') {
                u.read(offset, d)
                expect(d[0]).toBeGreaterThanOrEqual(0)
              } else {
                const took = u.receive(new Uint8Array(value).fill(0x61))
                // In loopback the receiver hears only itself: host input is taken and dropped (§8.5).
                if (mcr & 0x10) expect(took).toBe(value)
                else expect(took).toBeLessThanOrEqual(Math.min(value, RX_FIFO_SIZE))
              }
            }
            expect(out).toEqual(expected)
          }),
          p,
        ),
      300,
    )
  })

  it('i8042: resets only on a 0xF0-0xFE pulse of bit 0 or an output-port write with bit 0 low; reads are bytes', async () => {
    const op = fc.oneof(
      fc.record({ port: fc.constantFrom(0x60, 0x64), write: fc.constant(true), value: byte }),
      fc.record({
        port: fc.constant(0x64),
        write: fc.constant(true),
        value: fc.constantFrom(0xfe, 0xd1, 0xd2, 0x20, 0x60, 0xaa, 0xad, 0xae),
      }),
      fc.record({ port: fc.constantFrom(0x60, 0x64), write: fc.constant(false), value: fc.constant(0) }),
      fc.record({ port: fc.constant(0), write: fc.constant(false), value: byte }), // a key from the host
    )
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.array(op, { maxLength: 64 }), (ops) => {
            let resets = 0
            let allowed = 0
            let pending = 0
            const c = new I8042Controller(irq, () => resets++)
            for (const { port, write, value } of ops) {
              if (port === 0) c.keyboard([value])
              else if (port === 0x64 && write) {
                // 0xF0-0xFF pulse the output-port bits whose mask bit is 0; bit 0 is the reset line.
                if (value >= 0xf0 && !(value & 1)) allowed++
                if (value === 0xd1 || value === 0x60) pending = value
                c.writeCommand(value)
              } else if (port === 0x60 && write) {
                if (pending === 0xd1 && !(value & 1)) allowed++
                pending = 0
                c.writeData(value)
              } else {
                const v = port === 0x60 ? c.readData() : c.readStatus()
                expect(v >>> 0 === v && v <= 0xff).toBe(true)
              }
            }
            expect(resets).toBeLessThanOrEqual(allowed)
          }),
          p,
        ),
      300,
    )
  })

  it('MC146818A: D reads VRT, C and D ignore writes, user RAM reads back; reads are bytes', async () => {
    const clock: RtcClock = { now: () => 1_700_000_000_000, setTimeout: () => 0, clearTimeout() {} }
    const op = fc.record({
      write: fc.boolean(),
      index: fc.oneof(fc.integer({ min: 0, max: 0x0e }), byte),
      value: byte,
    })
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(fc.array(op, { maxLength: 64 }), (ops) => {
            const chip = new Mc146818(irq, undefined, clock)
            const ram = new Map<number, number>()
            for (const { write, index, value } of ops) {
              chip.writeIndex(index)
              const i = index & 0x7f
              if (write) {
                chip.writeData(value)
                if (i >= 0x0e && i !== REG_CENTURY) ram.set(i, value)
              } else {
                const v = chip.readData()
                expect(Number.isInteger(v) && v >= 0 && v <= 0xff).toBe(true)
                if (i === 0x0d) expect(v).toBe(0x80)
                if (ram.has(i)) expect(v).toBe(ram.get(i))
              }
            }
          }),
          p,
        ),
      300,
    )
  })
})
