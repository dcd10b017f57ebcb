// The virtio devices' own state readers on untrusted input (issue 15): a saved transport state
// whose device part is random JSON, or a real device state with one field replaced, is either
// taken or refused with an Error naming the component and the field ("<id>: core: device: saved
// state <field>: ..."); never a TypeError or RangeError from inside a device, and never a crash.
import { SavedState } from '@vmm/core'
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { VirtioDevice } from '../src/device.js'
import { BalloonDevice, BalloonFeature } from '../src/devices/balloon/device.js'
import { ConsoleDevice } from '../src/devices/console/device.js'
import { NetDevice, parseMac } from '../src/devices/net/device.js'
import { VirtioMmioTransport } from '../src/mmio/transport.js'
import { TestInterruptLine } from '../src/testing/index.js'
import { FakeBackend, FakeTap } from './fakes.js'
import { rig } from './helpers.js'

const MAC = parseMac('06:00:00:aa:bb:cc')
const balloon = () =>
  new BalloonDevice({ stats: true, deflateOnOom: false, targetPages: 0, discard: () => true })
const devices: Record<string, { make: () => VirtioDevice; features?: bigint }> = {
  net: { make: () => new NetDevice(new FakeTap(false), MAC) },
  console: { make: () => new ConsoleDevice(new FakeBackend()) },
  balloon: { make: balloon, features: 1n << BalloonFeature.STATS_VQ },
}

const json = fc
  .jsonValue({ maxDepth: 3 })
  .filter((j) => !JSON.stringify(j).includes('__proto__'))
  .map((j) => JSON.parse(JSON.stringify(j)) as unknown)

type Saved = { core: { device: Record<string, unknown> } }

function restoredCleanly(name: string, make: () => VirtioDevice, base: ReturnType<typeof rig>, saved: Saved) {
  const t = new VirtioMmioTransport(make(), base.memory, new TestInterruptLine(), { onNeedsReset: () => {} })
  try {
    t.restoreState(new SavedState(name, saved))
  } catch (e) {
    expect(e).toBeInstanceOf(Error)
    expect((e as Error).constructor).toBe(Error)
    expect((e as Error).message).toMatch(new RegExp(`^${name}: core: device(: \\w+)*: saved state `))
  }
}

describe('virtio device state readers on untrusted input', () => {
  for (const [name, d] of Object.entries(devices)) {
    const base = rig(d.make())
    base.driver.init(d.features === undefined ? {} : { features: d.features })
    const good = JSON.parse(JSON.stringify(base.transport.saveState())) as Saved

    it(`${name}: a random device state is taken or refused naming the field`, async () => {
      await fuzz((parameters) =>
        fc.assert(
          fc.property(json, (v) =>
            restoredCleanly(name, d.make, base, {
              ...good,
              core: { ...good.core, device: v as Record<string, unknown> },
            }),
          ),
          parameters,
        ),
      )
    })

    it(`${name}: a device state with one field replaced is taken or refused naming the field`, async () => {
      await fuzz((parameters) =>
        fc.assert(
          fc.property(fc.constantFrom(...Object.keys(good.core.device)), json, (key, v) =>
            restoredCleanly(name, d.make, base, {
              ...good,
              core: { ...good.core, device: { ...good.core.device, [key]: v } },
            }),
          ),
          parameters,
        ),
      )
    })
  }
})
