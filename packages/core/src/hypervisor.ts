// The hypervisor as the machine sees it. Core imports no native code: packages/kvm implements this
// against /dev/kvm and testing/test-hypervisor.ts implements it in-process for tests. The shapes
// follow KVM's (struct kvm_regs / kvm_sregs, KVM_EXIT_*) so the KVM adapter is a thin pass-through.
//
// What a hypervisor may or may not offer is a typed optional part of VirtualMachine or Vcpu
// (`vm.notifiers`, `vm.msiRouting`, `vm.x86`, `vm.dirtyLog`, `vm.bootPolicy`, `vm.vcpuSeccomp`, `vcpu.x86`; the
// parts are in hypervisor-features.ts): present when this hypervisor, on this host, has it.
// Consumers ask `if (vm.notifiers)`, never the class or the shape of an implementation (the model
// is Cloud Hypervisor's hypervisor::Vm / hypervisor::Vcpu traits).

import type { GuestAddress } from './address.js'
import type {
  BootPolicy,
  DirtyLog,
  GsiRouting,
  VcpuSeccomp,
  VmNotifiers,
  X86VcpuFeatures,
  X86VmFeatures,
} from './hypervisor-features.js'

export type * from './hypervisor-features.js'

/** How the CLI and embedders obtain a hypervisor without core importing it (loaded lazily). */
export interface HypervisorProvider {
  open(): Hypervisor | Promise<Hypervisor>
}

export interface Hypervisor {
  /** For messages: "kvm", "test". */
  readonly name: string
  createVm(): VirtualMachine
  dispose(): void
}

/** Host memory for guest RAM: one contiguous mapping seen as ArrayBuffer chunks (see RamBacking). */
export interface RamMapping {
  readonly buffers: readonly ArrayBuffer[]
  readonly chunkSize: number
  readonly size: number
  /**
   * Gives [offset, +length) (page-aligned) back to the host so that it reads as zeroes afterwards,
   * whatever backs the mapping (anonymous memory, a memfd, a snapshot's memory file mapped
   * MAP_PRIVATE, where dropping the pages alone would read the file's bytes again). Returns false
   * where the pages were dropped but read as the file's bytes (the provider's limit on separate
   * ranges, see @vmm/kvm). Absent: RamBacking zeroes the bytes instead.
   */
  discard?(offset: number, length: number): boolean
}

/** A KVM memory slot: guest [guestAddress, +size) backed by `mapping` from `mappingOffset`. */
export interface MemorySlot {
  readonly slot: number
  readonly guestAddress: GuestAddress
  /** 0 deletes the slot (KVM_SET_USER_MEMORY_REGION semantics). */
  readonly size: number
  readonly mapping: RamMapping
  readonly mappingOffset: number
  /** KVM_MEM_READONLY: guest writes become MMIO exits. */
  readonly readOnly: boolean
}

export interface VirtualMachine {
  /** Maps `size` bytes of zeroed host memory for guest RAM; unmapped on dispose. */
  mapRam(size: number): RamMapping
  /**
   * Guest RAM from a snapshot's memory file, mapped MAP_PRIVATE: pages load on first touch, guest
   * writes are copy-on-write, the file is never written. Absent where the hypervisor cannot.
   */
  mapRamFromFile?(size: number, file: string): RamMapping
  setMemorySlot(slot: MemorySlot): void
  /** Creates the in-kernel interrupt controllers (PIC, IOAPIC; KVM_CREATE_IRQCHIP) and PIT. */
  createIrqchip(): void
  /** Drives an irqchip input (KVM_IRQ_LINE); needs createIrqchip first. */
  setIrqLine(irq: number, level: boolean): void
  createVcpu(id: number): Vcpu
  /** Releases vCPUs, slots and mappings; calling it twice is harmless. */
  dispose(): void
  /** Guest writes that signal the VMM without a vCPU exit, and interrupts raised without a call
   * into the irqchip (KVM ioeventfd / irqfd). */
  readonly notifiers?: VmNotifiers
  /** The GSI routing table (KVM_SET_GSI_ROUTING): how MSI messages reach the CPUs. */
  readonly msiRouting?: GsiRouting
  /** x86 VM-level parts: the CPUID the host supports, clock, irqchip and PIT state. */
  readonly x86?: X86VmFeatures
  /** Which guest pages were written since the last look (for live migration and snapshots). */
  readonly dirtyLog?: DirtyLog
  /** What this hypervisor, on this host, asks of boot loaders (e.g. an uncompressed initrd). */
  readonly bootPolicy?: BootPolicy
  /** Confining the hypervisor's vCPU threads with a seccomp filter of their own. */
  readonly vcpuSeccomp?: VcpuSeccomp
}

