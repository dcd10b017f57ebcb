// Per-vCPU x86 state a Linux guest expects from its "firmware": CPUID with its own APIC id and the
// machine's topology, boot MSRs, the LAPIC's LINT pins wired like a PC, and a reset FPU. These go
// through the vCPU's optional x86 part (core's vcpu.x86); a hypervisor without it (the in-process
// test hypervisor) skips this step. What a host must hide whatever the manifest says (kvm_pvm's
// hypercall features) is the hypervisor's CPUID policy, applied by its setCpuid.
import type { CpuidEntry, X86VcpuFeatures } from '@vmm/core'

export type { CpuidEntry }

/** CPUID feature bits by name, for `cpu.hide` in a manifest: [leaf, register, bit]. */
export const CPUID_FEATURES: Record<string, readonly [number, 'eax' | 'ecx' | 'edx' | 'ebx', number]> = {
  cx16: [1, 'ecx', 13],
  popcnt: [1, 'ecx', 23],
  xsave: [1, 'ecx', 26],
  avx: [1, 'ecx', 28],
  x2apic: [1, 'ecx', 21],
  'tsc-deadline': [1, 'ecx', 24],
  rdrand: [1, 'ecx', 30],
  movbe: [1, 'ecx', 22],
  pdpe1gb: [0x80000001, 'edx', 26],
  // KVM paravirtual features (CPUID 0x40000001 EAX, Linux Documentation/virt/kvm/x86/cpuid.rst)
  // that make the guest issue hypercalls.
  'kvm-pv-unhalt': [0x40000001, 'eax', 7], // paravirt spinlocks: KVM_HC_KICK_CPU
  'kvm-pv-send-ipi': [0x40000001, 'eax', 11], // IPIs by KVM_HC_SEND_IPI
  'kvm-pv-sched-yield': [0x40000001, 'eax', 13], // KVM_HC_SCHED_YIELD to a preempted vCPU
}

function log2ceil(n: number): number {
  let s = 0
  while (1 << s < n) s++
  return s
}

/**
 * The CPUID table for vCPU `id` of `count`: KVM's supported table with this vCPU's APIC id and a
 * topology of `count` cores in one package (Intel SDM Vol. 2A, CPUID leaves 01H, 04H, 0BH), the
 * hypervisor bit set, and the features named in `hide` cleared.
 */
export function vcpuCpuid(
  supported: readonly CpuidEntry[],
  id: number,
  count: number,
  hide: readonly string[] = [],
): CpuidEntry[] {
  const shift = log2ceil(count)
  const out = supported.map((e) => ({ ...e }))
  for (const e of out) {
    switch (e.function) {
      case 1:
        e.ebx = ((id & 0xff) << 24) | ((count & 0xff) << 16) | (8 << 8) | (e.ebx & 0xff) // APIC id, logical CPUs, CLFLUSH 64 bytes
        e.ecx |= 1 << 31 // running under a hypervisor
        if (count > 1) e.edx |= 1 << 28 // HTT: more than one logical processor per package
        break
      case 4: {
        // EAX[31:26]: cores per package - 1; EAX[25:14]: logical processors sharing this cache - 1
        // (each core has its own L1/L2; the L3 is shared by the package).
        if ((e.eax & 0x1f) === 0) break // no cache at this index
        const level = (e.eax >> 5) & 7
        const sharing = level >= 3 ? count - 1 : 0
        e.eax = (e.eax & 0x3fff) | (sharing << 14) | ((count - 1) << 26)
        break
      }
      case 0xb:
        // x2APIC topology: level 0 SMT (one thread per core), level 1 core (count cores).
        e.edx = id
        if (e.index === 0) {
          e.eax = 0
          e.ebx = 1
          e.ecx = (1 << 8) | 0
        } else if (e.index === 1) {
          e.eax = shift
          e.ebx = count
          e.ecx = (2 << 8) | 1
        } else {
          e.eax = 0
          e.ebx = 0
          e.ecx = e.index
        }
        break
    }
  }
  for (const name of hide) {
    const f = CPUID_FEATURES[name]
    if (!f)
      throw new RangeError(
        `unknown CPUID feature "${name}"; known: ${Object.keys(CPUID_FEATURES).join(', ')}`,
      )
    const [leaf, reg, bit] = f
    for (const e of out) if (e.function === leaf) e[reg] = (e[reg] & ~(1 << bit)) >>> 0
  }
  for (const e of out) for (const r of ['eax', 'ebx', 'ecx', 'edx'] as const) e[r] >>>= 0
  return out
}

/** MSRs a 64-bit kernel expects zeroed or at their architectural reset values (SDM Vol. 4). */
export const BOOT_MSRS: readonly { index: number; data: bigint }[] = [
  { index: 0x174, data: 0n }, // IA32_SYSENTER_CS
  { index: 0x175, data: 0n }, // IA32_SYSENTER_ESP
  { index: 0x176, data: 0n }, // IA32_SYSENTER_EIP
  { index: 0xc0000081, data: 0n }, // STAR
  { index: 0xc0000082, data: 0n }, // LSTAR
  { index: 0xc0000083, data: 0n }, // CSTAR
  { index: 0xc0000084, data: 0n }, // SYSCALL_MASK
  { index: 0xc0000102, data: 0n }, // KERNEL_GS_BASE
  { index: 0x10, data: 0n }, // IA32_TSC
  { index: 0x1a0, data: 1n }, // IA32_MISC_ENABLE: fast strings
  { index: 0x2ff, data: (1n << 11n) | 6n }, // IA32_MTRR_DEF_TYPE: MTRRs on, write-back by default
]

const APIC_LVT_LINT0 = 0x350
const APIC_LVT_LINT1 = 0x360
const DELIVERY_EXTINT = 7
const DELIVERY_NMI = 4

/** LINT0 as ExtINT (the 8259 in virtual-wire mode) and LINT1 as NMI, as a PC's BIOS leaves them. */
export function wireLints(lapic: Uint8Array): Uint8Array {
  const out = lapic.slice()
  const dv = new DataView(out.buffer)
  const set = (reg: number, mode: number) =>
    dv.setUint32(reg, (dv.getUint32(reg, true) & ~0x700) | (mode << 8), true)
  set(APIC_LVT_LINT0, DELIVERY_EXTINT)
  set(APIC_LVT_LINT1, DELIVERY_NMI)
  return out
}

/** Applies all of the above to one vCPU's x86 part. */
export function setupX86Vcpu(x86: X86VcpuFeatures, cpuid: readonly CpuidEntry[]): void {
  x86.setCpuid(cpuid)
  x86.setMsrs(BOOT_MSRS)
  x86.setLapic(wireLints(x86.getLapic()))
  const fpu = x86.getFpu()
  x86.setFpu({ ...fpu, fcw: 0x37f, mxcsr: 0x1f80 }) // FNINIT control word, SSE defaults
}
