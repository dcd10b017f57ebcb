// query-vm-generation-id (src/vmgenid-verbs.ts): QEMU's error without the device, the GUID of the
// machine's generation ID device once there is one, and the new one after it changed. (The real
// device, read by a Linux guest: test/e2e/standard-vmgenid.test.ts.)
import { afterEach, describe, expect, it } from 'vitest'
import { Controller } from '../src/index.js'
import { type FakeVmGenId, runningMachine } from './fixtures.js'

let cleanup: (() => Promise<void>) | undefined
afterEach(async () => {
  await cleanup?.()
  cleanup = undefined
})

describe('query-vm-generation-id', () => {
  it("answers QEMU's error without the device, then the device's GUID as it changes", async () => {
    const m = await runningMachine()
    cleanup = () => m.dispose()
    const c = new Controller(m)
    expect(c.commands).toContain('query-vm-generation-id')
    await expect(c.execute('query-vm-generation-id')).rejects.toMatchObject({
      errorClass: 'GenericError',
      message: 'VM Generation ID device not found',
    })
    await c.execute('device_add', { driver: 'test-vmgenid', id: 'vmgenid' })
    expect(await c.execute('query-vm-generation-id')).toEqual({
      guid: '00000000-0000-0000-0000-000000000000',
    })
    m.component<FakeVmGenId>('vmgenid').newGeneration()
    expect(await c.execute('query-vm-generation-id')).toEqual({
      guid: '00000000-0000-0000-0000-000000000001',
    })
    await expect(c.execute('query-vm-generation-id', { guid: 'x' })).rejects.toMatchObject({
      errorClass: 'GenericError',
    })
  })
})
