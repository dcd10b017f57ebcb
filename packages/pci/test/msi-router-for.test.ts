// msiRouterFor asks the VM for its optional parts: GSI routing plus interrupt triggers give the
// routing router, anything less the recording one.
import { TestHypervisor } from '@vmm/core/testing'
import { describe, expect, it } from 'vitest'
import { defaultIrqchipRoutes, GsiMsiRouter, msiRouterFor, RecordingMsiRouter } from '../src/index.js'

describe('msiRouterFor', () => {
  it('records where the hypervisor has no GSI routing or no notifiers', () => {
    expect(msiRouterFor(new TestHypervisor().createVm())).toBeInstanceOf(RecordingMsiRouter)
    expect(msiRouterFor(new TestHypervisor({ msiRouting: true }).createVm())).toBeInstanceOf(
      RecordingMsiRouter,
    )
    expect(msiRouterFor(new TestHypervisor({ notifiers: true }).createVm())).toBeInstanceOf(
      RecordingMsiRouter,
    )
  })

  it('routes each vector to a GSI and signals it through the trigger where the VM has both', () => {
    const vm = new TestHypervisor({ notifiers: true, msiRouting: true }).createVm()
    const router = msiRouterFor(vm)
    expect(router).toBeInstanceOf(GsiMsiRouter)
    const v = router.allocate()
    v.update({ address: 0xfee00000, data: 0x4041 })
    v.signal()
    expect(vm.log.gsiRoutes.at(-1)).toEqual([
      ...defaultIrqchipRoutes(),
      { gsi: 24, type: 'msi', addressLo: 0xfee00000, addressHi: 0, data: 0x4041 },
    ])
    expect(vm.log.triggered).toEqual([24])
    router.dispose()
    expect(vm.log.gsiRoutes.at(-1)).toEqual(defaultIrqchipRoutes())
    vm.dispose()
  })
})
