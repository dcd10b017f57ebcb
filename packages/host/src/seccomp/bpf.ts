// A seccomp filter compiler: allow-list rules in, a classic BPF program out (the one program
// format seccomp(2) takes, SECCOMP_SET_MODE_FILTER). Ours rather than libseccomp's because the
// rules are small and fixed, the program must be handed as bytes to two native modules (the
// process-wide install in @vmm/host, each vCPU thread's own in @vmm/kvm), and a compiler of
// ~150 lines that a unit test runs through a BPF interpreter is easier to check than a C library
// loaded at run time; the filters it makes are the shape libseccomp makes (arch check, number
// dispatch, argument checks).
//
// The input a filter sees is struct seccomp_data (include/uapi/linux/seccomp.h):
//   u32 nr @0, u32 arch @4, u64 instruction_pointer @8, u64 args[6] @16 (little-endian halves).
// Instructions: include/uapi/linux/filter.h and bpf_common.h; Documentation/userspace-api/seccomp_filter.rst.
import { SYSCALLS, type SyscallName } from './syscalls.js'

/** AUDIT_ARCH_X86_64 (include/uapi/linux/audit.h): EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE. */
export const AUDIT_ARCH_X86_64 = 0xc000003e
/** __X32_SYSCALL_BIT: x32 ABI calls carry it; a 64-bit VMM never makes one. */
export const X32_SYSCALL_BIT = 0x40000000

