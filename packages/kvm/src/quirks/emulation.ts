// Emulation failures on kvm_pvm hosts (investigations/linux-on-pvm/README.md at the repository
// root). An exit filter of the KVM adapter (quirks/index.ts) runs this before the machine's handler.
//
// On hosts whose /dev/kvm is kvm_pvm in native mode, the guest's kernel-mode code runs through
// KVM's x86 instruction emulator. Instructions it lacks stop the vCPU with an internal-error exit
// (suberror 1, emulation failure) that carries the instruction bytes at rip. A few of these are
// instructions a Linux guest executes whatever CPUID says, so the VMM finishes them itself and
// resumes: `int3` becomes the #BP the guest expects (Linux's int3 self-test and its text patching
// rely on it), a register-to-register `popcnt` is computed (hweight, when the kernel's
// alternatives chose it because the hardware CPUID bit shows through), `clac`/`stac` (SMAP's
// user-access brackets in every kernel entry) set EFLAGS.AC, and `fwait` is skipped. Anything
// else still ends the run with the bytes in the reason, as before.
import type { Regs, VcpuExit } from '@vmm/core'
import type { Vcpu } from '../vm.js'

/** KVM_INTERNAL_ERROR_EMULATION */
const EMULATION_FAILURE = 1
const BP_VECTOR = 3

// struct kvm_regs' general-purpose registers in ModRM/REX encoding order (SDM Vol. 2A, 2.1.5).
const GPR = [
  'rax',
  'rcx',
  'rdx',
  'rbx',
  'rsp',
  'rbp',
  'rsi',
  'rdi',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
] as const

function popcount(x: bigint): bigint {
  let n = 0n
  while (x) {
    n += x & 1n
    x >>= 1n
  }
  return n
}

/** Emulates a register-form POPCNT at rip: [66] F3 [REX] 0F B8 /r, mod = 3. Returns false otherwise. */
function popcnt(bytes: Uint8Array, regs: Regs): Regs | undefined {
  let i = 0
  let opsize = 32
  let sawF3 = false
  for (; i < bytes.length; i++) {
    const b = bytes[i]!
    if (b === 0x66) opsize = 16
    else if (b === 0xf3) sawF3 = true
    else break
  }
  let rex = 0
  if (bytes[i] !== undefined && (bytes[i]! & 0xf0) === 0x40) rex = bytes[i++]!
  if (!sawF3 || bytes[i] !== 0x0f || bytes[i + 1] !== 0xb8) return undefined
  const modrm = bytes[i + 2]
  if (modrm === undefined || modrm >> 6 !== 3) return undefined // memory operands: not here
  if (rex & 8) opsize = 64
  const dst = GPR[((modrm >> 3) & 7) | ((rex & 4) << 1)]!
  const src = GPR[(modrm & 7) | ((rex & 1) << 3)]!
  const mask = (1n << BigInt(opsize)) - 1n
  const count = popcount(regs[src] & mask)
  const out = { ...regs, rip: regs.rip + BigInt(i + 3) }
  // A 32-bit destination zero-extends; a 16-bit one keeps the upper bits.
  out[dst] = opsize === 16 ? (regs[dst] & ~0xffffn) | count : count
  // OF SF AF CF PF cleared, ZF = (source == 0) (SDM Vol. 2B, POPCNT).
  out.rflags = (regs.rflags & ~0x8d5n) | (count === 0n ? 0x40n : 0n)
  return out
}

/**
 * Finishes the instruction an emulation failure stopped at, if it is one the VMM handles.
 * Returns a description of what it did, or undefined to let the failure end the run.
 */
export function completeEmulationFailure(exit: VcpuExit, vcpu: Vcpu): string | undefined {
  if (exit.kind !== 'internal-error' || exit.suberror !== EMULATION_FAILURE) return undefined
  const bytes = exit.instructionBytes
  if (bytes.length === 0) return undefined
  // Read and written through kvm_run where KVM allows (Vcpu.exitRegs): this runs at every kernel
  // entry of a kvm_pvm guest (its clac), thousands of times a second.
  const regs = vcpu.exitRegs()
  if (bytes[0] === 0xcc) {
    // int3 is a trap: the #BP frame's rip is the byte after it (SDM Vol. 3A, 6.5).
    vcpu.setRegs({ ...regs, rip: regs.rip + 1n })
    vcpu.injectException(BP_VECTOR)
    return 'int3 -> #BP'
  }
  // clac / stac (0F 01 CA / CB): the kernel's user-access brackets when the guest sees SMAP;
  // they only clear / set EFLAGS.AC (bit 18).
  if (bytes[0] === 0x0f && bytes[1] === 0x01 && (bytes[2] === 0xca || bytes[2] === 0xcb)) {
    const ac = 1n << 18n
    const rflags = bytes[2] === 0xca ? regs.rflags & ~ac : regs.rflags | ac
    vcpu.setExitRegs({ ...regs, rip: regs.rip + 3n, rflags })
    return bytes[2] === 0xca ? 'clac' : 'stac'
  }
  // fwait (9B): waits for pending unmasked x87 exceptions. The kernel issues it after FPU state
  // operations where none can be pending (it runs with the x87 exceptions masked): a no-op here.
  if (bytes[0] === 0x9b) {
    vcpu.setExitRegs({ ...regs, rip: regs.rip + 1n })
    return 'fwait'
  }
  const p = popcnt(bytes, regs)
  if (p) {
    vcpu.setExitRegs(p)
    return 'popcnt'
  }
  return undefined
}

/** Counts of what completeEmulationFailure did, per kind (for logs and tests). */
export const emulated = new Map<string, number>()
