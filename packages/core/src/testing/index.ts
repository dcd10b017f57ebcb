// @vmm/core/testing: the in-process test hypervisor, for device and board tests without /dev/kvm.
export { type CpuBus, RealModeCpu } from './real-mode.js'
export {
  TestHypervisor,
  type TestHypervisorOptions,
  TestVcpu,
  TestVm,
  type TestVmLog,
} from './test-hypervisor.js'

import type { HypervisorProvider } from '../hypervisor.js'
import { TestHypervisor } from './test-hypervisor.js'

/** A HypervisorProvider for the test hypervisor (`vmm run --hypervisor test`). */
export const hypervisorProvider: HypervisorProvider = { open: () => new TestHypervisor() }
export { fixture, helloGuest } from './fixtures.js'
export { FUZZ_CHUNK, type FuzzParameters, fuzz, fuzzParameters, fuzzRuns } from './fuzz.js'
