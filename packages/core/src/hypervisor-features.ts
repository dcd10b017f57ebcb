// The optional parts of VirtualMachine and Vcpu (hypervisor.ts): what a hypervisor may offer
// beyond running vCPUs and mapping memory. Each part is present only where the hypervisor, on this
// host, has it (the KVM adapter asks KVM_CHECK_EXTENSION); the in-process test hypervisor offers
// what it can do in-process. The shapes follow KVM's (Documentation/virt/kvm/api.rst), in core's
// own names, so that a second hypervisor can fill them and consumers never name @vmm/kvm.

import type { CpuidEntry, Regs, Sregs } from './hypervisor.js'

/** A registration to undo when its user goes away. */
export interface Registration {
  dispose(): void
}

/**
 * Which guest writes ring a doorbell (KVM_IOEVENTFD): `length` bytes at guest physical `address`
 * (a port when `space` is 'pio'), and when `datamatch` is given only writes of that value.
 */
export interface Doorbell {
  readonly address: number
  readonly length: 1 | 2 | 4 | 8
  readonly datamatch?: bigint
  /** 'mmio' unless told. */
  readonly space?: 'mmio' | 'pio'
}

/** An interrupt raised without going through VirtualMachine.setIrqLine (KVM irqfd). */
export interface InterruptTrigger extends Registration {
  /** One edge on the line. */
  trigger(): void
}

/** ioeventfd- and irqfd-style shortcuts past the vCPU exit path (Cloud Hypervisor: register_ioevent, register_irqfd). */
export interface VmNotifiers {
  /**
   * Calls `onWrite` on the event loop after the guest's write the doorbell describes; that write
   * no longer exits to user space. Undefined when the hypervisor cannot take this one (no
   * ioeventfd on this host, or another doorbell already sits at that address): the write then
   * traps as before.
   */
  doorbell(doorbell: Doorbell, onWrite: () => void): Registration | undefined
  /** An edge-triggered interrupt on `gsi`; undefined where the host has no irqfd. */
  interrupt(gsi: number): InterruptTrigger | undefined
}

/** One entry of the GSI routing table (struct kvm_irq_routing_entry). */
export type GsiRoute =
  /** `pin` of interrupt controller `irqchip` (KVM: 0 PIC master, 1 PIC slave, 2 IOAPIC). */
  | { gsi: number; type: 'irqchip'; irqchip: number; pin: number }
  /** An MSI message (PCI 3.0 §6.8): the address split in halves, and the data. */
  | { gsi: number; type: 'msi'; addressLo: number; addressHi: number; data: number }

/** The GSI routing table; MSI reaches the CPUs by a route plus an interrupt trigger on its GSI. */
export interface GsiRouting {
  /** Replaces the whole table (KVM_SET_GSI_ROUTING), the irqchip's default routes included. */
  setRoutes(routes: readonly GsiRoute[]): void
}

/**
 * Hypervisor-private state saved and restored whole: a snapshot keeps the bytes and gives them back
 * to the same hypervisor; nothing else reads them.
 */
export interface OpaqueState {
  get(): Uint8Array
  set(state: Uint8Array): void
}

/** x86 VM-level parts. */
export interface X86VmFeatures {
  /** The CPUID table the host lets a guest see (KVM_GET_SUPPORTED_CPUID); boards start from it. */
  supportedCpuid(): CpuidEntry[]
  /** The guest's clock (KVM_GET/SET_CLOCK, kvmclock's time base). */
  readonly clock?: OpaqueState
  /** The in-kernel PIC and IOAPIC (KVM_GET/SET_IRQCHIP), when the VM has an in-kernel irqchip. */
  readonly irqchip?: OpaqueState
  /** The in-kernel PIT (KVM_GET/SET_PIT2). */
  readonly pit?: OpaqueState
  /** The in-kernel 8259A pair, when the VM has an in-kernel irqchip. */
  readonly pics?: LegacyPics
}

/** The two 8259A PICs of a PC (master on IRQs 0-7, slave cascaded on the master's IRQ 2). */
export interface LegacyPics {
  /**
   * Puts both in the state a PC's firmware hands an OS loader (SeaBIOS's pic_setup): initialised
   * (ICW1-4: edge triggered, cascaded, 8086 mode), vectors 0x08 and 0x70, every input masked but
   * the master's cascade. The power-on state (vector base 0, nothing masked) turns any ISA
   * interrupt that reaches a CPU through LINT0 into a CPU exception vector; an OS that uses the
   * 8259s programs them again, one that does not (Linux on hardware-reduced ACPI) never sees them.
   */
  firmwareInit(): void
}

