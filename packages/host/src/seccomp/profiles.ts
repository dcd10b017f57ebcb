// The seccomp allow-lists: what a running machine's threads may call, by who needs it. They were
// measured, not guessed: `vmm run` under the record mode (VMM_SECCOMP_RECORD=<file>, see
// README "seccomp"), which lets every unlisted call through and notes it per thread, over the
// kvm tier's machines and the e2e Linux boots (micro-devices, micro-linux, standard-linux,
// standard-hotplug, micro-snapshot, qmp-go); test/seccomp/profile.kvm.test.ts repeats the
// measurement on a representative machine and fails naming any call missing here.
//
// Adding a call: put it in the group of whoever needs it (or a new group saying who), with an
// argument condition when one is cheap to state; `pnpm vitest run test/seccomp` checks the lists.
// Conditions compare the low 32 bits of an argument (bpf.ts says why that is exact here).
import type { ArgMatch, Rule, SyscallRule } from './bpf.js'
import { BLOCK, KVM_VCPU, SECCOMP, TTY, TUN } from './ioctls.js'
import type { SyscallName } from './syscalls.js'

export interface ProfileGroup {
  /** Who needs these calls, and why. */
  readonly who: string
  readonly rules: readonly Rule[]
}

const CLONE_THREAD = 0x10000
const ENOSYS = 38
const PR_SET_NAME = 15
const PR_GET_NAME = 16
const PR_SET_NO_NEW_PRIVS = 38
const SECCOMP_SET_MODE_FILTER = 1
const SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
const AF_UNIX = 1
const AF_INET = 2
const AF_INET6 = 10
const AF_NETLINK = 16
const AF_VSOCK = 40
/** _IOC_TYPE of every KVM ioctl (KVMIO, include/uapi/linux/kvm.h), in bits 8-15 of the request. */
const KVMIO_TYPE: ArgMatch = { arg: 1, mask: 0xff00, value: 0xae00 }

const oneOf = (arg: ArgMatch['arg'], values: readonly number[]): ArgMatch[][] =>
  values.map((value) => [{ arg, value }])
const ioctl = (requests: Record<string, number>): SyscallRule => ({
  name: 'ioctl',
  when: oneOf(1, Object.values(requests)),
})
const calls = (...names: SyscallName[]): SyscallName[] => names

/** Calls both filters allow: the SIGSYS reporter's own, a thread's end, signal return. */
const common: ProfileGroup[] = [
  {
    who: 'the SIGSYS reporter (packages/host/src/native/seccomp.cc): thread name, tid, the message, the exit',
    rules: [{ name: 'prctl', when: [[{ arg: 0, value: PR_GET_NAME }]] }, 'gettid', 'write', 'exit_group'],
  },
  {
    who: 'every thread: signal delivery and return (the kick signal on vCPUs, SIGCHLD/SIGWINCH/SIGTERM handlers on the main thread), a thread exit',
    rules: calls('rt_sigreturn', 'rt_sigprocmask', 'exit'),
  },
  {
    who: 'every thread: futex waits and wakes (the vCPU/JS hand-off in packages/kvm/src/native/sys.h, pthread mutexes and condition variables, V8 and libuv)',
    rules: calls('futex'),
  },
  {
    who: 'the C library allocator on any thread (malloc arenas grow, shrink and are trimmed), glibc thread-stack release at thread exit',
    rules: calls('mmap', 'munmap', 'mprotect', 'madvise', 'brk'),
  },
]

/**
 * The whole process (TSYNC): Node's main thread, V8's platform threads, libuv's pool, and ours.
 * `pid` is this process's: signals may go to it alone.
 */
