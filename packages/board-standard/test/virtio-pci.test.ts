// virtio devices on the standard board's PCI bus: the `<device>-pci` component types from a
// manifest, on the test hypervisor (the guest driver on the real /dev/kvm is in
// virtio-pci.kvm.test.ts).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Machine } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import type { PciHostBridgeComponent } from '@vmm/pci'
import type { VirtioPci } from '@vmm/virtio'
import { describe, expect, it } from 'vitest'
import { manifest, registry, tempDir } from './virtio-pci-machine.js'

describe('virtio-pci components (test hypervisor)', () => {
  it('puts virtio-blk-pci and virtio-rng-pci from a manifest on the bus, BARs in the 64-bit window', async () => {
    const dir = tempDir()
    const image = join(dir, 'hlt.bin')
    writeFileSync(image, Uint8Array.of(0xf4))
    writeFileSync(join(dir, 'disk.img'), new Uint8Array(8192))
    const m = await Machine.fromObject(
      manifest(image, {
        disk: { type: 'virtio-blk-pci', bus: 'pci', path: join(dir, 'disk.img'), serial: 'd1' },
        rng: { type: 'virtio-rng-pci', bus: 'pci', slot: 7 },
      }),
      { hypervisor: new TestHypervisor(), registry: registry() },
    )
    try {
      const pci = m.component<PciHostBridgeComponent>('pci')
      const disk = m.component<VirtioPci>('disk')
      const rng = m.component<VirtioPci>('rng')
      expect(disk.address).toEqual({ bus: 0, device: 1, function: 0 })
      expect(rng.address).toEqual({ bus: 0, device: 7, function: 0 })
      expect(pci.bridge.devices.map((d) => [d.device.name, d.device.options.deviceId])).toEqual([
        ['host-bridge', 0x0008],
        ['disk', 0x1042],
        ['rng', 0x1044],
      ])
      expect(disk.transport.barAddress(0)).toBeGreaterThanOrEqual(0x4000000000)
      expect((disk.device as unknown as { capacity: number }).capacity).toBe(16)
    } finally {
      await m.dispose()
    }
  })

  it('refuses a virtio-pci device without a bus, and MMIO resources on it', async () => {
    const dir = tempDir()
    const image = join(dir, 'hlt.bin')
    writeFileSync(image, Uint8Array.of(0xf4))
    await expect(
      Machine.fromObject(manifest(image, { rng: { type: 'virtio-rng-pci' } }), {
        hypervisor: new TestHypervisor(),
        registry: registry(),
      }),
    ).rejects.toThrow(/bus/)
  })
})
