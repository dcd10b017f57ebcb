// The standard board as a machine on the test hypervisor: the manifest's components built by the
// plugin, the ACPI tables in guest memory where Linux looks, the power button, PCI hot-plug and
// ACPI S5. (A guest on the real /dev/kvm: board.kvm.test.ts.)
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Machine } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import type { PciHostBridgeComponent, PciTestDeviceComponent } from '@vmm/pci'
import { describe, expect, it, vi } from 'vitest'
import type { Acpi } from '../src/index.js'
import { manifest, PM_PORT, registry, runningBoard } from './board-machine.js'

/** A real-mode guest for the test hypervisor: S5 to the sleep control register, then hlt. */
function poweroffImage(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'vmm-std-')), 'poweroff.bin')
  // mov dx, 0x600; mov al, 0x34; out dx, al; hlt
  writeFileSync(file, Uint8Array.of(0xba, PM_PORT & 0xff, PM_PORT >> 8, 0xb0, 0x34, 0xee, 0xf4))
  return file
}

describe('standard board components (test hypervisor)', () => {
  it('builds the bridge, attaches the device, and puts the ACPI tables where Linux finds them', async () => {
    const hv = new TestHypervisor()
    const m = await Machine.fromObject(manifest('', 'stacked', poweroffImage()), {
      hypervisor: hv,
      registry: registry(),
    })
    try {
      await m.load()
      const pci = m.component<PciHostBridgeComponent>('pci')
      const dev = m.component<PciTestDeviceComponent>('testdev')
      expect(dev.address).toEqual({ bus: 0, device: 1, function: 0 })
      expect(pci.router.name).toBe('recording')
      expect(pci.bridge.devices.map((d) => d.device.name)).toEqual(['host-bridge', 'pci-testdev'])
      const acpi = m.component<Acpi>('acpi')
      const rsdp = new Uint8Array(8)
      m.memory.read(0xe0000 as never, rsdp)
      expect(new TextDecoder().decode(rsdp)).toBe('RSD PTR ')
      const madt = acpi.blob!.tables.APIC!
      expect(madt.bytes.length).toBe(36 + 8 + 2 * 8 + 12 + 10 + 10 + 6)
      expect(acpi.describe(2).serial).toEqual([{ port: 0x3f8, irq: 4 }])
      expect(acpi.describe(2).pci?.intxGsis).toEqual([16, 17, 18, 19])
    } finally {
      await m.dispose()
    }
  })

  it('presses the power button: the GED line (SCI, IRQ 9) stays up until _EVT reads the event byte', async () => {
    const { m, hv } = await runningBoard()
    try {
      const acpi = m.component<Acpi>('acpi')
      const levels = hv.vms[0]!.log.irqEvents.filter((e) => e.irq === 9)
      expect(levels).toEqual([])
      acpi.pressPowerButton()
      acpi.pressPowerButton() // a second press before the guest looked: one event, line still up
      expect(hv.vms[0]!.log.irqLevels.get(9)).toBe(true)
      // What the DSDT's _EVT does: read pm + 3 (the event byte, GED_POWER_BUTTON = bit 0).
      const read = () => {
        const d = new Uint8Array(1)
        m.pioBus.lookup(PM_PORT + 3)!.device.read(3, d)
        return d[0]
      }
      expect(read()).toBe(0x01)
      expect(hv.vms[0]!.log.irqLevels.get(9)).toBe(false)
      expect(read()).toBe(0) // read clears
      expect(acpi.describe(1).sci).toBe(9)
    } finally {
      await m.dispose()
    }
  })

  it('hot-plugs a PCI device into the running machine and unplugs it when the guest ejects its slot', async () => {
    const { m, hv } = await runningBoard()
    try {
      const acpi = m.component<Acpi>('acpi')
      const pci = m.component<PciHostBridgeComponent>('pci')
      const hp = acpi.pciHotplug!
      const hpPort = acpi.describe(1).pci!.hotplugPort!
      const port = (offset: number, value?: number) => {
        const d = new Uint8Array(4)
        const hit = m.pioBus.lookup(hpPort + offset)!
        if (value === undefined) {
          hit.device.read(hpPort + offset - hit.base, d)
          return new DataView(d.buffer).getUint32(0, true)
        }
        new DataView(d.buffer).setUint32(0, value, true)
        hit.device.write(hpPort + offset - hit.base, d)
        return 0
      }
      const events: string[] = []
      m.on((e) => {
        if (e.type === 'device') events.push(`${e.source}:${e.name}`)
      })

      // A bad node is a manifest error naming the field, and leaves nothing behind.
      await expect(m.hotplug('bad', { type: 'pci-testdev', bus: 'pci', slot: 99 })).rejects.toThrow(
        /\/components\/bad\/slot/,
      )
      await expect(m.hotplug('testdev', { type: 'pci-testdev', bus: 'pci' })).rejects.toThrow(/already/)

      await m.hotplug('extra', { type: 'pci-testdev', bus: 'pci' })
      const extra = m.component<PciTestDeviceComponent>('extra')
      const slot = extra.address.device
      expect(slot).toBe(2) // testdev took slot 1
      expect(pci.bridge.device(slot)).toBe(extra.device)
      // The guest is told: the GED line (SCI, IRQ 9) is up, the event byte says PCI, PCIU has the slot.
      expect(hv.vms[0]!.log.irqLevels.get(9)).toBe(true)
      expect(acpi.pm.pendingGedEvents).toBe(0x02)
      expect(port(0)).toBe(1 << slot)
      expect(port(0)).toBe(0) // read clears
      expect(events).toContain('extra:hotplugged')

      // Boot components that others refer to, or that cannot leave, stay.
      await expect(m.unplug('pci')).rejects.toThrow(/refer/)
      await expect(m.unplug('console')).rejects.toThrow(/cannot be removed from a running machine/)
      // A guest that ignores the eject request: the unplug times out and the device stays.
      await expect(m.unplug('extra', 50)).rejects.toThrow(/did not release extra/)
      expect(pci.bridge.device(slot)).toBe(extra.device)
      expect(port(4)).toBe(1 << slot) // PCID: the request is there for the guest to see

      // The guest ejects the slot (its _EJ0 writes the slot's bit to B0EJ): unplug completes.
      const unplugged = m.unplug('extra', 5000)
      await vi.waitFor(() => expect(hp.pending.down).toBe(1 << slot)) // asked again
      port(8, 1 << slot)
      await unplugged
      expect(pci.bridge.device(slot)).toBeUndefined()
      expect(() => m.component('extra')).toThrow(/no component "extra"/)
      expect(events).toContain('extra:unplugged')
      // The slot and the id can be used again.
      await m.hotplug('extra', { type: 'pci-testdev', bus: 'pci' })
      expect(m.component<PciTestDeviceComponent>('extra').address.device).toBe(slot)
      await m.stop()
    } finally {
      await m.dispose()
    }
  })

  it('without pciHotplug, describes no slots and refuses to hot-plug, leaving nothing behind', async () => {
    const { m } = await runningBoard({ pciHotplug: false })
    try {
      const acpi = m.component<Acpi>('acpi')
      expect(acpi.pciHotplug).toBeUndefined()
      expect(acpi.describe(1).pci?.hotplugPort).toBeUndefined()
      expect(
        m.components
          .find((c) => c.id === 'acpi')!
          .resources.allWindows()
          .map(([n]) => n),
      ).toEqual(['pm'])
      await expect(m.hotplug('extra', { type: 'pci-testdev', bus: 'pci' })).rejects.toThrow(
        /no hot-plug controller/,
      )
      expect(() => m.component('extra')).toThrow(/no component/)
      expect(m.component<PciHostBridgeComponent>('pci').bridge.device(2)).toBeUndefined()
      await m.stop()
    } finally {
      await m.dispose()
    }
  })

  it('ends the run when the guest writes S5 to the sleep control register', async () => {
    const hv = new TestHypervisor()
    const m = await Machine.fromObject(manifest('', 'flat', poweroffImage()), {
      hypervisor: hv,
      registry: registry(),
    })
    try {
      const result = await m.run()
      expect(result).toMatchObject({
        status: 'guest-poweroff',
        code: 0,
        reason: 'guest powered off (ACPI S5)',
      })
    } finally {
      await m.dispose()
    }
  })
})
