import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { runExample } from './run-example.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[KVM run of the example skipped] ${kvmUnavailable}`)

describe('the example machine, plugin and all', () => {
  it.skipIf(kvmUnavailable)('runs the same way on KVM', async () => {
    const { result, output } = await runExample(new KvmHypervisor(Kvm.open()))
    expect(result).toMatchObject({ status: 'guest-exit', code: 0, reason: 'guest wrote 0 to debug-exit' })
    expect(output).toBe('hello from the guest\n')
  })
})
