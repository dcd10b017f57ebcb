// vCPU state as KVM exchanges it (include/uapi/asm/kvm.h, x86-64), with 64-bit fields as bigint.
// The register and state shapes every hypervisor shares come from core (hypervisor-features.ts);
// the rest is KVM's own.

export type {
  CpuidEntry,
  DescriptorTable,
  Fpu,
  Regs,
  Segment,
  Sregs,
  VcpuEvents,
  VcpuEventsUpdate,
} from '@vmm/core'

/** KVM_MP_STATE_* */
export const MpState = { Runnable: 0, Uninitialized: 1, InitReceived: 2, Halted: 3, SipiReceived: 4 } as const

/** KVM_CAP_* numbers this package asks about (include/uapi/linux/kvm.h). */
export const KvmCap = {
  Irqchip: 0,
  Hlt: 1,
  UserMemory: 3,
  SetTssAddr: 4,
  Vapic: 6,
  NrVcpus: 9,
  NrMemslots: 10,
  Pit: 11,
  CoalescedMmio: 15,
  IrqRouting: 25,
  Irqfd: 32,
  Pit2: 33,
  Ioeventfd: 36,
  SetIdentityMapAddr: 37,
  AdjustClock: 39,
  VcpuEvents: 41,
  SignalMsi: 65,
  MaxVcpus: 66,
  GetTscKhz: 61,
  IrqfdResample: 82,
  ImmediateExit: 136,
  SplitIrqchip: 121,
  X2apicApi: 129,
  IoeventfdAnyLength: 167,
  ExitOnEmulationFailure: 204,
} as const
export type KvmCapName = keyof typeof KvmCap
