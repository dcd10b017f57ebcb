// Host calls that are not KVM live in @vmm/host; re-exported so @vmm/kvm's API stays as it was.
export { deallocateFileRange, discardGuestPages, EventFd, Tap, TapOffload } from '@vmm/host'
export {
  isKvmSystemError,
  KVM_API_VERSION,
  type KvmSystemError,
  KvmUnavailableError,
  type KvmUnavailableReason,
} from './errors.js'
export {
  dispatchExit,
  type ExitAction,
  type ExitHandler,
  InternalErrorSuberror,
  KvmExitReason,
  KvmRunView,
  SystemEventType,
  type VcpuExit,
} from './exits.js'
export { hypervisorProvider, KvmHypervisor, KvmVcpu, KvmVirtualMachine, orderMsrs } from './hypervisor.js'
export { Kvm } from './kvm.js'
export type { GuestRam, MemoryRegion } from './memory.js'
export {
  completeEmulationFailure,
  type ExitFilter,
  emulated,
  type HostQuirks,
  HYPERCALL_FEATURES,
  hideHypercallFeatures,
  hideInvariantTsc,
  hostQuirks,
  isKvmPvmHost,
  kvmPvmQuirks,
  noQuirks,
} from './quirks/index.js'
/** The layout tables of the kernel structs (struct kvm_regs, kvm_irqchip, ...), to read raw state bytes. */
export * as kvmStructs from './state/index.js'
export {
  type CpuidEntry,
  type Fpu,
  KvmCap,
  type KvmCapName,
  MpState,
  type Regs,
  type Segment,
  type Sregs,
  type VcpuEvents,
  type VcpuEventsUpdate,
} from './types.js'
export { Vcpu, type VcpuState } from './vcpu.js'
export { type IrqchipId, Vm } from './vm.js'
