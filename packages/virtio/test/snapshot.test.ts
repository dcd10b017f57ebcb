// The virtio-mmio transport's state across a snapshot: a driver that set up virtio-rng and used it
// goes on, against a fresh transport restored from the saved state over the same guest memory,
// with the queue indices where they were (no buffer answered twice, none lost); a saved state that
// is not one is refused naming the field; a live device without state of its own refuses the save.
import { type MmioDevice, SavedState } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import type { VirtioDevice } from '../src/device.js'
import { RngDevice } from '../src/devices/rng/device.js'
import { VirtioMmioTransport } from '../src/mmio/transport.js'
import { Status } from '../src/spec.js'
import { TestInterruptLine } from '../src/testing/index.js'
import { rig } from './helpers.js'

const throughJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v))

/** The saved state as the tests change it. */
type Saved = {
  interruptStatus: unknown
  core: { status: unknown; driverFeatures: unknown; queues: Record<string, unknown>[] }
}

describe('virtio-mmio transport state', () => {
  it("a restored transport carries on the driver's queue where it was", () => {
    const a = rig(new RngDevice())
    a.driver.init()
    const q = a.driver.queue(0)
    q.add([{ address: a.driver.alloc(16), length: 16, write: true }])
    a.driver.notify(0)
    expect(q.takeUsed()).toEqual([{ id: expect.any(Number), length: 16 }])
    // A second request is in the avail ring, not yet notified, when the snapshot is taken.
    const pending = q.add([{ address: a.driver.alloc(32), length: 32, write: true }])
    const saved = throughJson(a.transport.saveState())

    const irq = new TestInterruptLine()
    const b = new VirtioMmioTransport(new RngDevice(), a.memory, irq)
    b.restoreState(new SavedState('rng', saved))
    expect(b.deviceStatus & Status.DRIVER_OK).toBe(Status.DRIVER_OK)
    ;(a.driver as { transport: MmioDevice }).transport = b
    a.driver.notify(0)
    expect(q.takeUsed()).toEqual([{ id: pending, length: 32 }]) // the pending one, once
    expect(irq.edges + (irq.level ? 1 : 0)).toBeGreaterThan(0)
  })

  it.each([
    [(s: Saved) => (s.core.status = 256), /rng: core: saved state status: must be an integer in 0..255/],
    [(s: Saved) => (s.core.driverFeatures = 12), /driverFeatures: must be a string matching/],
    [
      (s: Saved) => (s.core.driverFeatures = '0x8000000000000000'),
      /driverFeatures: 0x8000000000000000 has bits this device does not offer/,
    ],
    [(s: Saved) => (s.core.queues = []), /queues: must be a list of 1 states, got \[\]/],
    [(s: Saved) => (s.core.queues[0].size = 3), /queues\[0\]: saved state size: must be a power of 2, got 3/],
    [(s: Saved) => (s.core.queues[0].nextAvail = 70000), /nextAvail: must be an integer in 0..65535/],
    [(s: Saved) => (s.interruptStatus = 4), /interruptStatus: must be an integer in 0..3/],
  ])('refuses a bad state (%#)', (change, message) => {
    const a = rig(new RngDevice())
    a.driver.init()
    const saved = throughJson(a.transport.saveState()) as Saved
    change(saved)
    const b = new VirtioMmioTransport(new RngDevice(), a.memory, new TestInterruptLine())
    expect(() => b.restoreState(new SavedState('rng', saved))).toThrow(message)
  })

  it('a ring outside guest RAM in a saved state fails the device, never touching memory', () => {
    const a = rig(new RngDevice())
    a.driver.init()
    const saved = throughJson(a.transport.saveState()) as Saved
    saved.core.queues[0].descTable = 2 ** 40
    const failures: unknown[] = []
    const b = new VirtioMmioTransport(new RngDevice(), a.memory, new TestInterruptLine(), {
      onNeedsReset: (e) => failures.push(e),
    })
    b.restoreState(new SavedState('rng', saved))
    expect(b.deviceStatus & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET)
    expect(failures).toHaveLength(1)
  })

  it('a live device without state of its own refuses the save, naming its type', () => {
    const device: VirtioDevice = {
      deviceType: 42,
      queueSizes: [8],
      features: 0n,
      readConfig: (_o, d) => d.fill(0),
      writeConfig: () => {},
      activate: () => {},
      notify: () => {},
      reset: () => {},
    }
    const a = rig(device)
    expect(() => a.transport.saveState()).not.toThrow() // not live yet: nothing to lose
    a.driver.init()
    expect(() => a.transport.saveState()).toThrow('virtio device type 42 cannot save its state yet')
  })
})
