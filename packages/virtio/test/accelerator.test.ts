// The accelerator over core's vm.notifiers: present only where the hypervisor has notifiers, a
// virtio-mmio doorbell is a 4-byte write of the queue index, a virtio-pci one a 2-byte write of
// anything (§4.1.4.4), and the interrupt is the hypervisor's trigger on the GSI.
import type { Doorbell, VmNotifiers } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { describe, expect, it } from 'vitest'
import { acceleratorFor, NotifierAccelerator } from '../src/mmio/accelerator.js'

describe('acceleratorFor', () => {
  it('answers undefined where the hypervisor has no notifiers', () => {
    expect(acceleratorFor(new TestHypervisor().createVm())).toBeUndefined()
  })

  it('asks the notifiers for doorbells and interrupts', () => {
    const doorbells: Doorbell[] = []
    const gsis: number[] = []
    const notifiers: VmNotifiers = {
      doorbell: (d) => {
        doorbells.push(d)
        return { dispose: () => {} }
      },
      interrupt: (gsi) => {
        gsis.push(gsi)
        return { trigger: () => {}, dispose: () => {} }
      },
    }
    const a = new NotifierAccelerator(notifiers)
    expect(a.notifier(0xd0000050, 3, () => {})).toBeDefined()
    expect(a.notifier(0xc8003000, 1, () => {}, { length: 2, datamatch: false })).toBeDefined()
    expect(a.interrupt(5)).toBeDefined()
    expect(doorbells).toEqual([
      { address: 0xd0000050, length: 4, datamatch: 3n },
      { address: 0xc8003000, length: 2 },
    ])
    expect(gsis).toEqual([5])
  })

  it('works over the test hypervisor notifiers', () => {
    const vm = new TestHypervisor({ notifiers: true }).createVm()
    const a = acceleratorFor(vm)!
    expect(a.notifier(0xd0000050, 0, () => {})).toBeDefined()
    expect(a.notifier(0xd0000050, 0, () => {})).toBeUndefined()
    a.interrupt(7)!.trigger()
    expect(vm.log.triggered).toEqual([7])
    vm.dispose()
  })
})
