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
export { deallocateFileRange, discardGuestPages, Tap, TapOffload } from './host.js'
export { hypervisorProvider, KvmHypervisor, KvmVcpu, KvmVirtualMachine } from './hypervisor.js'
export {
  completeEmulationFailure,
  type ExitFilter,
  emulated,
  type HostQuirks,
  HYPERCALL_FEATURES,
  hideHypercallFeatures,
  hostQuirks,
  isKvmPvmHost,
  kvmPvmQuirks,
  noQuirks,
} from './quirks/index.js'
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
export { EventFd, type GuestRam, Kvm, type MemoryRegion, Vcpu, type VcpuState, Vm } from './vm.js'
