// Emulation failures on kvm_pvm hosts (../../../../investigations/linux-on-pvm/README.md).
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
import { writeFileSync } from 'node:fs'
import type { ExitHandler, GuestMemory, Regs, Vcpu, VcpuExit } from '@vmm/core'

/** KVM_INTERNAL_ERROR_EMULATION */
const EMULATION_FAILURE = 1
const BP_VECTOR = 3

/** A vCPU that can take an injected exception (satisfied by @vmm/kvm's Vcpu). */
interface InjectingVcpu extends Vcpu {
  injectException(vector: number, errorCode?: number): void
}

function canInject(v: Vcpu): v is InjectingVcpu {
  return typeof (v as Partial<InjectingVcpu>).injectException === 'function'
}

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
  const regs = vcpu.getRegs()
  if (bytes[0] === 0xcc && canInject(vcpu)) {
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
    vcpu.setRegs({ ...regs, rip: regs.rip + 3n, rflags })
    return bytes[2] === 0xca ? 'clac' : 'stac'
  }
  // fwait (9B): waits for pending unmasked x87 exceptions. The kernel issues it after FPU state
  // operations where none can be pending (it runs with the x87 exceptions masked): a no-op here.
  if (bytes[0] === 0x9b) {
    vcpu.setRegs({ ...regs, rip: regs.rip + 1n })
    return 'fwait'
  }
  const p = popcnt(bytes, regs)
  if (p) {
    vcpu.setRegs(p)
    return 'popcnt'
  }
  return undefined
}

/** Counts of what completeEmulationFailure did, per vCPU (for logs and tests). */
export const emulated = new Map<string, number>()

/**
 * Wraps `vcpu.run` so every run's exit handler first offers emulation failures to
 * completeEmulationFailure and resumes the vCPU when it handled one. The machine's own handler
 * (which ends the run on an internal error) sees only the failures left.
 */
export function handleEmulationFailures(vcpu: Vcpu, memory?: GuestMemory): void {
  const trace = process.env.VMM_TRACE_EMULATION === '1'
  const profile =
    memory && process.env.VMM_PROFILE_GUEST ? guestProfiler(memory, process.env.VMM_PROFILE_GUEST) : undefined
  const run = vcpu.run.bind(vcpu)
  const wrapped = (handler: ExitHandler): Promise<VcpuExit> =>
    run({
      pioIn: handler.pioIn.bind(handler),
      pioOut: handler.pioOut.bind(handler),
      mmioRead: handler.mmioRead.bind(handler),
      mmioWrite: handler.mmioWrite.bind(handler),
      onExit: (exit, v) => {
        const rip = trace ? v.getRegs().rip : 0n
        if (profile && exit.kind === 'internal-error') profile(v)
        const done = completeEmulationFailure(exit, v)
        if (done) {
          const n = (emulated.get(done) ?? 0) + 1
          emulated.set(done, n)
          // VMM_TRACE_EMULATION=1: the first few of each kind, then every 10,000th, on stderr.
          if (trace && (n <= 5 || n % 10000 === 0))
            process.stderr.write(`[emulate] vCPU ${v.id}: ${done} #${n} at rip 0x${rip.toString(16)}\r\n`)
          return 'resume'
        }
        return handler.onExit(exit, v)
      },
    })
  Object.defineProperty(vcpu, 'run', { value: wrapped, configurable: true, writable: true })
}

/**
 * A sampling profile of the guest kernel for investigations (VMM_PROFILE_GUEST=<file>): on kvm_pvm
 * hosts every interrupt entry stops at its `clac`, with the interrupted context's frame (rip, cs,
 * rflags, rsp, ss) on the stack; the interrupted rip is counted, and the counts are written to
 * <file> (hex rip, count) every 200 samples and when the process exits.
 */
function guestProfiler(memory: GuestMemory, file: string): (vcpu: Vcpu) => void {
  const counts = new Map<bigint, number>()
  let total = 0
  const dump = () => {
    const rows = [...counts].sort((a, b) => b[1] - a[1])
    writeFileSync(file, `${rows.map(([rip, n]) => `${rip.toString(16)} ${n}`).join('\n')}\n`)
  }
  process.on('exit', dump)
  const PA = 0x000ffffffffff000n
  const read = (pa: bigint) => memory.readU64(Number(pa) as never)
  const translate = (cr3: bigint, va: bigint): bigint | undefined => {
    let table = cr3 & PA
    for (const shift of [39n, 30n, 21n, 12n]) {
      const e = read(table + ((va >> shift) & 511n) * 8n)
      if (!(e & 1n)) return undefined
      if ((shift === 30n || shift === 21n) && e & 0x80n) {
        const mask = (1n << shift) - 1n
        return (e & PA & ~mask) + (va & mask)
      }
      table = e & PA
    }
    return table + (va & 0xfffn)
  }
  return (vcpu) => {
    try {
      const { rsp } = vcpu.getRegs()
      const cr3 = vcpu.getSregs().cr3
      const pa = translate(cr3, rsp)
      const cs = pa === undefined ? undefined : translate(cr3, rsp + 8n)
      if (pa === undefined || cs === undefined) return
      const frameCs = read(cs)
      if (frameCs !== 0x10n && frameCs !== 0x33n) return // not an interrupt frame
      const rip = frameCs === 0x33n ? 0n : read(pa) // user mode counts as 0
      counts.set(rip, (counts.get(rip) ?? 0) + 1)
      if (++total % 200 === 0) dump() // also when the run is killed
    } catch {
      // a stack outside RAM: not a sample
    }
  }
}
