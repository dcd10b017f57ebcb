// virtio devices on the standard board's PCI bus, on the real /dev/kvm: a tiny guest driver that finds
// virtio-rng through 0xCF8/0xCFC, walks its capabilities, moves its 64-bit BAR below 4 GiB, enables
// MSI-X, sets up a queue through the common configuration, rings the doorbell (a KVM ioeventfd) and
// takes the queue's MSI-X interrupt (GSI route + irqfd) in an IDT handler. (The component types on
// the test hypervisor: virtio-pci.test.ts.)
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Debugcon, Machine } from '@vmm/core'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { assemble } from '@vmm/kvm/testing'
import type { PciHostBridgeComponent } from '@vmm/pci'
import type { VirtioPci } from '@vmm/virtio'
import { describe, expect, it } from 'vitest'
import { GUEST_BAR, virtioPciGuest } from './virtio-pci-guest.js'
import { LOAD, manifest, registry, tempDir } from './virtio-pci-machine.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[standard board virtio-pci KVM tests skipped] ${kvmUnavailable}`)

describe.skipIf(kvmUnavailable)('virtio-pci on /dev/kvm', () => {
  it.each([
    ['stacked', true],
    ['flat', false],
  ] as const)(
    'a guest driver finds virtio-rng, sets up a queue, notifies and takes the MSI-X interrupt (%s memory, ioeventfd %s)',
    async (model, accelerate) => {
      const dir = tempDir()
      const image = join(dir, 'virtio-pci-guest.bin')
      writeFileSync(image, assemble(virtioPciGuest(), LOAD))
      const hypervisor = new KvmHypervisor(Kvm.open())
      const m = await Machine.fromObject(
        manifest(image, { rng: { type: 'virtio-rng-pci', bus: 'pci', accelerate } }, model),
        {
          hypervisor,
          registry: registry(),
        },
      )
      try {
        const timeout = setTimeout(() => void m.stop(), 20_000)
        const result = await m.run()
        clearTimeout(timeout)
        const text = m.component<Debugcon>('console').text
        const hex = (n: number) => (n >>> 0).toString(16).padStart(8, '0')
        expect(text).toBe(
          [
            'found at device 00000001',
            `common ${hex(0)} notify ${hex(0x3000)} multiplier ${hex(4)}`,
            `irqs ${hex(1)} used ${hex(1)} length ${hex(64)}`,
            'poweroff',
            '',
          ].join('\n'),
        )
        expect(result).toMatchObject({ status: 'guest-poweroff', code: 0 })
        const rng = m.component<VirtioPci>('rng')
        // With ioeventfd the doorbell went through the eventfd registered at the BAR's new place.
        expect(rng.transport.counters).toEqual(
          accelerate ? { trapped: 0, eventfd: 1 } : { trapped: 1, eventfd: 0 },
        )
        expect(rng.transport.decodedAddress(0)).toBe(GUEST_BAR)
        expect(m.component<PciHostBridgeComponent>('pci').router.name).toBe('kvm-irqfd')
        const entropy = new Uint8Array(64)
        m.memory.read(0x31000 as never, entropy)
        expect(entropy.some((b) => b !== 0)).toBe(true)
      } finally {
        await m.dispose()
        hypervisor.dispose()
      }
    },
  )
})
