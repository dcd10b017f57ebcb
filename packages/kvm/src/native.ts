// The typed contract of the native module (src/native/binding.cc) and its loader.
// Every function here is a thin syscall wrapper; policy lives in the TypeScript around it.
import { createRequire } from 'node:module'
import type { CpuidEntry } from '@vmm/core'

export interface NativeMapping {
  /** One contiguous host mapping, seen by JS as chunks of `chunkSize` bytes (the last may be shorter). */
  buffers: ArrayBuffer[]
  chunkSize: number
  address: bigint
  /** The memfd backing the mapping, or -1 for anonymous memory. */
  fd: number
}

export interface NativeFdWatch {
  close(): void
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
  getRegs(id: number): Record<string, bigint>
  setRegs(id: number, regs: Record<string, bigint>): void
  getSregs(id: number): unknown
  setSregs(id: number, sregs: unknown): void
  getFpu(id: number): unknown
  setFpu(id: number, fpu: unknown): void
  getMsrs(id: number, indices: readonly number[]): bigint[]
  setMsrs(id: number, entries: readonly { index: number; data: bigint }[]): void
  setCpuid(id: number, entries: readonly CpuidEntry[]): void
  getCpuid(id: number): CpuidEntry[]
  getLapic(id: number): Uint8Array
  setLapic(id: number, regs: Uint8Array): void
  getMpState(id: number): number
  setMpState(id: number, state: number): void
  getVcpuEvents(id: number): unknown
  setVcpuEvents(id: number, events: unknown): void
  getTscKhz(id: number): number
}

export type NativeGsiRoute =
  | { gsi: number; type: 'irqchip'; irqchip: number; pin: number }
  | { gsi: number; type: 'msi'; addressLo: number; addressHi: number; data: number }

export interface NativeBinding {
  openSystem(path: string): number
  closeFd(fd: number): void
  apiVersion(fd: number): number
  checkExtension(fd: number, cap: number): number
  vcpuMmapSize(fd: number): number
  supportedCpuid(fd: number): CpuidEntry[]
  msrIndexList(fd: number, feature: boolean): number[]
  mapMemory(size: number | bigint, memfdName: string | null, hugepages?: boolean): NativeMapping
  unmapMemory(buffers: ArrayBuffer[]): void
  eventfd(initial?: number): number
  eventfdRead(fd: number): bigint | null
  eventfdWrite(fd: number, value?: bigint): void
  /** MADV_DONTNEED on a page-aligned range of a mapMemory chunk. */
  discardMemory(buffer: ArrayBuffer, offset: number, length: number): void
  deallocateFileRange(fd: number, offset: number, length: number, zeroOnly: boolean): void
  /** Opens (creating if needed) TAP interface `name`; the fd is non-blocking. */
  openTap(name: string, options?: { vnetHdr?: boolean }): { fd: number; name: string }
  setTapOffload(fd: number, flags: number): void
  /** Bytes read into `view`, or -1 when the fd would block. */
  readFd(fd: number, view: ArrayBufferView): number
  /** writev() of the views (one packet from a descriptor chain), or -1 when the fd would block. */
  writevFd(fd: number, views: readonly ArrayBufferView[]): number
  FdWatch: new (fd: number, onReadable: (status: number) => void, ref?: boolean) => NativeFdWatch
  Vm: new (systemFd: number, wake: () => void) => NativeVm
}

let loaded: NativeBinding | undefined

/** Loads build/Release/vmm_kvm.node, or fails loudly with what to do about it. */
export function native(): NativeBinding {
  if (loaded) return loaded
  const require = createRequire(import.meta.url)
  try {
    loaded = require('../build/Release/vmm_kvm.node') as NativeBinding
  } catch (cause) {
    throw new Error(
      '@vmm/kvm: the native module build/Release/vmm_kvm.node could not be loaded; build it with ' +
        '`pnpm --filter @vmm/kvm build:native` (needs python3, make, g++ and the Node headers)',
      { cause },
    )
  }
  return loaded
}
