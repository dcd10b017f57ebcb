// The standard board's PCI state across a snapshot on the real /dev/kvm (issue 15), with a tiny
// guest instead of Linux (the Linux guest is test/e2e/standard-snapshot.test.ts): the virtio-pci
// guest driver moves virtio-rng's BAR, enables MSI-X, takes one queue interrupt, and spins; the
// machine is paused, snapshotted and disposed, and a machine restored from the snapshot is told to
// go on. The guest makes the buffer available again and rings the doorbell at the BAR address it
// programmed before the snapshot (a KVM ioeventfd registered there by the restore); the device
// answers on the same queue (used index 2) and the interrupt arrives through the MSI-X entry the
// guest wrote before the snapshot (a GSI route and irqfd the restored process made), then ACPI S5.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Debugcon, guestAddress, Machine } from '@vmm/core'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { assemble } from '@vmm/kvm/testing'
import type { PciHostBridgeComponent } from '@vmm/pci'
import type { VirtioPci } from '@vmm/virtio'
import { describe, expect, it } from 'vitest'
import { GO_FLAG, GUEST_BAR, virtioPciGuest } from './virtio-pci-guest.js'
import { LOAD, manifest, registry, tempDir } from './virtio-pci-machine.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[standard board snapshot KVM test skipped] ${kvmUnavailable}`)

async function until(what: string, f: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe.skipIf(kvmUnavailable)('a standard board snapshot on /dev/kvm', () => {
  it('a restored virtio-pci driver rings its doorbell at the BAR it moved and takes the MSI-X interrupt it set up before the snapshot', {
    timeout: 90_000,
  }, async () => {
    const dir = tempDir()
    const image = join(dir, 'guest.bin')
    writeFileSync(image, assemble(virtioPciGuest({ secondRound: true }), LOAD))
    const hypervisor = new KvmHypervisor(Kvm.open())
    const options = { hypervisor, registry: registry() }
    const snap = join(dir, 'snap')
    try {
      const m = await Machine.fromObject(
        manifest(image, { rng: { type: 'virtio-rng-pci', bus: 'pci' } }),
        options,
      )
      try {
        void m.run()
        const text = () => m.component<Debugcon>('console').text
        await until('"waiting" from the guest', () => text().includes('waiting'))
        expect(text()).toContain('irqs 00000001 used 00000001 length 00000040')
        await m.pause()
        await m.snapshot(snap)
        await m.stop()
      } finally {
        await m.dispose()
      }

      const r = await Machine.restore(snap, options)
      try {
        const rng = r.component<VirtioPci>('rng')
        expect(rng.transport.decodedAddress(0)).toBe(GUEST_BAR)
        expect(r.component<PciHostBridgeComponent>('pci').router.name).toBe('kvm-irqfd')
        r.memory.write(guestAddress(GO_FLAG), Uint8Array.of(1, 0, 0, 0))
        const timeout = setTimeout(() => void r.stop(), 20_000) // a lost interrupt: the guest sleeps on
        await r.resume()
        const result = await r.done
        clearTimeout(timeout)
        expect(r.component<Debugcon>('console').text).toBe('\nirqs 00000002 used 00000002\npoweroff\n')
        expect(result).toMatchObject({ status: 'guest-poweroff', code: 0 })
        // The doorbell went through the eventfd the restore registered at the guest's BAR.
        expect(rng.transport.counters).toEqual({ trapped: 0, eventfd: 1 })
      } finally {
        await r.dispose()
      }
    } finally {
      hypervisor.dispose()
    }
  })
})
