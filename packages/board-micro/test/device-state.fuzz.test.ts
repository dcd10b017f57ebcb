// The device state readers on untrusted input: whatever a snapshot's component state holds
// (random JSON, or a real saved state with one field replaced), restoreState either takes it or
// throws an Error naming the component and field ("<id>: saved state <field>: ..."); never a
// TypeError or RangeError from inside a device, and a refused state changes nothing the guest sees.
import { type InterruptLine, SavedState } from '@vmm/core'
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { readRtcState } from '../src/devices/rtc/state.js'
import { I8042Controller, Mc146818, Uart16550 } from '../src/index.js'

const irq: InterruptLine = { irq: 4, setLevel: () => {}, pulse: () => {} }
const clock = { now: () => 0, setTimeout: () => 0, clearTimeout: () => {} }

const readers: Record<string, { fresh: () => unknown; restore: (s: unknown) => unknown }> = {
  uart: {
    fresh: () => new Uart16550(irq, { write: () => {} }).saveState(),
    restore: (s) => new Uart16550(irq, { write: () => {} }).restoreState(new SavedState('serial', s)),
  },
  i8042: {
    fresh: () => new I8042Controller(irq, () => {}).saveState(),
    restore: (s) => new I8042Controller(irq, () => {}).restoreState(new SavedState('i8042', s)),
  },
  rtc: {
    fresh: () => new Mc146818(irq, 0, clock).saveState(),
    restore: (s) => new Mc146818(irq, 0, clock).restoreState(readRtcState(new SavedState('rtc', s))),
  },
}

const json = fc
  .jsonValue({ maxDepth: 3 })
  .filter((j) => !JSON.stringify(j).includes('__proto__'))
  .map((j) => JSON.parse(JSON.stringify(j)) as unknown)

const refusedCleanly = (f: () => unknown) => {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(Error)
    expect((e as Error).constructor).toBe(Error) // not a TypeError/RangeError from inside a device
    expect((e as Error).message).toMatch(/^(serial|i8042|rtc)(: \w+)*: saved state /)
  }
}

describe('device state readers on untrusted input', () => {
  for (const [name, r] of Object.entries(readers)) {
    it(`${name}: random JSON is taken or refused naming the field`, async () => {
      await fuzz((p) =>
        fc.assert(
          fc.property(json, (v) => refusedCleanly(() => r.restore(v))),
          p,
        ),
      )
    })

    it(`${name}: a saved state with one field replaced is taken or refused naming the field`, async () => {
      const good = JSON.parse(JSON.stringify(r.fresh())) as Record<string, unknown>
      const keys = Object.keys(good)
      await fuzz((p) =>
        fc.assert(
          fc.property(fc.constantFrom(...keys), json, (key, v) =>
            refusedCleanly(() => r.restore({ ...good, [key]: v })),
          ),
          p,
        ),
      )
    })
  }
})
