// The acpi component's saved state (issue 15), on the test hypervisor: a power-button press and a
// hot-plug notification the guest has not read yet survive into a fresh machine built from the
// same manifest (the guest's _EVT then reads them there), and a state that is not one is refused
// naming the field. The real guest path (power-off of a restored Linux) is the e2e test's.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { decodeState, encodeState, Machine } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { describe, expect, it } from 'vitest'
import {
  type Acpi,
  type AcpiState,
  GED_EVENT_OFFSET,
  GED_PCI_HOTPLUG,
  GED_POWER_BUTTON,
} from '../src/index.js'
import { manifest, registry, tempDir } from './virtio-pci-machine.js'

async function machine() {
  const dir = tempDir()
  const image = join(dir, 'hlt.bin')
  writeFileSync(image, Uint8Array.of(0xf4))
  return Machine.fromObject(manifest(image, {}), { hypervisor: new TestHypervisor(), registry: registry() })
}

const throughFile = (v: AcpiState) => decodeState(encodeState(v), 'state.json') as AcpiState

describe('acpi component state', () => {
  it('keeps unread GED events and hot-plug bitmaps', async () => {
    const a = await machine()
    const b = await machine()
    try {
      const acpi = a.component<Acpi>('acpi')
      acpi.pressPowerButton()
      acpi.pciHotplug!.plugged(3)
      acpi.pciHotplug!.requestEject(5)
      const saved = throughFile(acpi.saveState())
      expect(saved).toEqual({
        ged: GED_POWER_BUTTON | GED_PCI_HOTPLUG,
        hotplug: { up: 1 << 3, down: 1 << 5 },
      })
      const restored = b.component<Acpi>('acpi')
      restored.restoreState(saved)
      // What the guest's _EVT and PCNT read on the restored machine.
      const ged = new Uint8Array(1)
      restored.pm.read(GED_EVENT_OFFSET, ged)
      expect(ged[0]).toBe(GED_POWER_BUTTON | GED_PCI_HOTPLUG)
      const bits = new Uint8Array(8)
      restored.pciHotplug!.read(0, bits)
      expect(new DataView(bits.buffer).getUint32(0, true)).toBe(1 << 3)
      expect(new DataView(bits.buffer).getUint32(4, true)).toBe(1 << 5)
    } finally {
      await a.dispose()
      await b.dispose()
    }
  })

  it.each([
    [
      { ged: 4, hotplug: { up: 0, down: 0 } },
      /acpi: saved state ged: event bits 0x4 belong to no device of this machine \(it has 0x3\)/,
    ],
    [
      { ged: 0x100, hotplug: { up: 0, down: 0 } },
      /acpi: saved state ged: must be an integer in 0..255, got 256/,
    ],
    [
      { ged: 0, hotplug: null },
      /acpi: saved state hotplug: this machine has PCI hot-plug; the state has none/,
    ],
    [
      { ged: 0, hotplug: { up: 1, down: 0 } },
      /hotplug: saved state up: slot 0 \(the host bridge\) cannot be hot-plugged/,
    ],
    [{ ged: 0, hotplug: { up: 0, down: 0, left: 0 } }, /hotplug: saved state left: unknown field/],
    [{ ged: 0, hotplug: { up: 0, down: 0 }, pm1: 0 }, /acpi: saved state pm1: unknown field/],
  ])('refuses %j', async (state, message) => {
    const m = await machine()
    try {
      expect(() => m.component<Acpi>('acpi').restoreState(state)).toThrow(message)
    } finally {
      await m.dispose()
    }
  })
})
