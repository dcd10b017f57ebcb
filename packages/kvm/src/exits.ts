// Reading and answering vCPU exits in place, in the vCPU's shared struct kvm_run
// (include/uapi/linux/kvm.h; offsets below are for x86-64). This is the hot path of every
// emulated device: no allocation per I/O exit, no copies, one handler call.
import type { ExitAction, ExitHandler, VcpuExit } from '@vmm/core'

/** KVM_EXIT_* (include/uapi/linux/kvm.h). */
export const KvmExitReason = {
  Unknown: 0,
  Exception: 1,
  Io: 2,
  Hypercall: 3,
  Debug: 4,
  Hlt: 5,
  Mmio: 6,
  IrqWindowOpen: 7,
  Shutdown: 8,
  FailEntry: 9,
  Intr: 10,
  InternalError: 17,
  SystemEvent: 24,
} as const

/** KVM_SYSTEM_EVENT_* */
export const SystemEventType = { 1: 'shutdown', 2: 'reset', 3: 'crash', 4: 'wakeup', 5: 'suspend' } as const

/** KVM_INTERNAL_ERROR_* suberrors. */
export const InternalErrorSuberror = {
  Emulation: 1,
  SimulEx: 2,
  DeliveryEv: 3,
  UnexpectedExitReason: 4,
} as const

// The exit and handler shapes are core's (the hypervisor interface the machine programs against);
// this package produces them from struct kvm_run.
export type { ExitAction, ExitHandler, VcpuExit } from '@vmm/core'

// struct kvm_run offsets (x86-64)
const OFF_EXIT_REASON = 8
const OFF_UNION = 32
const KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES = 1n

/**
 * Typed views over one vCPU's kvm_run mapping, made once per vCPU. Works as well over a plain
 * ArrayBuffer, which is how the dispatcher is unit-tested with fabricated exits.
 */
export class KvmRunView {
  readonly u8: Uint8Array
  readonly u32: Uint32Array
  readonly dv: DataView
  // PIO data sits at data_offset (one page in, on x86) and MMIO data at a fixed offset: cache the
  // views per (offset, length) so the hot path never allocates.
  private readonly slices = new Map<number, Uint8Array>()

  constructor(readonly buffer: ArrayBuffer) {
    this.u8 = new Uint8Array(buffer)
    this.u32 = new Uint32Array(buffer, 0, buffer.byteLength >>> 2)
    this.dv = new DataView(buffer)
  }

  get exitReason(): number {
    return this.u32[OFF_EXIT_REASON >>> 2]!
  }

  /** A cached view of `length` bytes at `offset`; throws if it would leave the mapping. */
  slice(offset: number, length: number): Uint8Array {
    const key = offset * 64 + length
    let s = this.slices.get(key)
    if (s === undefined) {
      if (offset + length > this.u8.length)
        throw new RangeError(`kvm_run access [${offset}, +${length}) out of range`)
      s = this.u8.subarray(offset, offset + length)
      this.slices.set(key, s)
    }
    return s
  }

  private u64(offset: number): bigint {
    return this.dv.getBigUint64(offset, true)
  }

