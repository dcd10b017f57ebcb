// The example machine run to its end on a given hypervisor (machine.test.ts: the test hypervisor;
// machine.kvm.test.ts: /dev/kvm).
import { fileURLToPath } from 'node:url'
import { type Debugcon, type Hypervisor, Machine } from '@vmm/core'

export const manifest = fileURLToPath(new URL('../machine.yaml', import.meta.url))

export async function runExample(hypervisor: Hypervisor) {
  const m = await Machine.fromFile(manifest, { hypervisor })
  try {
    const result = await m.run()
    return { result, output: m.component<Debugcon>('console').text }
  } finally {
    await m.dispose()
    hypervisor.dispose()
  }
}
