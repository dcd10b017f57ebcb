// The standard board on the real /dev/kvm: a guest that finds the PCI test device through
// 0xCF8/0xCFC, sizes and programs its BAR, talks to it, reads its MSI-X capability and powers off
// through ACPI; MSI routes through KVM's GSI routing and irqfd. (The components on the test
// hypervisor: board.test.ts.)
import { type Debugcon, Machine } from '@vmm/core'
import { Kvm, KvmHypervisor, KvmVirtualMachine } from '@vmm/kvm'
import { type PciHostBridgeComponent, type PciTestDeviceComponent, TESTDEV_ID } from '@vmm/pci'
import { describe, expect, it } from 'vitest'
import { kernel, manifest, registry } from './board-machine.js'
import { GUEST_BAR0 } from './guest.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[standard board KVM tests skipped] ${kvmUnavailable}`)

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
