// The filters installed for real, each in a child process (seccomp-child.mjs; a filter cannot be
// removed, so never in the test's own process): a denied call ends the process with exit code 159
// and a message naming the call, its number and the thread; what a running VMM's JavaScript does
// (files on the thread pool, timers, a Unix socket, a Worker started later) goes on under the
// process profile; spawning a process does not. Linux on x86-64 only (the filters are x86-64 BPF).
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { SECCOMP_EXIT_CODE } from '../src/seccomp/index.js'

const child = fileURLToPath(new URL('seccomp-child.mjs', import.meta.url))
const run = (what: string) =>
  spawnSync(process.execPath, [child, what], { encoding: 'utf8', timeout: 60_000 })
const linuxX64 = process.platform === 'linux' && process.arch === 'x64'

describe.skipIf(!linuxX64)('seccomp filters in a process', () => {
  it('trap a denied call: the message names the call, its number and the thread; exit 159', () => {
    const r = run('deny-one')
    expect(r.status).toBe(SECCOMP_EXIT_CODE)
    expect(r.stderr).toMatch(
      /vmm: seccomp: thread "node" \(tid \d+\) made a system call the process filter denies: getgroups \(115\)/,
    )
    expect(r.stdout).toBe('') // the call never returned
  })

  it('let the JavaScript of a running VMM work under the process profile', () => {
    const r = run('node-work')
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('ok pong 42\n')
    expect(r.status).toBe(0)
  })

  it('stop a process that tries to start another', () => {
    const r = run('spawn')
    expect(r.status).toBe(SECCOMP_EXIT_CODE)
    expect(r.stderr).toMatch(/process filter denies: (clone|clone3|fork|vfork|execve) \(\d+\)/)
    expect(r.stdout).not.toContain('spawned')
  })
})
