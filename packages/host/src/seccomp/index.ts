// seccomp for a running machine: a process-wide allow-list (installed with TSYNC, so every thread
// of the process, and every thread it starts later, carries it) and a tighter filter each vCPU
// thread stacks on itself. Install it once the machine is built and before its first guest
// instruction: the calls that build a machine (opening /dev/kvm, mapping RAM, loading plugins)
// are then behind it, and what the guest can reach is what the lists say.
//
// A denied call raises SIGSYS on the calling thread (SECCOMP_RET_TRAP); the handler
// (native/seccomp.cc) names the call and the thread on stderr and ends the process with
// SECCOMP_EXIT_CODE. Record mode (`mode: 'record'`) lets every unlisted call through and notes it,
// per thread, for measuring the lists (profiles.ts).
import { native } from '../native.js'
import { compile, countCalls, RET, type Rule } from './bpf.js'
import { processProfile, RECORD_EXTRA, rulesOf, vcpuProfile } from './profiles.js'
import { SYSCALLS, syscallName } from './syscalls.js'

export { type ArgMatch, compile, countCalls, normalize, RET, type Rule, type SyscallRule } from './bpf.js'
export { type ProfileGroup, processProfile, rulesOf, vcpuProfile } from './profiles.js'
export { SYSCALLS, type SyscallName, syscallName } from './syscalls.js'

/** What `vmm` exits with when a filter denied a call: 128 + SIGSYS, as if the kernel had killed it. */
export const SECCOMP_EXIT_CODE = 159

/** si_errno of the SIGSYS each filter raises (bpf.ts trapData), so the reporter can name the filter. */
const TRAP_PROCESS = 1
const TRAP_VCPU = 2
/** A record-mode vCPU filter's trap: note and re-issue (seccomp.cc kRecordTrap). */
const RECORD_TRAP = 3

export interface SeccompOptions {
  /** 'enforce' (the default): an unlisted call ends the process. 'record': it runs and is noted. */
  mode?: 'enforce' | 'record'
  /**
   * Record mode with empty lists: every call each thread makes is noted once (per thread and
   * call), which is how the lists are measured. Slower: each distinct call goes to the recorder.
   */
  recordAll?: boolean
  /** Calls an embedder's own components need beyond the profile, for the process filter. */
  extraRules?: readonly Rule[]
}

/** One call a record-mode filter let through. */
export interface RecordedCall {
  /** Which list lacked it: the process filter's, or a vCPU thread's. */
  filter: 'process' | 'vcpu'
  syscall: string
  tid: number
  /** The thread's name (/proc/self/task/<tid>/comm) when it made the call. */
  thread: string
}

export interface Seccomp {
  readonly mode: 'enforce' | 'record'
  /** Distinct calls each filter allows (or answers with an errno). */
  readonly counts: { process: number; vcpu: number | undefined }
  /** Record mode: the calls let through so far (none in enforce mode). */
  recorded(): RecordedCall[]
}

/**
 * A machine as the sandbox needs it: its VM once realized, and that VM's optional vCPU filter
 * part (core's Machine and VirtualMachine have this shape; spelled out here so that @vmm/host
 * keeps depending on nothing).
 */
export interface Confinable {
  readonly virtualMachine: { readonly vcpuSeccomp?: { confine(program: Uint8Array): void } } | undefined
}

let applied: Seccomp | undefined

/** The programs the profiles compile to (also what the tests interpret). */
export function seccompPrograms(options: SeccompOptions = {}): { process: Uint8Array; vcpu: Uint8Array } {
  const record = options.mode === 'record'
  const all = record && options.recordAll === true
  const processRules = all ? [] : rulesOf(processProfile(process.pid))
  const vcpuRules = all ? RECORD_EXTRA : rulesOf(vcpuProfile())
  const extra = [...(options.extraRules ?? []), ...(record ? RECORD_EXTRA : [])]
  const defaultAction = record ? RET.USER_NOTIF : RET.TRAP
  return {
    process: compile([...processRules, ...extra], {
      defaultAction,
      trapData: TRAP_PROCESS,
      // The recorder's own calls (reading a thread's name) come from the trampoline.
      ...(record ? { allowIp: native().seccompTrampoline() } : {}),
      hot: all ? [] : ['futex', 'epoll_wait', 'ioctl', 'read', 'write'],
    }),
    // Record mode traps here too, with a mark the SIGSYS handler knows: it notes the call and makes it
    // from its trampoline, which this filter lets through (one listener per process: seccomp.cc).
    vcpu: compile(vcpuRules, {
      defaultAction: record ? (RET.TRAP | RECORD_TRAP) >>> 0 : RET.TRAP,
      trapData: TRAP_VCPU,
      hot: all ? [] : ['ioctl', 'futex'],
      ...(record ? { allowIp: native().seccompTrampoline() } : {}),
    }),
  }
}

/**
 * Confines this process to what a running machine needs: the process filter on every thread, and
 * the vCPU filter on the machine's vCPU threads where the hypervisor has them (`vm.vcpuSeccomp`).
 * Call it after `machine.load()` (or `Machine.restore`) and before `start()`/`resume()`. Once per
 * process: filters cannot be removed, and a second process filter could not be synchronised
 * across threads that have their own.
 */
export function applySeccomp(machine: Confinable, options: SeccompOptions = {}): Seccomp {
  if (applied) throw new Error('seccomp: the filters are already installed in this process')
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new Error(
      `seccomp: the filters are for Linux on x86-64, not ${process.platform}-${process.arch} (run with --no-seccomp)`,
    )
  const vm = machine.virtualMachine
  if (vm === undefined)
    throw new Error('seccomp: the machine is not realized yet (apply the filters after machine.load())')
  const mode = options.mode ?? 'enforce'
  const programs = seccompPrograms(options)
  const n = native()
  const names: string[] = []
  for (const [name, nr] of Object.entries(SYSCALLS)) names[nr] = name
  n.seccompReporter(names, SECCOMP_EXIT_CODE)
  n.seccompInstall(programs.process, { tsync: true, record: mode === 'record', kind: TRAP_PROCESS })
  let vcpu: number | undefined
  if (vm.vcpuSeccomp) {
    vm.vcpuSeccomp.confine(programs.vcpu)
    vcpu = countCalls(rulesOf(vcpuProfile()))
  }
  applied = {
    mode,
    counts: {
      process: countCalls([...rulesOf(processProfile(process.pid)), ...(options.extraRules ?? [])]),
      vcpu,
    },
    recorded: () =>
      n.seccompRecords().map((r) => ({
        filter: r.kind === TRAP_VCPU ? 'vcpu' : 'process',
        syscall: syscallName(r.nr),
        tid: r.tid,
        thread: r.thread,
      })),
  }
  return applied
}
