import { describe, expect, it } from 'vitest'
import { closest, didYouMean } from '../src/manifest/did-you-mean.js'

describe('did you mean', () => {
  it('suggests a close name, case-insensitively', () => {
    expect(closest('virtio-bkl', ['virtio-blk', 'virtio-net'])).toBe('virtio-blk')
    expect(closest('readonly', ['path', 'readOnly', 'serial'])).toBe('readOnly')
    expect(didYouMean('vcpu', ['memory', 'vcpus'])).toBe(' (did you mean "vcpus"?)')
  })

  it('stays quiet for a different word', () => {
    expect(closest('nic', ['debugcon', 'raw-image'])).toBeUndefined()
    expect(didYouMean('colour', ['registers'])).toBe('')
  })
})
