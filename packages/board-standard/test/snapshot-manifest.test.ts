// What a snapshot of the standard board records as its machine (Machine.pinnedManifest, issue 15),
// on the test hypervisor: devices hot-plugged at run time are in it, in the slot they were given
// (ConfigPinner), and one the guest ejected is gone; a machine built from it has the same bus, so
// the host bridge's saved state (bus population, allocators) restores onto it. Without the pinned
// slot, the hot-plugged device would land in the ejected one's slot and the guest's driver,
// restored with the old slot, would talk to nothing.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Machine } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import type { PciHostBridgeComponent, PciTestDeviceComponent } from '@vmm/pci'
import { describe, expect, it } from 'vitest'
import type { Acpi } from '../src/index.js'
import { registry, runningBoard } from './board-machine.js'

describe('the snapshot manifest of the standard board', () => {
  it('has the hot-plugged devices in their slots and not the ejected ones; a machine built from it takes the bridge state', async () => {
    const { m, dir } = await runningBoard()
    try {
      await m.hotplug('a', { type: 'pci-testdev', bus: 'pci' })
      await m.hotplug('b', { type: 'pci-testdev', bus: 'pci' })
      expect(m.component<PciTestDeviceComponent>('b').address.device).toBe(3)
      // The guest ejects slot 2 (its _EJ0 writes the slot's bit to B0EJ), as on its own it may.
      const unplugged = m.unplug('a', 5000)
      const eject = new Uint8Array(4)
      new DataView(eject.buffer).setUint32(0, 1 << 2, true)
      m.component<Acpi>('acpi').pciHotplug!.write(8, eject)
      await unplugged
      const pinned = m.pinnedManifest()
      expect(pinned).toMatch(/\n {2}b:\n {4}type: pci-testdev\n(.*\n)* {4}slot: 3\n/)
      expect(pinned).toMatch(/\n {2}testdev:\n {4}type: pci-testdev\n(.*\n)* {4}slot: 1\n/)
      expect(pinned).not.toMatch(/\n {2}a:\n/)
      const file = join(dir, 'pinned.yaml')
      writeFileSync(file, pinned)
      const again = await Machine.fromFile(file, { hypervisor: new TestHypervisor(), registry: registry() })
      try {
        expect(again.component<PciTestDeviceComponent>('b').address.device).toBe(3)
        const saved = m.component<PciHostBridgeComponent>('pci').saveState()
        again.component<PciHostBridgeComponent>('pci').restoreState(structuredClone(saved))
        expect(again.component<PciHostBridgeComponent>('pci').bridge.registers).toEqual(saved.registers)
        const b = m.component<PciTestDeviceComponent>('b')
        b.device.scratch = 0x1234
        again.component<PciTestDeviceComponent>('b').restoreState(structuredClone(b.saveState()))
        expect(again.component<PciTestDeviceComponent>('b').device.scratch).toBe(0x1234)
      } finally {
        await again.dispose()
      }
      await m.stop()
    } finally {
      await m.dispose()
    }
  })

  it('refuses a device state for another slot, and a bus populated otherwise', async () => {
    const { m } = await runningBoard()
    try {
      const dev = m.component<PciTestDeviceComponent>('testdev')
      const saved = { ...dev.saveState(), slot: 4 }
      expect(() => dev.restoreState(saved)).toThrow(
        /testdev: saved state slot: saved in slot 4, this machine built it in slot 1/,
      )
      const pci = m.component<PciHostBridgeComponent>('pci')
      const state = pci.saveState()
      state.functions.push('00:07.0 0x1af4:0x1042')
      expect(() => pci.restoreState(state)).toThrow(
        /pci: saved state functions: .*\(missing 00:07.0 0x1af4:0x1042\)/,
      )
      await m.stop()
    } finally {
      await m.dispose()
    }
  })
})
