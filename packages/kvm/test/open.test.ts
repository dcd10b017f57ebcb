// Opening /dev/kvm when it is missing, forbidden or not KVM: runs without a usable /dev/kvm (unit
// tier; the guests on a real one are in vm.kvm.test.ts).
import { describe, expect, it } from 'vitest'
import { unavailableFromOpenError } from '../src/errors.js'
import { Kvm, KvmUnavailableError } from '../src/index.js'

describe('opening /dev/kvm', () => {
  it('names a missing device', () => {
    const e = (() => {
      try {
        Kvm.open('/nonexistent/kvm')
      } catch (e) {
        return e
      }
    })()
    expect(e).toBeInstanceOf(KvmUnavailableError)
    expect((e as KvmUnavailableError).reason).toBe('missing')
    expect((e as Error).message).toContain('/nonexistent/kvm does not exist')
  })

  it('names a device it has no permission to open', () => {
    // As root we cannot make open() fail with EACCES, so the classification is checked directly.
    const eacces = Object.assign(new Error('open failed: EACCES (Permission denied)'), {
      code: 'EACCES',
      errno: -13,
      syscall: 'open',
    })
    const e = unavailableFromOpenError('/dev/kvm', eacces)
    expect(e.reason).toBe('permission')
    expect(e.message).toContain('no permission to open /dev/kvm')
  })

  it('names a file that is not the KVM device', () => {
    expect(() => Kvm.open('/dev/null')).toThrow(/does not answer KVM_GET_API_VERSION \(ENOTTY\)/)
  })
})
