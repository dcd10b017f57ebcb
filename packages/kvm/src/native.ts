// The typed contract of the native module (src/native/*.cc) and its loader.
// Every function here is a thin syscall wrapper; policy lives in the TypeScript around it. Kernel
// structs cross as whole buffers (ArrayBuffer out, Uint8Array in) that src/state/ decodes.
import { fileURLToPath } from 'node:url'
import { loadAddon } from '@vmm/host'

export interface NativeMapping {
  /** One contiguous host mapping, seen by JS as chunks of `chunkSize` bytes (the last may be shorter). */
  buffers: ArrayBuffer[]
  chunkSize: number
  address: bigint
  /** The memfd backing the mapping, or -1 for anonymous memory. */
  fd: number
}

/** Exit kinds that poll() packs above the vCPU id (binding.cc ExitKind). */
export const enum NativeExitKind {
  Kvm = 0,
  Kick = 1,
  Error = 2,
}

export interface NativeVm {
  setUserMemoryRegion(
    slot: number,
    flags: number,
    guestAddress: bigint,
    size: bigint,
    hostAddress: bigint,
  ): void
  createIrqchip(): void
  createPit2(flags: number): void
  setTssAddr(address: number): void
  setIdentityMapAddr(address: bigint): void
  irqLine(irq: number, level: number): void
  getClock(): bigint
  setClock(ns: bigint): void
  ioeventfd(o: {
    fd: number
    address: bigint
    length: number
    datamatch?: bigint | null
    pio: boolean
    deassign: boolean
  }): void
  irqfd(o: { fd: number; gsi: number; resampleFd?: number | null; deassign: boolean }): void
  setGsiRouting(entries: readonly NativeGsiRoute[]): void
  checkExtension(cap: number): number
  enableCap(cap: number, args?: readonly bigint[]): void
  /** Creates the vCPU on a new named thread; returns its kvm_run mapping. */
  createVcpu(id: number, threadName: string): ArrayBuffer
  start(id: number): void
  /** -1, or kind * 65536 + id of a vCPU whose exit now belongs to JS. */
  poll(spinNs: number): number
  complete(id: number, resume: boolean): void
  /** complete(id, true) then poll(spinNs), in one call. */
  resumeAndPoll(id: number, spinNs: number): number
  arm(): boolean
  kick(id: number): boolean
  exitErrno(id: number): number
  keepAlive(on: boolean): void
  dispose(): void
  // vcpu_seccomp.cc
  /** Each vCPU thread installs the seccomp program on itself (now when stopped, else before its next KVM_RUN). */
  setVcpuFilter(program: Uint8Array): void
  // VM state blobs (vm.cc): each the kernel struct whole
  /** struct kvm_irqchip of chip 0 (PIC master), 1 (PIC slave) or 2 (IOAPIC). */
  getIrqchip(chip: number): ArrayBuffer
  setIrqchip(bytes: Uint8Array): void
  /** struct kvm_pit_state2. */
  getPit2(): ArrayBuffer
  setPit2(bytes: Uint8Array): void
  /** The slot's dirty bitmap, one bit per page, sized from the slot as it was registered. */
  getDirtyLog(slot: number): ArrayBuffer
  // vCPU state (vcpu_state.cc), run on the vCPU's thread while it is stopped
  /** The struct named `struct` (e.g. 'kvm_regs') as KVM_GET_* wrote it. */
  getVcpuState(id: number, struct: NativeVcpuStruct): ArrayBuffer
  /** KVM_SET_* of the struct named `struct`; `bytes` must be exactly its size. */
  setVcpuState(id: number, struct: NativeVcpuStruct, bytes: Uint8Array): void
  /** KVM_GET_MSRS / KVM_SET_MSRS on a struct kvm_msrs (a get fills `bytes` in); entries processed. */
  msrs(id: number, set: boolean, bytes: Uint8Array): number
  /** KVM_SET_CPUID2 with an array of struct kvm_cpuid_entry2. */
  setCpuid(id: number, entries: Uint8Array): void
  /** KVM_GET_CPUID2: an array of struct kvm_cpuid_entry2. */
  getCpuid(id: number): ArrayBuffer
  getTscKhz(id: number): number
}

/** The vCPU structs getVcpuState/setVcpuState move (vcpu_state.cc kStates). */
export type NativeVcpuStruct =
  | 'kvm_regs'
  | 'kvm_sregs'
  | 'kvm_fpu'
  | 'kvm_vcpu_events'
  | 'kvm_lapic_state'
  | 'kvm_mp_state'
  | 'kvm_xsave'
  | 'kvm_xcrs'
  | 'kvm_debugregs'

export type NativeGsiRoute =
  | { gsi: number; type: 'irqchip'; irqchip: number; pin: number }
  | { gsi: number; type: 'msi'; addressLo: number; addressHi: number; data: number }

export interface NativeBinding {
  openSystem(path: string): number
  closeFd(fd: number): void
  apiVersion(fd: number): number
  checkExtension(fd: number, cap: number): number
  vcpuMmapSize(fd: number): number
  /** An array of struct kvm_cpuid_entry2. */
  supportedCpuid(fd: number): ArrayBuffer
  msrIndexList(fd: number, feature: boolean): number[]
  /** sizeof each struct src/state/layouts.ts lays out, as the C++ compiler sees linux/kvm.h. */
  structSizes: Record<string, number>
  /** With `file`: MAP_PRIVATE over that file (copy-on-write, the file never written). */
  mapMemory(
    size: number | bigint,
    memfdName: string | null,
    hugepages?: boolean,
    file?: string,
  ): NativeMapping
  unmapMemory(buffers: ArrayBuffer[]): void
  /** Gives [offset, +length) of a mapping back so it reads as zeroes; false: only dropped (memory.cc). */
  discardMemory(buffers: readonly ArrayBuffer[], offset: number, length: number): boolean
  Vm: new (systemFd: number, wake: () => void) => NativeVm
}

let loaded: NativeBinding | undefined

/** Loads the native module (build/Release or prebuilds/<platform>-<arch>), or fails loudly with what to do about it. */
export function native(): NativeBinding {
  loaded ??= loadAddon<NativeBinding>('@vmm/kvm', fileURLToPath(new URL('..', import.meta.url)), 'vmm_kvm')
  return loaded
}
