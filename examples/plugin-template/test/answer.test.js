// The plugin on the in-process test hypervisor (no /dev/kvm): the machine of ../machine runs and
// ends with the byte the answer device gave the guest. `npm test` after `npm run build`.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ComponentRegistry, Machine, registerBuiltins } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'

test('the guest reads 42 from the answer port and exits with it', async () => {
  const machine = await Machine.fromFile(new URL('../machine/machine.yaml', import.meta.url).pathname, {
    hypervisor: new TestHypervisor(),
    registry: registerBuiltins(new ComponentRegistry()),
  })
  const reads = []
  machine.on((e) => e.type === 'device' && e.name === 'read' && reads.push(e.data.value))
  const result = await machine.run()
  await machine.dispose()
  assert.equal(result.status, 'guest-exit')
  assert.equal(result.code, 42)
  assert.deepEqual(reads, [42])
})