/** Return values (SECCOMP_RET_*). The low 16 bits are data: the errno, or for TRAP, si_errno. */
export const RET = {
  KILL_PROCESS: 0x80000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  USER_NOTIF: 0x7fc00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const

// Opcodes (bpf_common.h): class | size | mode, class | op | source.
const LD_W_ABS = 0x00 | 0x00 | 0x20
const ALU_AND_K = 0x04 | 0x50 | 0x00
const JMP_JA = 0x05 | 0x00
const JMP_JEQ_K = 0x05 | 0x10
const JMP_JGE_K = 0x05 | 0x30
const JMP_JSET_K = 0x05 | 0x40
const RET_K = 0x06 | 0x00

/** One argument condition: `(low 32 bits of args[arg]) & mask === value` (mask: all bits unless told). */
export interface ArgMatch {
  arg: 0 | 1 | 2 | 3 | 4 | 5
  value: number
  mask?: number
}

/**
 * One allowed call. Arguments are compared on their low 32 bits, which is what the kernel reads for
 * every argument we check (ioctl's request and clone's flags are taken as 32-bit values, socket's
 * domain and prctl's option are ints).
 */
export interface SyscallRule {
  name: SyscallName
  /** Allowed only when one of these holds; each is a list of conditions that must all hold. */
  when?: readonly (readonly ArgMatch[])[]
  /** Answer with this errno instead of allowing (clone3: ENOSYS, so the C library falls back to clone, whose flags a filter can read). */
  errno?: number
}

export type Rule = SyscallName | SyscallRule

export interface FilterOptions {
  /** What an unlisted call gets: RET.TRAP (enforce), RET.USER_NOTIF (record) or RET.LOG. */
  defaultAction: number
  /** si_errno of the SIGSYS a trap raises: tells the handler which filter denied the call. */
  trapData: number
  /** Calls tested first, before the binary search (the vCPU's ioctl: KVM_RUN on every exit). */
  hot?: readonly SyscallName[]
  /** Allows every call made from this instruction pointer (the record mode's trampoline, seccomp.cc). */
  allowIp?: bigint
}

interface Insn {
  code: number
  jt: number
  jf: number
  k: number
  /** For JA: the label whose position k is resolved against. */
  to?: string
}

/** Merges rules for the same call (their alternatives add up); a call both plain and conditional is plain. */
export function normalize(rules: readonly Rule[]): Map<number, SyscallRule> {
  const out = new Map<number, SyscallRule>()
  for (const r of rules) {
    const rule: SyscallRule = typeof r === 'string' ? { name: r } : r
    const nr = SYSCALLS[rule.name]
    if (nr === undefined) throw new Error(`seccomp: unknown system call "${rule.name}"`)
    const prev = out.get(nr)
    if (prev === undefined) out.set(nr, rule)
    else if (prev.errno !== rule.errno)
      throw new Error(`seccomp: "${rule.name}" is both allowed and answered with an errno`)
    else if (prev.when !== undefined && rule.when !== undefined)
      out.set(nr, { ...prev, when: [...prev.when, ...rule.when] })
    else out.set(nr, { ...prev, when: undefined })
  }
  return out
}

/** Compiles the rules into struct sock_filter[] (8 bytes each), ready for seccomp(2). */
export function compile(rules: readonly Rule[], options: FilterOptions): Uint8Array {
  const byNr = normalize(rules)
  const prog: Insn[] = []
  const labels = new Map<string, number>()
  const emit = (code: number, k: number, jt = 0, jf = 0) => void prog.push({ code, jt, jf, k: k >>> 0 })
  const jump = (to: string) => void prog.push({ code: JMP_JA, jt: 0, jf: 0, k: 0, to })
  const label = (name: string) => void labels.set(name, prog.length)
  const trap = (RET.TRAP | (options.trapData & 0xffff)) >>> 0

  // The architecture first: a call's number means another call on another ABI.
  emit(LD_W_ABS, 4)
  emit(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0)
  emit(RET_K, trap)
  if (options.allowIp !== undefined) {
    emit(LD_W_ABS, 8)
    emit(JMP_JEQ_K, Number(options.allowIp & 0xffffffffn), 0, 3)
    emit(LD_W_ABS, 12)
    emit(JMP_JEQ_K, Number(options.allowIp >> 32n), 0, 1)
    emit(RET_K, RET.ALLOW)
  }
  emit(LD_W_ABS, 0)
  emit(JMP_JSET_K, X32_SYSCALL_BIT, 0, 1)
  emit(RET_K, trap)
  for (const name of options.hot ?? []) {
    const nr = SYSCALLS[name]
    if (!byNr.has(nr)) throw new Error(`seccomp: hot call "${name}" is not in the rules`)
    emit(JMP_JEQ_K, nr, 0, 1)
    jump(`call${nr}`)
  }
  // A binary search over the call numbers: ~log2(n) comparisons to find a call's rule.
  const nrs = [...byNr.keys()].sort((a, b) => a - b)
  const tree = (lo: number, hi: number) => {
    if (hi - lo <= 3) {
      for (let i = lo; i < hi; i++) {
        emit(JMP_JEQ_K, nrs[i]!, 0, 1)
        jump(`call${nrs[i]}`)
      }
      jump('default')
      return
    }
    const mid = (lo + hi) >> 1
    emit(JMP_JGE_K, nrs[mid]!, 0, 1)
    jump(`tree${mid}`)
    tree(lo, mid)
    label(`tree${mid}`)
    tree(mid, hi)
  }
  tree(0, nrs.length)
  for (const nr of nrs) {
    const rule = byNr.get(nr)!
    const action = rule.errno !== undefined ? (RET.ERRNO | (rule.errno & 0xffff)) >>> 0 : RET.ALLOW
    label(`call${nr}`)
    for (const alternative of rule.when ?? [[]]) {
      // Each condition is a load, an optional mask and a compare that skips to the next alternative.
      const sizes = alternative.map((c) => (c.mask === undefined ? 2 : 3))
      let left = sizes.reduce((a, b) => a + b, 0)
      for (const [i, c] of alternative.entries()) {
        emit(LD_W_ABS, 16 + 8 * c.arg)
        if (c.mask !== undefined) emit(ALU_AND_K, c.mask)
        left -= sizes[i]!
        emit(JMP_JEQ_K, c.value, 0, left + 1) // false: past the rest and the ret below
      }
      emit(RET_K, action)
    }
    if (rule.when !== undefined) jump('default')
  }
  label('default')
  emit(RET_K, options.defaultAction)
  if (prog.length > 4096)
    throw new Error(`seccomp: the filter has ${prog.length} instructions, more than BPF_MAXINSNS (4096)`)

  const bytes = new Uint8Array(prog.length * 8)
  const view = new DataView(bytes.buffer)
  for (const [pc, insn] of prog.entries()) {
    let k = insn.k
    if (insn.to !== undefined) {
      const at = labels.get(insn.to)
      if (at === undefined) throw new Error(`seccomp: internal error: no label ${insn.to}`)
      k = at - (pc + 1)
    }
    view.setUint16(pc * 8, insn.code, true)
    view.setUint8(pc * 8 + 2, insn.jt)
    view.setUint8(pc * 8 + 3, insn.jf)
    view.setUint32(pc * 8 + 4, k >>> 0, true)
  }
  return bytes
}

/** The distinct calls a rule list allows (or answers), for the README's counts. */
export function countCalls(rules: readonly Rule[]): number {
  return normalize(rules).size
}
