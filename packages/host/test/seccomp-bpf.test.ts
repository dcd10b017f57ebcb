// The seccomp compiler (src/seccomp/bpf.ts), its programs run through a BPF interpreter
// (seccomp-bpf.ts): the arch and x32 checks, the dispatch over call numbers, argument conditions,
// errno answers, the hot-call prefix and the record mode's trampoline address; and the shipped
// profiles: a process cannot be spawned, only KVM ioctls reach a vCPU thread.
import { describe, expect, it } from 'vitest'
import { compile, normalize, RET, type Rule } from '../src/seccomp/bpf.js'
import { KVM_VCPU, TTY } from '../src/seccomp/ioctls.js'
import { processProfile, rulesOf, vcpuProfile } from '../src/seccomp/profiles.js'
import { SYSCALLS } from '../src/seccomp/syscalls.js'
import { runFilter } from './seccomp-bpf.js'

const TRAP = RET.TRAP | 7
const opts = { defaultAction: TRAP, trapData: 7 }
const nr = (name: keyof typeof SYSCALLS) => SYSCALLS[name]

describe('seccomp BPF compiler', () => {
  it('allows listed calls, traps the rest, other ABIs and x32 calls', () => {
    const p = compile(['read', 'write', 'futex'], opts)
    expect(runFilter(p, { nr: nr('read') })).toBe(RET.ALLOW)
    expect(runFilter(p, { nr: nr('futex') })).toBe(RET.ALLOW)
    expect(runFilter(p, { nr: nr('openat') })).toBe(TRAP)
    expect(runFilter(p, { nr: nr('read'), arch: 0x40000003 /* AUDIT_ARCH_I386 */ })).toBe(TRAP)
    expect(runFilter(p, { nr: nr('read') | 0x40000000 })).toBe(TRAP)
  })

  it('finds every call of a long list by binary search, and none beside them', () => {
    const names = Object.keys(SYSCALLS).filter((_, i) => i % 3 === 0) as (keyof typeof SYSCALLS)[]
    const p = compile(names, opts)
    const allowed = new Set(names.map((n) => SYSCALLS[n]))
    for (let i = 0; i < 520; i++) expect(runFilter(p, { nr: i })).toBe(allowed.has(i) ? RET.ALLOW : TRAP)
  })

  it('checks arguments on their low 32 bits, alternatives or-ed, conditions and-ed', () => {
    const rules: Rule[] = [
      { name: 'socket', when: [[{ arg: 0, value: 1 }], [{ arg: 0, value: 40 }]] },
      { name: 'clone', when: [[{ arg: 0, mask: 0x10000, value: 0x10000 }]] },
      {
        name: 'seccomp',
        when: [
          [
            { arg: 0, value: 1 },
            { arg: 1, value: 0 },
          ],
        ],
      },
    ]
    const p = compile(rules, opts)
    expect(runFilter(p, { nr: nr('socket'), args: [1n] })).toBe(RET.ALLOW)
    expect(runFilter(p, { nr: nr('socket'), args: [40n] })).toBe(RET.ALLOW)
    expect(runFilter(p, { nr: nr('socket'), args: [2n] })).toBe(TRAP)
    expect(runFilter(p, { nr: nr('clone'), args: [0x3d0f00n] })).toBe(RET.ALLOW)
    expect(runFilter(p, { nr: nr('clone'), args: [0x10000n] })).toBe(RET.ALLOW)
    expect(runFilter(p, { nr: nr('clone'), args: [0x1200011n /* fork() */] })).toBe(TRAP)
    expect(runFilter(p, { nr: nr('seccomp'), args: [1n, 0n] })).toBe(RET.ALLOW)
    expect(runFilter(p, { nr: nr('seccomp'), args: [1n, 1n] })).toBe(TRAP)
    expect(runFilter(p, { nr: nr('seccomp'), args: [0n, 0n] })).toBe(TRAP)
    // The high half is not looked at: the kernel reads these arguments as 32-bit values.
    expect(runFilter(p, { nr: nr('socket'), args: [(1n << 32n) | 1n] })).toBe(RET.ALLOW)
  })

  it('answers an errno where told, merges rules for one call and refuses contradictions', () => {
    const p = compile([{ name: 'clone3', errno: 38 }, 'read'], opts)
    expect(runFilter(p, { nr: nr('clone3') })).toBe(RET.ERRNO | 38)
    const merged = normalize([
      { name: 'prctl', when: [[{ arg: 0, value: 15 }]] },
      { name: 'prctl', when: [[{ arg: 0, value: 16 }]] },
    ])
    expect(merged.get(nr('prctl'))?.when).toHaveLength(2)
    expect(
      normalize([{ name: 'prctl', when: [[{ arg: 0, value: 15 }]] }, 'prctl']).get(nr('prctl'))?.when,
    ).toBeUndefined()
    expect(() => compile([{ name: 'read', errno: 1 }, 'read'], opts)).toThrow(/both allowed and answered/)
    expect(() => compile(['no_such_call' as 'read'], opts)).toThrow(/unknown system call "no_such_call"/)
    expect(() => compile(['read'], { ...opts, hot: ['write'] })).toThrow(
      /hot call "write" is not in the rules/,
    )
  })

  it('tests hot calls first and lets the trampoline address through in record mode', () => {
    const p = compile(['ioctl', 'futex'], { ...opts, hot: ['ioctl'], allowIp: 0x7f12_3456_789an })
    // ioctl is the instruction after the header's 6 plus the 5 of the ip check: found at once.
    expect(runFilter(p, { nr: nr('ioctl') })).toBe(RET.ALLOW)
    expect(runFilter(p, { nr: nr('openat'), ip: 0x7f12_3456_789an })).toBe(RET.ALLOW)
    expect(runFilter(p, { nr: nr('openat'), ip: 0x7f12_3456_789bn })).toBe(TRAP)
    expect(runFilter(p, { nr: nr('openat'), ip: 0x7f13_3456_789an })).toBe(TRAP)
  })
})