/** Pages written since the last `take` of a slot, for live migration and incremental snapshots. */
export interface DirtyLog {
  /** Starts (or stops) logging writes to memory slot `slot` (KVM_MEM_LOG_DIRTY_PAGES). */
  track(slot: number, enabled: boolean): void
  /** One bit per page of the slot, set for pages written since the last call; clears them (KVM_GET_DIRTY_LOG). */
  take(slot: number): Uint8Array
}

/**
 * A seccomp filter for the vCPU threads (KVM: threads of the hypervisor's own that run only native
 * code), which a sandbox stacks on its process-wide filter: each vCPU thread installs the program
 * on itself, since seccomp(2) filters the calling thread unless asked to synchronise them all.
 */
export interface VcpuSeccomp {
  /**
   * `program` is struct sock_filter[] (classic BPF, Documentation/userspace-api/seccomp_filter.rst).
   * A vCPU that is not in the guest installs it before this returns (a failure throws); one in the
   * guest installs it before it enters the guest again, and a vCPU created later before its first
   * entry.
   */
  confine(program: Uint8Array): void
}

/** What the hypervisor, on this host, asks of boot loaders. */
export interface BootPolicy {
  /**
   * Hand the guest an uncompressed initrd: inflating it in the guest is too slow here (on kvm_pvm
   * hosts guest kernel code runs through KVM's instruction emulator).
   */
  readonly prefersUncompressedInitrd: boolean
}

/** struct kvm_fpu (x86-64). */
export interface Fpu {
  /** 8 x87 registers, 16 bytes each. */
  fpr: Uint8Array
  fcw: number
  fsw: number
  ftwx: number
  lastOpcode: number
  lastIp: bigint
  lastDp: bigint
  /** 16 XMM registers, 16 bytes each. */
  xmm: Uint8Array
  mxcsr: number
}

/** struct kvm_vcpu_events: exceptions, interrupts and NMIs in flight. */
export interface VcpuEvents {
  exception: { injected: number; nr: number; hasErrorCode: number; pending: number; errorCode: number }
  interrupt: { injected: number; nr: number; soft: number; shadow: number }
  nmi: { injected: number; pending: number; masked: number }
  sipiVector: number
  flags: number
}

/** Parts of VcpuEvents to set; what is left out keeps its current value. */
export interface VcpuEventsUpdate {
  exception?: VcpuEvents['exception']
  interrupt?: VcpuEvents['interrupt']
  nmi?: VcpuEvents['nmi']
  sipiVector?: number
}

/** One model-specific register. */
export interface MsrEntry {
  index: number
  data: bigint
}

/** One extended control register (struct kvm_xcr). */
/**
 * A vCPU's whole x86 state, for pause-and-save and restore: what Cloud Hypervisor's CpuState holds.
 * The optional members are what not every host can read (XSAVE, XCRs, debug registers); restoring
 * sets what is there.
 */
export interface X86VcpuState {
  regs: Regs
  sregs: Sregs
  fpu: Fpu
  /** The 1 KiB LAPIC register page (struct kvm_lapic_state). */
  lapic: Uint8Array
  msrs: MsrEntry[]
  /** KVM_MP_STATE_*: runnable, halted, waiting for INIT/SIPI... */
  mpState: number
  events: VcpuEvents
  /** struct kvm_xsave (or the larger KVM_GET_XSAVE2 area), opaque to everything but the hypervisor. */
  xsave?: Uint8Array
  /** struct kvm_xcrs, opaque. */
  xcrs?: Uint8Array
  /** struct kvm_debugregs, opaque. */
  debugRegs?: Uint8Array
  /** The CPUID table the vCPU was given (restore sets it first: it is not in the manifest's load). */
  cpuid?: CpuidEntry[]
  /** The guest TSC's frequency in kHz when the state was taken; a restore checks the host's. */
  tscKhz?: number
}

/** x86 vCPU parts beyond the registers of Vcpu. */
export interface X86VcpuFeatures {
  setCpuid(entries: readonly CpuidEntry[]): void
  getCpuid(): CpuidEntry[]
  /** Reads the MSRs named; throws when one cannot be read. */
  getMsrs(indices: readonly number[]): bigint[]
  setMsrs(entries: readonly MsrEntry[]): void
  /** The 1 KiB LAPIC register page. */
  getLapic(): Uint8Array
  setLapic(page: Uint8Array): void
  getFpu(): Fpu
  setFpu(fpu: Fpu): void
  getMpState(): number
  setMpState(state: number): void
  getEvents(): VcpuEvents
  setEvents(update: VcpuEventsUpdate): void
  /** Injects exception `vector` (3 for #BP, 6 for #UD) at the next entry. */
  injectException(vector: number, errorCode?: number): void
  /** The guest TSC's frequency in kHz. */
  tscKhz(): number
  /** The whole state, for save (the vCPU must not be running). */
  getState(): X86VcpuState
  /** Restores what getState returned (the vCPU must not be running). */
  setState(state: X86VcpuState): void
}
