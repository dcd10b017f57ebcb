// The virtio-pci transport's state across a snapshot (issue 15): a driver that set up virtio-rng
// with MSI-X, moved BAR 0 and used the queue goes on against a fresh function on a fresh bus,
// restored from the saved state through the snapshot's codec over the same guest memory: the BAR
// decodes where the guest put it, the queue vector goes out by MSI-X, no buffer is answered twice
// or lost, a doorbell held by the pause runs at resume. A state that is not this function's is
// refused, naming the field.
import { decodeState, encodeState, SavedState } from '@vmm/core'
import { Command, Reg } from '@vmm/pci'
import { describe, expect, it } from 'vitest'
import { RngDevice } from '../src/devices/rng/device.js'
import { CommonCfg, Layout, PciCapType, type VirtioPciState } from '../src/pci/transport.js'
import { Status } from '../src/spec.js'
import { pciRig } from './pci-driver.js'

/** Through the snapshot file's encoding (bytes as base64, bigints tagged), as a restore reads it. */
const throughFile = (v: unknown) => decodeState(encodeState(v), 'state.json') as VirtioPciState

/** A rig on `a`'s guest memory with its function restored from `saved`, and its driver taking over. */
function restored(a: ReturnType<typeof pciRig>, saved: unknown) {
  const b = pciRig(new RngDevice(), undefined, a.memory)
  b.transport.restoreState(new SavedState('rng', saved))
  b.driver.walkCapabilities()
  b.driver.queues.push(...a.driver.queues)
  return b
}

describe('virtio-pci state (function, common_cfg, ISR, core)', () => {
  it('a restored function decodes where the guest put its BAR and carries on the queue by MSI-X', () => {
    const a = pciRig(new RngDevice())
    a.driver.init()
    // The guest moves BAR 0 (64-bit) as an OS reassigning resources would.
    const moved = 0x4000100000
    a.driver.cfgWrite(Reg.Command, 0, 2)
    a.driver.cfgWrite(Reg.Bar0 + 4 * Layout.BAR, moved % 2 ** 32)
    a.driver.cfgWrite(Reg.Bar0 + 4 * Layout.BAR + 4, Math.floor(moved / 2 ** 32))
    a.driver.enableDecoding()
    const q = a.driver.queue(0)
    q.add([{ address: a.driver.alloc(16), length: 16, write: true }])
    a.driver.notify(0)
    expect(q.takeUsed()).toHaveLength(1)
    a.driver.setCommon(CommonCfg.QUEUE_SELECT, 0, 2)
    const pending = q.add([{ address: a.driver.alloc(32), length: 32, write: true }])
    const saved = throughFile(a.transport.saveState())

    const b = restored(a, saved)
    expect(b.driver.barAddress(Layout.BAR)).toBe(moved)
    expect(b.transport.decodedAddress(Layout.BAR)).toBe(moved)
    expect(b.driver.cfgRead(Reg.Command, 2) & Command.BusMaster).toBe(Command.BusMaster)
    // common_cfg answers at the moved BAR with the driver's status, selector and vectors.
    expect(b.driver.status).toBe(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK)
    expect(b.driver.common(CommonCfg.QUEUE_SELECT, 2)).toBe(0)
    expect(b.driver.common(CommonCfg.QUEUE_MSIX_VECTOR, 2)).toBe(1)
    expect(b.driver.common(CommonCfg.CONFIG_MSIX_VECTOR, 2)).toBe(0)
    b.driver.notify(0)
    expect(q.takeUsed()).toEqual([{ id: pending, length: 32 }]) // the pending one, once
    // The queue's vector, from the restored MSI-X table, on a route made at its first message.
    expect(b.msi.deliveries).toEqual([{ gsi: expect.any(Number), address: 0xfee00000, data: 0x31 }])
    expect(b.lines.every((l) => !l.level)).toBe(true)
    expect(b.failures).toEqual([])
  })

  it('a doorbell held by the pause runs when the restored machine resumes', async () => {
    const a = pciRig(new RngDevice())
    a.driver.init()
    await a.transport.pause()
    const q = a.driver.queue(0)
    const head = q.add([{ address: a.driver.alloc(16), length: 16, write: true }])
    a.driver.notify(0) // held: the machine is paused
    expect(q.takeUsed()).toEqual([])
    const b = restored(a, throughFile(a.transport.saveState()))
    await b.transport.pause()
    expect(q.takeUsed()).toEqual([])
    b.transport.resume()
    expect(q.takeUsed()).toEqual([{ id: head, length: 16 }])
    expect(b.msi.deliveries.map((d) => d.data)).toEqual([0x31])
  })

  it('keeps INTx asserted with ISR set for a driver without MSI-X', () => {
    const a = pciRig(new RngDevice())
    a.driver.init({ intx: true })
    a.driver.queue(0).add([{ address: a.driver.alloc(8), length: 8, write: true }])
    a.driver.notify(0)
    expect(a.lines.some((l) => l.level)).toBe(true)
    const b = restored(a, throughFile(a.transport.saveState()))
    expect(b.lines.filter((l) => l.level)).toHaveLength(1)
    expect(b.driver.isr()).toBe(1) // the queue bit, read once, lowers the line
    expect(b.lines.every((l) => !l.level)).toBe(true)
  })

  const VENDOR_ID = Reg.VendorId
  it.each([
    [
      'another device',
      (s: VirtioPciState) => (s.function.config[VENDOR_ID] ^= 1),
      /rng: function: saved state config: byte 0x0 is 0xf5, this function's read-only bits there are 0xf4/,
    ],
    [
      'a short space',
      (s: VirtioPciState) => (s.function.config = new Uint8Array(256)),
      /config: must be 4096 bytes/,
    ],
    [
      'a reserved MSI-X bit',
      (s: VirtioPciState) => (s.function.msix!.table[16 + 13] = 1),
      /msix: saved state table: entry 1: Vector Control has reserved bits set/,
    ],
    [
      'a vector the function lacks',
      (s: VirtioPciState) => (s.common.queueVectors = [7]),
      /common: saved state queueVectors: queue 0: 7: the function has 2 MSI-X vectors/,
    ],
    ['an ISR bit', (s: VirtioPciState) => (s.isr = 4), /rng: saved state isr: must be an integer in 0..3/],
    [
      'a foreign field',
      (s: VirtioPciState) => Object.assign(s, { mmio: {} }),
      /rng: saved state mmio: unknown field/,
    ],
    [
      'a held doorbell for no queue',
      (s: VirtioPciState) => (s.core.held.notify = [3]),
      /core: held: saved state notify: must be a list of at most 1 integers in 0..0/,
    ],
  ])('refuses %s, naming the field', (_what, change, message) => {
    const a = pciRig(new RngDevice())
    a.driver.init()
    const saved = throughFile(a.transport.saveState())
    change(saved)
    const b = pciRig(new RngDevice())
    expect(() => b.transport.restoreState(new SavedState('rng', saved))).toThrow(message)
  })

  it('reads back the device configuration through the PCI access capability after a restore', () => {
    const a = pciRig(new RngDevice())
    a.driver.init()
    const b = restored(a, throughFile(a.transport.saveState()))
    // §4.1.4.9: the notify structure's multiplier is a read-only field the restore left alone.
    expect(b.driver.cfgRead(b.driver.cap(PciCapType.NOTIFY).at + 16)).toBe(Layout.NOTIFY_OFF_MULTIPLIER)
  })
})
