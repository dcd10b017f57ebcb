// The virtio-pci doorbell registration on the real /dev/kvm (the whole transport runs under a guest
// in packages/board-standard/test/virtio-pci.test.ts): a 2-byte ioeventfd without datamatch per
// queue address, and a clash (a guest that puts two BARs at one address) answered with undefined.
import { Kvm, KvmVirtualMachine } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { acceleratorFor } from '../src/mmio/accelerator.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[virtio-pci kvm tests skipped] ${kvmUnavailable}`)

describe.skipIf(kvmUnavailable !== undefined)('virtio-pci doorbells on /dev/kvm', () => {
  it('registers 2-byte ioeventfds without datamatch and refuses a second one at the same address', () => {
    const kvm = Kvm.open()
    const vm = kvm.createVm()
    try {
      const accelerator = acceleratorFor(new KvmVirtualMachine(vm))!
      const match = { length: 2, datamatch: false } as const
      const first = accelerator.notifier(0xc8003000, 0, () => {}, match)
      const second = accelerator.notifier(0xc8003004, 1, () => {}, match)
      expect(first).toBeDefined()
      expect(second).toBeDefined()
      expect(accelerator.notifier(0xc8003000, 0, () => {}, match)).toBeUndefined()
      first!.dispose()
      const again = accelerator.notifier(0xc8003000, 0, () => {}, match)
      expect(again).toBeDefined()
      again!.dispose()
      second!.dispose()
    } finally {
      vm.dispose()
      kvm.close()
    }
  })
})
