// The property that lived in buses.test.ts, on the fuzz helper so `pnpm fuzz` runs it at 100,000 (issue 13).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BusError } from '../src/bus/errors.js'
import { MmioBus } from '../src/bus/mmio-bus.js'
import { fuzz } from '../src/testing/fuzz.js'

/** A device that records accesses and answers reads with its offset. */
function _recorder() {
  const log: string[] = []
  return {
    log,
    read(offset: number, data: Uint8Array) {
      log.push(`r${offset}:${data.length}`)
      data.fill(offset)
    },
    write(offset: number, data: Uint8Array) {
      log.push(`w${offset}:${[...data].join(',')}`)
    },
  }
}

function code(f: () => unknown): string | undefined {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(BusError)
    return (e as BusError).code
  }
  return undefined
}

describe('MmioBus (fast-check)', () => {
  it('agrees with a naive lookup for any set of accepted windows', async () => {
    const window = fc.record({
      base: fc.integer({ min: 0, max: 4096 }),
      size: fc.integer({ min: 1, max: 300 }),
    })
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(
            fc.array(window, { maxLength: 20 }),
            fc.array(fc.integer({ min: 0, max: 4500 })),
            (windows, probes) => {
              const bus = new MmioBus()
              const accepted: { base: number; size: number; id: number }[] = []
              windows.forEach((w, id) => {
                const clash = accepted.some((a) => a.base < w.base + w.size && w.base < a.base + a.size)
                const dev = { read: (_o: number, d: Uint8Array) => d.fill(id), write: () => {} }
                if (clash) expect(code(() => bus.insert(dev, w.base, w.size))).toBe('OVERLAP')
                else {
                  bus.insert(dev, w.base, w.size)
                  accepted.push({ ...w, id })
                }
              })
              for (const p of probes) {
                const hit = accepted.find((a) => p >= a.base && p < a.base + a.size)
                const data = new Uint8Array(1)
                expect(bus.read(p, data)).toBe(hit !== undefined)
                expect(data[0]).toBe(hit ? hit.id : 0xff)
              }
            },
          ),
          p,
        ),
      100,
    )
  })
})