  /** Decodes a non-I/O exit into a VcpuExit (allocates; these exits are rare). */
  decodeOther(reason: number): VcpuExit {
    const dv = this.dv
    switch (reason) {
      case KvmExitReason.Hlt:
        return { kind: 'hlt' }
      case KvmExitReason.Shutdown:
        return { kind: 'shutdown' }
      case KvmExitReason.Debug:
        return { kind: 'debug' }
      case KvmExitReason.IrqWindowOpen:
        return { kind: 'irq-window-open' }
      case KvmExitReason.Exception:
        return {
          kind: 'exception',
          exception: dv.getUint32(OFF_UNION, true),
          errorCode: dv.getUint32(OFF_UNION + 4, true),
        }
      case KvmExitReason.FailEntry:
        return {
          kind: 'fail-entry',
          hardwareReason: this.u64(OFF_UNION),
          cpu: dv.getUint32(OFF_UNION + 8, true),
        }
      case KvmExitReason.SystemEvent: {
        // struct { __u32 type; __u32 ndata; __u64 data[16]; }
        const type = dv.getUint32(OFF_UNION, true)
        const ndata = Math.min(dv.getUint32(OFF_UNION + 4, true), 16)
        const data: bigint[] = []
        for (let i = 0; i < ndata; i++) data.push(this.u64(OFF_UNION + 8 + i * 8))
        const name = (SystemEventType as Record<number, string>)[type] ?? `type-${type}`
        return { kind: 'system-event', type, name, data }
      }
      case KvmExitReason.InternalError: {
        // struct internal { __u32 suberror; __u32 ndata; __u64 data[16]; }, overlaid for
        // suberror EMULATION by struct emulation_failure { suberror; ndata; __u64 flags;
        // __u8 insn_size; __u8 insn_bytes[15]; } (Documentation/virt/kvm/api.rst).
        const suberror = dv.getUint32(OFF_UNION, true)
        const ndata = Math.min(dv.getUint32(OFF_UNION + 4, true), 16)
        const data: bigint[] = []
        for (let i = 0; i < ndata; i++) data.push(this.u64(OFF_UNION + 8 + i * 8))
        let instructionBytes = new Uint8Array(0)
        if (
          suberror === InternalErrorSuberror.Emulation &&
          ndata >= 3 &&
          (data[0]! & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) !== 0n
        ) {
          const size = Math.min(this.u8[OFF_UNION + 16]!, 15)
          instructionBytes = this.u8.slice(OFF_UNION + 17, OFF_UNION + 17 + size)
        }
        return { kind: 'internal-error', suberror, instructionBytes, data }
      }
      default:
        return { kind: 'unknown', reason, hardwareReason: this.u64(OFF_UNION) }
    }
  }
}

/**
 * Handles one KVM exit found in `run`: port and MMIO accesses go straight to the handler with a
 * view into kvm_run (a read's answer is written there, where KVM picks it up on the next
 * KVM_RUN); everything else is decoded and given to handler.onExit. A plain function, so tests
 * can drive it with fabricated exits.
 */
export function dispatchExit<V>(run: KvmRunView, handler: ExitHandler<V>, vcpu: V): ExitAction {
  const u8 = run.u8
  const reason = run.u32[OFF_EXIT_REASON >>> 2]!
  if (reason === KvmExitReason.Io) {
    // struct { __u8 direction; __u8 size; __u16 port; __u32 count; __u64 data_offset; }
    const out = u8[OFF_UNION] === 1
    const size = u8[OFF_UNION + 1]!
    const port = u8[OFF_UNION + 2]! | (u8[OFF_UNION + 3]! << 8)
    const count = run.u32[(OFF_UNION + 4) >>> 2]!
    const offset = run.u32[(OFF_UNION + 8) >>> 2]!
    // String I/O (rep ins/outs) arrives as `count` consecutive elements of `size` bytes.
    for (let i = 0; i < count; i++) {
      const data = run.slice(offset + i * size, size)
      if (out) handler.pioOut(port, data, vcpu)
      else handler.pioIn(port, data, vcpu)
    }
    return 'resume'
  }
  if (reason === KvmExitReason.Mmio) {
    // struct { __u64 phys_addr; __u8 data[8]; __u32 len; __u8 is_write; }
    const address = run.u32[OFF_UNION >>> 2]! + run.u32[(OFF_UNION + 4) >>> 2]! * 0x1_0000_0000
    const len = Math.min(run.u32[(OFF_UNION + 16) >>> 2]!, 8)
    const data = run.slice(OFF_UNION + 8, len)
    if (u8[OFF_UNION + 20] !== 0) handler.mmioWrite(address, data, vcpu)
    else handler.mmioRead(address, data, vcpu)
    return 'resume'
  }
  if (reason === KvmExitReason.Intr) return 'resume' // a signal that was not a kick
  return handler.onExit(run.decodeOther(reason), vcpu)
}
