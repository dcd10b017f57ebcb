// Pause at the transport: doorbells and interrupts wait while the machine is paused, and run, in
// order, at resume (TransportCore.pause / resume, which VirtioMmio and VirtioPci call).
import { describe, expect, it } from 'vitest'
import { RngDevice } from '../src/devices/rng/device.js'
import { rig, snapshot } from './helpers.js'

describe('pause (transport)', () => {
  it('holds a doorbell that arrives while paused (an ioeventfd that fired late) until resume', async () => {
    const { driver, memory, irq, transport } = rig(new RngDevice())
    driver.init()
    const buf = driver.alloc(64)
    driver.queue(0).add([{ address: buf, length: 64, write: true }])
    await transport.pause()
    const before = snapshot(memory)
    const edges = irq.edges
    driver.notify(0)
    expect(snapshot(memory)).toEqual(before) // no randomness written, no used entry
    expect(irq.edges).toBe(edges)
    expect(irq.level).toBe(false)
    transport.resume()
    expect(driver.queue(0).takeUsed()).toEqual([{ id: 0, length: 64 }])
    expect(irq.level).toBe(true)
  })
})
