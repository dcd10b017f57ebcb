// The vCPU's CPUID table: topology per vCPU and features hidden by name (Intel SDM Vol. 2A CPUID;
// KVM's leaves: Linux Documentation/virt/kvm/x86/cpuid.rst).
import type { CpuidEntry } from '@vmm/core'
import { hideHypercallFeatures, hideInvariantTsc, kvmPvmQuirks } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { vcpuCpuid } from '../src/boot/cpu.js'

const entry = (fn: number, regs: Partial<CpuidEntry> = {}): CpuidEntry => ({
  function: fn,
  index: 0,
  flags: 0,
  eax: 0,
  ebx: 0,
  ecx: 0,
  edx: 0,
  ...regs,
})
// What this kvm_pvm host's KVM_GET_SUPPORTED_CPUID says for the KVM leaves, and a leaf 1.
const supported = [
  entry(1, { ecx: 0x81202000 | (1 << 23) | (1 << 13), ebx: 0x800 }),
  entry(0x40000000, { eax: 0x40000001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d }),
  entry(0x40000001, { eax: 0b1_0000_0000_0111_1110_1111_1011 }),
]
const leaf = (t: CpuidEntry[], fn: number) => t.find((e) => e.function === fn)!

describe('vcpuCpuid', () => {
  it('gives each vCPU its APIC id and the hypervisor bit', () => {
    const t = vcpuCpuid(supported, 1, 2)
    expect(leaf(t, 1).ebx >>> 24).toBe(1)
    expect(leaf(t, 1).ecx >>> 31).toBe(1)
  })

  it('hides named features, KVM paravirtual ones included, and leaves the rest', () => {
    const t = vcpuCpuid(supported, 0, 2, ['popcnt', 'kvm-pv-send-ipi'])
    expect(leaf(t, 1).ecx & (1 << 23)).toBe(0)
    expect(leaf(t, 1).ecx & (1 << 13)).not.toBe(0)
    expect(leaf(t, 0x40000001).eax).toBe(0b1_0000_0000_0111_0110_1111_1011)
  })

  it('on kvm_pvm hosts hides every feature that issues hypercalls: PV unhalt, send-IPI, sched-yield', () => {
    // The KVM adapter's CPUID policy there (@vmm/kvm quirks), over what the board computed.
    const t = hideHypercallFeatures(vcpuCpuid(supported, 0, 2))
    const kvm = leaf(t, 0x40000001).eax
    for (const bit of [7, 11, 13]) expect(kvm & (1 << bit), `bit ${bit}`).toBe(0)
    // kvmclock (3), its stable bit (24) and async PF (4) stay: they are MSRs, not hypercalls.
    for (const bit of [3, 4, 24]) expect(kvm & (1 << bit), `bit ${bit}`).not.toBe(0)
  })

  it('on kvm_pvm hosts hides the invariant TSC (0x80000007 EDX[8]) so Linux keeps kvm-clock, which a pause holds', () => {
    const apm = entry(0x80000007, { edx: (1 << 8) | (1 << 7) })
    expect(leaf(hideInvariantTsc([...supported, apm]), 0x80000007).edx).toBe(1 << 7)
    const both = kvmPvmQuirks.cpuid([...supported, apm])
    expect(leaf(both, 0x80000007).edx & (1 << 8)).toBe(0)
    expect(leaf(both, 0x40000001).eax & (1 << 11)).toBe(0)
    expect(apm.edx).toBe((1 << 8) | (1 << 7)) // the input is not changed
  })

  it('names the known features when asked to hide an unknown one', () => {
    expect(() => vcpuCpuid(supported, 0, 1, ['nope'])).toThrow(
      /unknown CPUID feature "nope"; known: .*kvm-pv-send-ipi/,
    )
  })
})
