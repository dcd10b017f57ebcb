import { fileURLToPath } from 'node:url'
import { type Debugcon, type Hypervisor, Machine, readManifest } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'

const manifest = fileURLToPath(new URL('../machine.yaml', import.meta.url))
const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[KVM run of the example skipped] ${kvmUnavailable}`)

async function runExample(hypervisor: Hypervisor) {
  const m = await Machine.fromFile(manifest, { hypervisor })
  try {
    const result = await m.run()
    return { result, output: m.component<Debugcon>('console').text }
  } finally {
    await m.dispose()
    hypervisor.dispose()
  }
}

describe('the example machine, plugin and all', () => {
  it('names its plugin', () => {
    expect(readManifest(manifest).plugins.map((p) => p.name)).toEqual(['vmm-plugin-debug-exit'])
  })

  it('runs on the test hypervisor to the exit code its guest asks for', async () => {
    const { result, output } = await runExample(new TestHypervisor())
    expect(result).toMatchObject({ status: 'guest-exit', code: 0 })
    expect(output).toBe('hello from the guest\n')
  })

  it.skipIf(kvmUnavailable)('runs the same way on KVM', async () => {
    const { result, output } = await runExample(new KvmHypervisor(Kvm.open()))
    expect(result).toMatchObject({ status: 'guest-exit', code: 0, reason: 'guest wrote 0 to debug-exit' })
    expect(output).toBe('hello from the guest\n')
  })
})
