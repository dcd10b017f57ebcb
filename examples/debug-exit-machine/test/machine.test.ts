import { fileURLToPath } from 'node:url'
import { type Debugcon, Machine, readManifest } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { expect, it } from 'vitest'

const manifest = fileURLToPath(new URL('../machine.yaml', import.meta.url))

it('runs the example machine, plugin and all, to the exit code its guest asks for', async () => {
  expect(readManifest(manifest).plugins.map((p) => p.name)).toEqual(['vmm-plugin-debug-exit'])
  const m = await Machine.fromFile(manifest, { hypervisor: new TestHypervisor() })
  const result = await m.run()
  expect(result).toMatchObject({ status: 'guest-exit', code: 0 })
  expect(m.component<Debugcon>('console').text).toBe('hello from the guest\n')
  await m.dispose()
})
