import { readManifest } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { describe, expect, it } from 'vitest'
import { manifest, runExample } from './run-example.js'

describe('the example machine, plugin and all', () => {
  it('names its plugin', () => {
    expect(readManifest(manifest).plugins.map((p) => p.name)).toEqual(['vmm-plugin-debug-exit'])
  })

  it('runs on the test hypervisor to the exit code its guest asks for', async () => {
    const { result, output } = await runExample(new TestHypervisor())
    expect(result).toMatchObject({ status: 'guest-exit', code: 0 })
    expect(output).toBe('hello from the guest\n')
  })
})
