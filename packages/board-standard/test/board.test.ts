// The standard board as a machine: the manifest's components built by the plugin, the ACPI tables
// in guest memory where Linux looks, and a guest on the real /dev/kvm that finds the PCI test
// device through 0xCF8/0xCFC, sizes and programs its BAR, talks to it, reads its MSI-X capability
// and powers off through ACPI.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { register as registerMicro } from '@vmm/board-micro'
import { ComponentRegistry, type Debugcon, Machine, type PluginRegistry, registerBuiltins } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { Kvm, KvmHypervisor, KvmVirtualMachine } from '@vmm/kvm'
import {
  type PciHostBridgeComponent,
  type PciTestDeviceComponent,
  TESTDEV_DEVICE,
  TESTDEV_ID,
  TESTDEV_VENDOR,
} from '@vmm/pci'
import { describe, expect, it, vi } from 'vitest'
import { type Acpi, register } from '../src/index.js'
import { GUEST_BAR0, pciProbeKernel } from './guest.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[standard board KVM tests skipped] ${kvmUnavailable}`)

const PM_PORT = 0x600

function registry() {
  const r = registerBuiltins(new ComponentRegistry())
  registerMicro(r as unknown as PluginRegistry)
  register(r as unknown as PluginRegistry)
  return r
}

function manifest(kernel: string, memoryModel: 'stacked' | 'flat' = 'stacked', raw?: string) {
  const boot = raw
    ? { type: 'raw-image', file: raw, address: 0x10000 }
    : { type: 'linux', kernel, cmdline: 'console=ttyS0', entry: 'linux64' }
  return {
    machine: {
      memory: '64MiB',
      vcpus: 2,
      irqchip: true,
      memoryModel,
      layout: { mmio: { base: 0xc0000000, size: 0x3ec00000 } },
    },
    components: {
      kernel: boot,
      serial: { type: 'serial', console: 'none', resources: { port: 0x3f8, irq: 4 } },
      pci: {
        type: 'pci-host-bridge',
        buses: 1,
        resources: {
          config: 0xcf8,
          ecam: 0xe0000000,
          mmio32: 0xc0000000,
          inta: 16,
          intb: 17,
          intc: 18,
          intd: 19,
        },
      },
      testdev: { type: 'pci-testdev', bus: 'pci' },
      acpi: {
        type: 'acpi',
        pci: 'pci',
        serial: ['serial'],
        ...(raw ? {} : { kernel: 'kernel' }),
        i8042: false,
        resources: { pm: PM_PORT, sci: 9 },
      },
      console: { type: 'debugcon', output: 'none', resources: { port: 0xe9 } },
    },
  }
}

const kernel = () => pciProbeKernel(((TESTDEV_DEVICE << 16) | TESTDEV_VENDOR) >>> 0, PM_PORT)

/** A real-mode guest for the test hypervisor: S5 to the sleep control register, then hlt. */
function poweroffImage(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'vmm-std-')), 'poweroff.bin')
  // mov dx, 0x600; mov al, 0x34; out dx, al; hlt
  writeFileSync(file, Uint8Array.of(0xba, PM_PORT & 0xff, PM_PORT >> 8, 0xb0, 0x34, 0xee, 0xf4))
  return file
}

/** The standard board on the test hypervisor, loaded and started with a guest that spins (jmp $). */
async function runningBoard(acpi: Record<string, unknown> = {}) {
  const hv = new TestHypervisor()
  const dir = mkdtempSync(join(tmpdir(), 'vmm-std-'))
  writeFileSync(join(dir, 'spin.bin'), Uint8Array.of(0xeb, 0xfe))
  const base = manifest('', 'stacked', join(dir, 'spin.bin'))
  const m = await Machine.fromObject(
    { ...base, components: { ...base.components, acpi: { ...base.components.acpi, ...acpi } } },
    { hypervisor: hv, registry: registry() },
  )
  await m.load()
  await m.start()
  return { m, hv }
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

describe.skipIf(kvmUnavailable)('standard board on /dev/kvm', () => {
  it.each(['stacked', 'flat'] as const)(
    'a guest finds the device through 0xCF8/0xCFC, sizes and moves BAR0, talks to it and powers off (%s memory)',
    async (model) => {
      const hypervisor = new KvmHypervisor(Kvm.open())
      const m = await Machine.fromObject(manifest(kernel(), model), { hypervisor, registry: registry() })
      try {
        const result = await m.run()
        const text = m.component<Debugcon>('console').text
        const hex = (n: number) => (n >>> 0).toString(16).padStart(8, '0')
        expect(text).toBe(
          [
            'found at device 00000001',
            'bar0 mask fffff000',
            'bar0 size 00001000',
            `bar0 ${hex(GUEST_BAR0)}`,
            `id ${hex(TESTDEV_ID)}`,
            `liveness ${hex(~0x12345678)}`,
            `msix at ${hex(0x7c)} vectors 00000004`, // after the PCI Express capability at 0x40,
            'poweroff',
            '',
          ].join('\n'),
        )
        expect(result).toMatchObject({
          status: 'guest-poweroff',
          code: 0,
          reason: 'guest powered off (ACPI S5)',
        })
        const dev = m.component<PciTestDeviceComponent>('testdev').device
        expect(dev.scratch).toBe(0x12345678)
        expect(dev.decodedAddress(0)).toBe(GUEST_BAR0)
        expect(m.component<PciHostBridgeComponent>('pci').router.name).toBe('kvm-irqfd')
        // The 64-bit boot protocol's boot_params.acpi_rsdp_addr points at the RSDP.
        expect(m.memory.readU64((0x7000 + 0x70) as never)).toBe(0xe0000n)
      } finally {
        await m.dispose()
        hypervisor.dispose()
      }
    },
  )
})

describe.skipIf(kvmUnavailable)('MSI routing on /dev/kvm', () => {
  it('installs GSI routes with the default irqchip entries and signals vectors through irqfd', async () => {
    const { GsiMsiRouter } = await import('@vmm/pci')
    const kvm = Kvm.open()
    const vm = kvm.createVm()
    try {
      vm.createIrqchip()
      const kvmVm = new KvmVirtualMachine(vm)
      const router = new GsiMsiRouter(kvmVm.msiRouting!, kvmVm.notifiers!)
      const vectors = [router.allocate(), router.allocate()]
      vectors[0]!.update({ address: 0xfee00000, data: 0x4041 })
      vectors[1]!.update({ address: 0xfee01000, data: 0x4042 })
      // KVM_SET_GSI_ROUTING and KVM_IRQFD accept the table and the eventfds; no vCPU runs, so the
      // interrupt stays pending in the LAPIC.
      for (const v of vectors) v.signal()
      expect(
        router
          .table()
          .filter((r) => r.type === 'msi')
          .map((r) => r.gsi),
      ).toEqual([24, 25])
      router.dispose()
      expect(router.table().some((r) => r.type === 'msi')).toBe(false)
    } finally {
      vm.dispose()
      kvm.close()
    }
  })
})
