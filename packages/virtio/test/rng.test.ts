import { describe, expect, it } from 'vitest'
import { RNG_MAX_REQUEST, RngDevice } from '../src/devices/rng/device.js'
import { Feature } from '../src/spec.js'
import { rig } from './helpers.js'

describe('virtio-rng', () => {
  it('fills every writable buffer of a chain, direct or indirect', () => {
    for (const indirect of [false, true]) {
      const { driver } = rig(new RngDevice())
      driver.init({ features: 1n << Feature.RING_INDIRECT_DESC })
      const a = driver.alloc(64)
      const b = driver.alloc(100)
      const head = driver.queue(0).add(
        [
          { address: a, length: 64, write: true },
          { address: b, length: 100, write: true },
        ],
        { indirect },
      )
      driver.notify(0)
      expect(driver.queue(0).takeUsed()).toEqual([{ id: head, length: 164 }])
      expect(driver.get(a, 64).some((x) => x !== 0)).toBe(true)
      expect(driver.get(b, 100).some((x) => x !== 0)).toBe(true)
    }
  })

  it('caps one request at RNG_MAX_REQUEST bytes', () => {
    const { driver } = rig(new RngDevice())
    driver.init()
    const big = driver.alloc(RNG_MAX_REQUEST + 4096)
    driver.queue(0).add([{ address: big, length: RNG_MAX_REQUEST + 4096, write: true }])
    driver.notify(0)
    expect(driver.queue(0).takeUsed()[0]!.length).toBe(RNG_MAX_REQUEST)
  })

  it('suppresses interrupts the driver does not want (NO_INTERRUPT, used_event)', () => {
    const { driver, irq } = rig(new RngDevice())
    driver.init()
    const q = driver.queue(0)
    q.setNoInterrupt(true)
    q.add([{ address: driver.alloc(8), length: 8, write: true }])
    driver.notify(0)
    expect(q.usedIndex).toBe(1)
    expect(irq.edges).toBe(0)

    const e = rig(new RngDevice())
    e.driver.init({ features: 1n << Feature.RING_EVENT_IDX })
    const eq = e.driver.queue(0)
    eq.setUsedEvent(1) // interrupt once the used index passes 1, i.e. after the second buffer
    eq.add([{ address: e.driver.alloc(8), length: 8, write: true }])
    e.driver.notify(0)
    expect(e.irq.edges).toBe(0)
    expect(eq.availEvent).toBe(1)
    eq.add([{ address: e.driver.alloc(8), length: 8, write: true }])
    e.driver.notify(0)
    expect(e.irq.edges).toBe(1)
  })
})