export interface Vcpu {
  readonly id: number
  getRegs(): Regs
  setRegs(regs: Regs): void
  getSregs(): Sregs
  setSregs(sregs: Sregs): void
  /**
   * Runs the vCPU until `handler.onExit` answers 'stop', and resolves with that exit. Port and MMIO
   * accesses go to the handler's other methods and the vCPU resumes after each. Never rejects: a
   * failed KVM_RUN arrives as an exit of kind 'error'.
   */
  run(handler: ExitHandler): Promise<VcpuExit>
  /** Makes a running vCPU leave the guest soon with an exit of kind 'kick' (for pause and stop). */
  kick(): void
  /** x86 vCPU state beyond the registers: CPUID, MSRs, LAPIC, FPU, events, the whole state. */
  readonly x86?: X86VcpuFeatures
}

/** Exits that are not port or MMIO accesses, handed to ExitHandler.onExit. */
export type VcpuExit =
  | { kind: 'hlt' }
  /** Triple fault. */
  | { kind: 'shutdown' }
  /** KVM_EXIT_SYSTEM_EVENT: name is shutdown, reset, crash, wakeup or suspend. */
  | { kind: 'system-event'; type: number; name: string; data: bigint[] }
  /** KVM could not go on; for an emulation failure, the instruction bytes it could not emulate. */
  | { kind: 'internal-error'; suberror: number; instructionBytes: Uint8Array; data: bigint[] }
  | { kind: 'fail-entry'; hardwareReason: bigint; cpu: number }
  | { kind: 'exception'; exception: number; errorCode: number }
  | { kind: 'debug' }
  | { kind: 'irq-window-open' }
  | { kind: 'unknown'; reason: number; hardwareReason: bigint }
  /** The vCPU was kicked out of the guest (pause or stop requested). */
  | { kind: 'kick' }
  /** Running the vCPU failed (KVM_RUN returned an error). */
  | { kind: 'error'; code: string; errno: number }
  /** The VM was disposed while the vCPU ran. */
  | { kind: 'disposed' }

export type ExitAction = 'resume' | 'stop'

/**
 * What a vCPU needs from the devices. Port and MMIO accesses get a caller-owned `data` view whose
 * length is the access size: a read fills it, a write reads it. Handlers must not keep `data`.
 */
export interface ExitHandler<V = Vcpu> {
  pioIn(port: number, data: Uint8Array, vcpu: V): void
  pioOut(port: number, data: Uint8Array, vcpu: V): void
  mmioRead(address: number, data: Uint8Array, vcpu: V): void
  mmioWrite(address: number, data: Uint8Array, vcpu: V): void
  onExit(exit: VcpuExit, vcpu: V): ExitAction
}

/** struct kvm_regs (x86-64). */
export interface Regs {
  rax: bigint
  rbx: bigint
  rcx: bigint
  rdx: bigint
  rsi: bigint
  rdi: bigint
  rsp: bigint
  rbp: bigint
  r8: bigint
  r9: bigint
  r10: bigint
  r11: bigint
  r12: bigint
  r13: bigint
  r14: bigint
  r15: bigint
  rip: bigint
  rflags: bigint
}

/** struct kvm_segment. */
export interface Segment {
  base: bigint
  limit: number
  selector: number
  type: number
  present: number
  dpl: number
  db: number
  s: number
  l: number
  g: number
  avl: number
  unusable: number
}

/** struct kvm_dtable. */
export interface DescriptorTable {
  base: bigint
  limit: number
}

/** struct kvm_sregs (x86-64). */
export interface Sregs {
  cs: Segment
  ds: Segment
  es: Segment
  fs: Segment
  gs: Segment
  ss: Segment
  tr: Segment
  ldt: Segment
  gdt: DescriptorTable
  idt: DescriptorTable
  cr0: bigint
  cr2: bigint
  cr3: bigint
  cr4: bigint
  cr8: bigint
  efer: bigint
  apic_base: bigint
  interrupt_bitmap: bigint[]
}

/** One CPUID leaf as KVM exchanges it (struct kvm_cpuid_entry2); boards set them per vCPU. */
export interface CpuidEntry {
  function: number
  index: number
  /** KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1 */
  flags: number
  eax: number
  ebx: number
  ecx: number
  edx: number
}