describe('the shipped profiles', () => {
  const proc = compile(rulesOf(processProfile(4242)), opts)
  const vcpu = compile(rulesOf(vcpuProfile()), opts)

  it('let no process start: clone only with CLONE_THREAD, clone3 ENOSYS, no fork, vfork, execve', () => {
    // glibc's pthread_create flags (CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID).
    expect(runFilter(proc, { nr: nr('clone'), args: [0x3d0f00n] })).toBe(RET.ALLOW)
    expect(runFilter(proc, { nr: nr('clone'), args: [0x1200011n] /* fork() */ })).toBe(TRAP)
    expect(runFilter(proc, { nr: nr('clone'), args: [0x4111n] /* CLONE_VM|CLONE_VFORK|SIGCHLD */ })).toBe(
      TRAP,
    )
    expect(runFilter(proc, { nr: nr('clone3') })).toBe(RET.ERRNO | 38)
    for (const name of [
      'fork',
      'vfork',
      'execve',
      'execveat',
      'ptrace',
      'mount',
      'pivot_root',
      'setns',
      'unshare',
      'init_module',
      'kexec_load',
      'bpf',
      'process_vm_writev',
    ] as const)
      expect(runFilter(proc, { nr: nr(name) }), name).toBe(TRAP)
  })

  it('let signals reach this process only, and sockets of the listed families only', () => {
    expect(runFilter(proc, { nr: nr('tgkill'), args: [4242n, 5n, 34n] })).toBe(RET.ALLOW)
    expect(runFilter(proc, { nr: nr('tgkill'), args: [1n, 1n, 9n] })).toBe(TRAP)
    expect(runFilter(proc, { nr: nr('kill'), args: [1n, 9n] })).toBe(TRAP)
    expect(runFilter(proc, { nr: nr('socket'), args: [1n] })).toBe(RET.ALLOW)
    expect(runFilter(proc, { nr: nr('socket'), args: [17n /* AF_PACKET */] })).toBe(TRAP)
  })

  it('let the process issue KVM, terminal, TAP and block ioctls and no others', () => {
    expect(runFilter(proc, { nr: nr('ioctl'), args: [3n, 0xae03n /* KVM_CHECK_EXTENSION */] })).toBe(
      RET.ALLOW,
    )
    expect(runFilter(proc, { nr: nr('ioctl'), args: [0n, BigInt(TTY.TCSETS)] })).toBe(RET.ALLOW)
    expect(
      runFilter(proc, { nr: nr('ioctl'), args: [0n, 0x5412n /* TIOCSTI: type into a terminal */] }),
    ).toBe(TRAP)
  })

  it('let a vCPU thread make KVM vCPU ioctls, futex waits and little else', () => {
    for (const req of Object.values(KVM_VCPU))
      expect(runFilter(vcpu, { nr: nr('ioctl'), args: [9n, BigInt(req)] })).toBe(RET.ALLOW)
    expect(runFilter(vcpu, { nr: nr('ioctl'), args: [9n, 0xae01n /* KVM_CREATE_VM */] })).toBe(TRAP)
    expect(runFilter(vcpu, { nr: nr('ioctl'), args: [0n, BigInt(TTY.TCSETS)] })).toBe(TRAP)
    expect(runFilter(vcpu, { nr: nr('futex') })).toBe(RET.ALLOW)
    for (const name of ['openat', 'socket', 'clone', 'execve', 'read', 'mremap', 'epoll_wait'] as const)
      expect(runFilter(vcpu, { nr: nr(name) }), name).toBe(TRAP)
  })
})