export const processProfile = (pid: number): readonly ProfileGroup[] => [
  ...common,
  {
    who: 'V8: the heap and code space (allocation, protection flips for JIT code, GC discards)',
    rules: calls('mremap', 'membarrier'),
  },
  {
    who: 'threads the process may still start (libuv pool grows, V8 workers): clone3 answers ENOSYS so glibc falls back to clone, whose flags must say CLONE_THREAD; no new process can start',
    rules: [
      { name: 'clone', when: [[{ arg: 0, mask: CLONE_THREAD, value: CLONE_THREAD }]] },
      { name: 'clone3', errno: ENOSYS },
      ...calls('set_robust_list', 'rseq', 'sched_yield', 'sched_getaffinity', 'getpid'),
      { name: 'prctl', when: [[{ arg: 0, value: PR_SET_NAME }], [{ arg: 0, value: PR_SET_NO_NEW_PRIVS }]] },
    ],
  },
  {
    who: 'the vCPU threads stack their own filter on this one (packages/kvm/src/native/vcpu_seccomp.cc): thread-only filters, no TSYNC',
    rules: [
      {
        name: 'seccomp',
        when: [
          [
            { arg: 0, value: SECCOMP_SET_MODE_FILTER },
            { arg: 1, value: 0 },
          ],
          [
            { arg: 0, value: SECCOMP_SET_MODE_FILTER },
            { arg: 1, value: SECCOMP_FILTER_FLAG_NEW_LISTENER },
          ],
        ],
      },
    ],
  },
  {
    who: 'signals: Node installs handlers (SIGINT, SIGTERM, SIGWINCH for the console) and V8 its own, alternate stacks; signals only to this process (the vCPU kick, pthread_kill, process.kill(process.pid))',
    rules: [
      ...calls('rt_sigaction', 'sigaltstack'),
      { name: 'tgkill', when: [[{ arg: 0, value: pid }]] },
      { name: 'kill', when: [[{ arg: 0, value: pid }]] },
    ],
  },
  {
    who: "libuv's event loop: epoll, its async wake-ups (eventfd), timers, the signal pipe",
    rules: calls('epoll_wait', 'epoll_pwait', 'epoll_ctl', 'epoll_create1', 'eventfd2', 'pipe2'),
  },
  {
    who: 'time: clocks (when the vDSO falls back), sleeps, process.cpuUsage and resource usage',
    rules: calls(
      'clock_gettime',
      'clock_getres',
      'gettimeofday',
      'clock_nanosleep',
      'nanosleep',
      'getrusage',
    ),
  },
  {
    who: "file I/O on open fds: disks (pread/pwrite on libuv's pool, packages/virtio block), TAP and eventfd reads/writes (packages/host), the console on stdio, snapshot files",
    rules: calls(
      'read',
      'write',
      'readv',
      'writev',
      'pread64',
      'pwrite64',
      'preadv',
      'pwritev',
      'preadv2',
      'pwritev2',
      'lseek',
      'fsync',
      'fdatasync',
      'fallocate',
      // The balloon over a restored machine's memory file drops the file's pages from the page
      // cache (posix_fadvise DONTNEED, packages/kvm/src/native/memory.cc discardMemory).
      'fadvise64',
      'ftruncate',
      'close',
      'fcntl',
      'dup',
      'dup3',
      'flock',
    ),
  },
  {
    who: 'files by name: hot-plugged disks and TAP devices (blockdev-add, netdev_add), snapshots written and memory files mapped, plugin and Node module loading, the QMP socket path (created and removed)',
    rules: calls(
      'openat',
      'newfstatat',
      'fstat',
      'statx',
      'readlinkat',
      'readlink',
      'faccessat2',
      'getcwd',
      'getdents64',
      'unlinkat',
      'unlink',
      'rmdir',
      'renameat2',
      'mkdirat',
      // The pre-*at twins of calls allowed above (no power the *at forms lack): libuv and glibc on
      // x86-64 issue mkdir(2), access(2) and rename(2) for fs.mkdir, fs.access/existsSync and
      // fs.rename — the code cache written at exit (packages/core/src/code-cache.ts), a snapshot
      // directory made over QMP (x-snapshot-save), a device that checks a path.
      'mkdir',
      'access',
      'faccessat',
      'rename',
      'renameat',
      'fchmod',
      'fstatfs',
      'statfs',
      'umask',
      'uname',
      'getrandom',
    ),
  },
  {
    who: "virtio-9p (packages/virtio/src/devices/9p): the guest's chown, chmod, link, symlink, utimes and truncate on the shared directory (measured under the record mode in test/e2e/micro-9p); mknodat for FIFOs and sockets only, never a device node (S_IFMT of the mode: 0o010000 FIFO, 0o140000 socket)",
    rules: [
      ...calls(
        'chmod',
        'fchmodat',
        'chown',
        'fchown',
        'lchown',
        'fchownat',
        'link',
        'linkat',
        'symlink',
        'symlinkat',
      ),
      ...calls('utimensat', 'truncate'),
      {
        name: 'mknodat',
        when: [[{ arg: 2, value: 0o010000, mask: 0o170000 }], [{ arg: 2, value: 0o140000, mask: 0o170000 }]],
      },
    ],
  },
  {
    who: 'ioctl: KVM on the VM and system fds (irq lines, routing, ioeventfd/irqfd, state, dirty log), the console terminal, TAP set-up, block-device sizes',
    rules: [{ name: 'ioctl', when: [[KVMIO_TYPE]] }, ioctl(TTY), ioctl(TUN), ioctl(BLOCK)],
  },
  {
    who: 'sockets: QMP and the console/vsock back ends on Unix sockets, loopback TCP for chardev back ends; netlink for interface queries',
    rules: [
      { name: 'socket', when: oneOf(0, [AF_UNIX, AF_INET, AF_INET6, AF_VSOCK, AF_NETLINK]) },
      ...calls(
        'socketpair',
        'bind',
        'listen',
        'accept4',
        'connect',
        'getsockname',
        'getpeername',
        'setsockopt',
        'getsockopt',
        'sendmsg',
        'recvmsg',
        'sendto',
        'recvfrom',
        'shutdown',
      ),
    ],
  },
  {
    who: 'identity, capabilities and limits Node reads (process.getuid; a Worker checks capget before reading its environment)',
    rules: calls('getuid', 'geteuid', 'getgid', 'getegid', 'capget', 'prlimit64'),
  },
]

