// `vmm run` confines itself with seccomp by default (packages/cli/src/seccomp.ts): a device
// handler that starts a process is stopped with a message naming the call and the thread and exit
// code 159; `--no-seccomp` lets it go on. On the in-process test hypervisor (the process filter;
// seccomp.kvm.test.ts does the same on KVM, where the vCPU threads have their own filter).
import { join } from 'node:path'
import { SECCOMP_EXIT_CODE } from '@vmm/host'
import { describe, expect, it } from 'vitest'
import {
  EXIT_GUEST_FAILURE,
  EXIT_HOST_FAILURE,
  EXIT_OK,
  EXIT_SECCOMP,
  EXIT_USAGE,
} from '../src/exit-codes.js'
import { fixture } from './fixtures.js'
import { runVmm, spawnGuest, spawnMachine } from './seccomp-fixtures.js'

const linuxX64 = process.platform === 'linux' && process.arch === 'x64'

describe('the seccomp exit code', () => {
  it("is the SIGSYS handler's and none of vmm's other codes", () => {
    expect(EXIT_SECCOMP).toBe(SECCOMP_EXIT_CODE)
    expect([EXIT_OK, EXIT_HOST_FAILURE, EXIT_USAGE, EXIT_GUEST_FAILURE]).not.toContain(EXIT_SECCOMP)
  })
})

describe.skipIf(!linuxX64)('vmm run under seccomp (test hypervisor)', () => {
  it('stops a device handler that spawns a process, naming the call and thread; --no-seccomp goes on', () => {
    const dir = fixture({ 'g.bin': spawnGuest, 'm.yaml': spawnMachine('64KiB') })
    const on = runVmm(['run', join(dir, 'm.yaml'), '--hypervisor', 'test'])
    expect(on.code).toBe(EXIT_SECCOMP)
    expect(on.stderr).toMatch(
      /^vmm: seccomp: thread "[^"]+" \(tid \d+\) made a system call the process filter denies: (clone|clone3|fork|vfork|execve) \(\d+\)/m,
    )
    expect(on.stdout).toBe('') // the guest's "ok" comes after the write that was stopped
    expect(on.stderr).not.toContain('spawn-on-write:')

    const off = runVmm(['run', join(dir, 'm.yaml'), '--hypervisor', 'test', '--no-seccomp'])
    expect(off).toEqual({ code: 0, stdout: 'ok', stderr: 'spawn-on-write: child ran, status 0\n' })
  })

  it('prints nothing about the filters unless --timings asks', () => {
    const dir = fixture({
      'g.bin': Uint8Array.of(0xb0, 0x6f, 0xe6, 0xe9, 0xf4),
      'm.yaml': spawnMachine('64KiB'),
    })
    expect(runVmm(['run', join(dir, 'm.yaml'), '--hypervisor', 'test'])).toEqual({
      code: 0,
      stdout: 'o',
      stderr: '',
    })
    const timed = runVmm(['run', join(dir, 'm.yaml'), '--hypervisor', 'test', '--timings'])
    expect(timed.stderr).toMatch(/\n +[\d.]+ +seccomp on: process filter \d+ calls, no vCPU filter/)
    const off = runVmm(['run', join(dir, 'm.yaml'), '--hypervisor', 'test', '--timings', '--no-seccomp'])
    expect(off.stderr).toMatch(/\n +[\d.]+ +seccomp off \(--no-seccomp\)(; jail: dropped to ids \d+:\d+)?\n/)
  })
})
