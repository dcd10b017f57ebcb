// The vCPU threads' own seccomp filter (src/native/vcpu_seccomp.cc), in child processes
// (seccomp-child.mjs; a filter cannot be removed): under vmm's profiles the exit path runs and
// every vCPU state ioctl vmm issues is allowed; a filter set while the guest runs is on the vCPU
// thread before it enters the guest again, and a call it denies on that thread is reported with
// the thread's name and the ioctl request, exit code 159.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { SECCOMP_EXIT_CODE } from '@vmm/host'
import { describe, expect, it } from 'vitest'
import { kvmUnavailable } from './harness.js'

const child = fileURLToPath(new URL('seccomp-child.mjs', import.meta.url))
const run = (mode: string) =>
  spawnSync(process.execPath, [child, mode], { encoding: 'utf8', timeout: 120_000 })

describe.skipIf(kvmUnavailable)('seccomp on the vCPU threads', () => {
  it('lets the exit path and every vCPU state ioctl through under the profiles', () => {
    const r = run('profile')
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('ok enough exits\n')
    expect(r.status).toBe(0)
  })

  it('installs a filter set while the guest runs, and reports a denied ioctl on the vCPU thread', () => {
    const r = run('running')
    expect(r.status, r.stderr).toBe(SECCOMP_EXIT_CODE)
    expect(r.stdout, r.stderr).toBe('reading registers\n')
    expect(r.stderr).toMatch(
      /^vmm: seccomp: thread "vcpu0" \(tid \d+\) made a system call the vCPU filter denies: ioctl \(16\) request 0x8090ae81;/,
    )
  })
})
