// What this host's KVM needs from the VMM beyond the API, as policy the KVM adapter applies
// (hypervisor.ts): on kvm_pvm hosts (cloud VMs without nested virtualisation; docs/kvm-pvm-hosts.md)
// guest kernel code runs through KVM's instruction emulator, so
// - an exit filter finishes the instructions the emulator lacks before the machine's handler sees
//   the failure (emulation.ts), with the guest profiler and trace of VMM_PROFILE_GUEST and
//   VMM_TRACE_EMULATION beside it;
// - a CPUID policy hides the paravirtual features that make the guest issue hypercalls;
// - the boot policy asks loaders for an uncompressed initrd.
// Elsewhere none of this applies and the adapter passes everything through.
import { existsSync } from 'node:fs'
import type { BootPolicy, CpuidEntry, VcpuExit } from '@vmm/core'
import type { Vcpu } from '../vm.js'
import { completeEmulationFailure, emulated } from './emulation.js'
import { guestProfiler, type PhysicalReader } from './profiler.js'

/** Offered each exit before the machine's handler; true when it dealt with it and the vCPU resumes. */
export type ExitFilter = (exit: VcpuExit, vcpu: Vcpu) => boolean

export interface HostQuirks {
  /** For messages: "kvm_pvm", "none". */
  readonly name: string
  readonly bootPolicy: BootPolicy
  /** The CPUID table a vCPU gets for `entries` asked (what the guest must not see cleared). */
  cpuid(entries: readonly CpuidEntry[]): CpuidEntry[]
  /** The exit filter for one VM's vCPUs, or undefined when exits need none; `read` reads its RAM. */
  exitFilter(read: PhysicalReader, env?: NodeJS.ProcessEnv): ExitFilter | undefined
}

/**
 * CPUID 0x40000001 EAX bits (Linux Documentation/virt/kvm/x86/cpuid.rst) of features that issue
 * hypercalls. On kvm_pvm a `vmcall` is re-executed for ever (investigations/linux-on-pvm: ptp_kvm's
 * clock pairing spun on one; with two vCPUs, CPU 1's first IPI by KVM_HC_SEND_IPI never returned
 * while CPU 0 spun on the lock it held), so the guest must not see them, whatever the manifest says.
 */
export const HYPERCALL_FEATURES = {
  'kvm-pv-unhalt': 7, // paravirt spinlocks: KVM_HC_KICK_CPU
  'kvm-pv-send-ipi': 11, // IPIs by KVM_HC_SEND_IPI
  'kvm-pv-sched-yield': 13, // KVM_HC_SCHED_YIELD to a preempted vCPU
} as const

const KVM_CPUID_FEATURES = 0x40000001

/** `entries` with the hypercall features of HYPERCALL_FEATURES cleared. */
export function hideHypercallFeatures(entries: readonly CpuidEntry[]): CpuidEntry[] {
  let mask = 0
  for (const bit of Object.values(HYPERCALL_FEATURES)) mask |= 1 << bit
  return entries.map((e) =>
    e.function === KVM_CPUID_FEATURES ? { ...e, eax: (e.eax & ~mask) >>> 0 } : { ...e },
  )
}

const ADVANCED_POWER_MANAGEMENT = 0x80000007
const INVARIANT_TSC = 1 << 8 // CPUID 0x80000007 EDX[8] (Intel SDM vol. 2A, CPUID; Linux X86_FEATURE_NONSTOP_TSC)

/**
 * `entries` with the invariant-TSC bit cleared. A kvm_pvm guest reads the host's TSC: writing
 * IA32_TSC (KVM_SET_MSRS) leaves what the guest reads unchanged (measured: 3.0 s paused, 3.0 s
 * gone in the guest's TSC after writing back the value from the pause), so no offset can hold the
 * TSC still across a pause. With an invariant TSC Linux lowers kvm-clock's rating below the TSC's
 * (arch/x86/kernel/kvmclock.c) and keeps time by the TSC, which then runs on through QMP `stop`;
 * without it Linux keeps kvm-clock, whose base KVM_SET_CLOCK restores at resume (Machine.resume),
 * so the guest sees no time pass while paused (docs/kvm-pvm-hosts.md, "The guest clock across stop").
 */
export function hideInvariantTsc(entries: readonly CpuidEntry[]): CpuidEntry[] {
  return entries.map((e) =>
    e.function === ADVANCED_POWER_MANAGEMENT ? { ...e, edx: (e.edx & ~INVARIANT_TSC) >>> 0 } : { ...e },
  )
}

/** The emulation-failure filter, with VMM_TRACE_EMULATION's log and VMM_PROFILE_GUEST's sampler. */
export function emulationFilter(read: PhysicalReader, env: NodeJS.ProcessEnv = process.env): ExitFilter {
  const trace = env.VMM_TRACE_EMULATION === '1'
  const profile = env.VMM_PROFILE_GUEST ? guestProfiler(read, env.VMM_PROFILE_GUEST) : undefined
  return (exit, vcpu) => {
    if (exit.kind !== 'internal-error') return false
    const rip = trace ? vcpu.getRegs().rip : 0n
    profile?.(vcpu)
    const done = completeEmulationFailure(exit, vcpu)
    if (!done) return false
    const n = (emulated.get(done) ?? 0) + 1
    emulated.set(done, n)
    // VMM_TRACE_EMULATION=1: the first few of each kind, then every 10,000th, on stderr.
    if (trace && (n <= 5 || n % 10000 === 0))
      process.stderr.write(`[emulate] vCPU ${vcpu.id}: ${done} #${n} at rip 0x${rip.toString(16)}\r\n`)
    return true
  }
}

export const kvmPvmQuirks: HostQuirks = {
  name: 'kvm_pvm',
  // Inflating a 1 MiB gzip initramfs in the emulated guest kernel takes minutes; Linux takes an
  // uncompressed cpio as well (investigations/linux-on-pvm/README.md).
  bootPolicy: { prefersUncompressedInitrd: true },
  cpuid: (entries) => hideInvariantTsc(hideHypercallFeatures(entries)),
  exitFilter: emulationFilter,
}

export const noQuirks: HostQuirks = {
  name: 'none',
  bootPolicy: { prefersUncompressedInitrd: false },
  cpuid: (entries) => entries.map((e) => ({ ...e })),
  exitFilter: () => undefined,
}

/** Whether /dev/kvm is kvm_pvm (guest kernel code emulated; ../../../shared/docs/host-kvm.md). */
export function isKvmPvmHost(): boolean {
  return existsSync('/sys/module/kvm_pvm')
}

/** The quirks of this host's KVM. */
export function hostQuirks(): HostQuirks {
  return isKvmPvmHost() ? kvmPvmQuirks : noQuirks
}

export { completeEmulationFailure, emulated } from './emulation.js'
export type { PhysicalReader } from './profiler.js'
