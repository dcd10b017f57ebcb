// The virtio-pci state reader on untrusted input (issue 15): a real saved state of a live
// virtio-rng function (MSI-X on, a queue set up) with one field anywhere in it replaced by random
// JSON or bytes, or one byte of its configuration space or MSI-X table changed, is either taken or
// refused with a plain Error naming the component and the field ("rng: ... saved state <field>:
// ..."); never a TypeError or RangeError from inside the PCI or virtio code, never a crash. What
// is taken leaves a function that still answers its driver's configuration reads.
import { decodeState, encodeState, SavedState } from '@vmm/core'
import { fuzz } from '@vmm/core/testing'
import { Reg } from '@vmm/pci'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { RngDevice } from '../src/devices/rng/device.js'
import { pciRig } from './pci-driver.js'

const json = fc
  .jsonValue({ maxDepth: 2 })
  .filter((j) => !JSON.stringify(j).includes('__proto__'))
  .map((j) => JSON.parse(JSON.stringify(j)) as unknown)
const value = fc.oneof(
  json,
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ minLength: 4096, maxLength: 4096 }),
)

const base = pciRig(new RngDevice())
base.driver.init()
const good = () =>
  decodeState(encodeState(base.transport.saveState()), 'state.json') as Record<string, unknown>

/** Every path to a field of the saved state (objects' keys, lists' indices up to 4). */
function paths(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (v instanceof Uint8Array || typeof v !== 'object' || v === null) return [at]
  const keys = Array.isArray(v) ? v.slice(0, 4).map((_, i) => i) : Object.keys(v)
  return [at, ...keys.flatMap((k) => paths((v as Record<string | number, unknown>)[k], [...at, k]))]
}
const allPaths = paths(good()).filter((p) => p.length > 0)

function set(state: Record<string, unknown>, path: (string | number)[], v: unknown): void {
  let o = state as Record<string | number, unknown>
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>
  o[path.at(-1)!] = v
}

function restoredCleanly(state: unknown): void {
  const b = pciRig(new RngDevice(), undefined, base.memory)
  try {
    b.transport.restoreState(new SavedState('rng', state))
  } catch (e) {
    expect((e as Error).constructor).toBe(Error)
    expect((e as Error).message).toMatch(/^rng: (\w+(\[\d+\])?: )*saved state /)
    return
  }
  expect(b.driver.cfgRead(Reg.VendorId, 2)).toBe(0x1af4)
}

describe('the virtio-pci state reader (fuzz)', () => {
  it('a state with one field replaced is taken or refused naming the field', async () => {
    await fuzz((p) =>
      fc.assert(
        fc.property(fc.constantFrom(...allPaths), value, (path, v) => {
          const s = good()
          set(s, path, v)
          restoredCleanly(s)
        }),
        p,
      ),
    )
  })

  it('a configuration space or MSI-X table with one byte changed is taken or refused naming the byte', async () => {
    await fuzz((p) =>
      fc.assert(
        fc.property(fc.boolean(), fc.nat(4095), fc.integer({ min: 1, max: 255 }), (config, at, flip) => {
          const s = good() as { function: { config: Uint8Array; msix: { table: Uint8Array } } }
          const bytes = config ? s.function.config : s.function.msix.table
          bytes[at % bytes.length]! ^= flip
          restoredCleanly(s)
        }),
        p,
      ),
    )
  })
})