/** The vCPU threads (packages/kvm/src/native/vcpu.cc): native code only, stacked on the process filter. */
export const vcpuProfile = (): readonly ProfileGroup[] => [
  ...common,
  {
    who: "KVM_RUN, and the vCPU state ioctls JavaScript ships to the vCPU's thread (registers, MSRs, CPUID, LAPIC, snapshot state); nothing but these requests",
    rules: [ioctl(KVM_VCPU)],
  },
  {
    who: 'a vCPU thread that was running installs the filter on itself before its next KVM_RUN (vcpu_seccomp.cc)',
    rules: [
      { name: 'prctl', when: [[{ arg: 0, value: PR_SET_NO_NEW_PRIVS }]] },
      {
        name: 'seccomp',
        when: [
          [
            { arg: 0, value: SECCOMP_SET_MODE_FILTER },
            { arg: 1, value: 0 },
          ],
        ],
      },
    ],
  },
  {
    who: 'spinning hand-off (sys.h SpinStep) when the vDSO clock falls back, and yields',
    rules: calls('clock_gettime', 'sched_yield'),
  },
]

/**
 * Rules a record-mode filter always has, so never records: what its supervisor thread calls
 * (seccomp.cc), and the return from the SIGSYS handler that re-issues a vCPU thread's call.
 */
export const RECORD_EXTRA: readonly Rule[] = [ioctl(SECCOMP), 'futex', 'rt_sigreturn']

/** All rules of a profile, flattened. */
export function rulesOf(profile: readonly ProfileGroup[]): Rule[] {
  return profile.flatMap((g) => g.rules)
}
