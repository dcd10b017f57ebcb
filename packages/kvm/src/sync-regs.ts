// The general registers through kvm_run's synchronized area (KVM_CAP_SYNC_REGS; the Linux KVM
// API document, api.rst "kvm_valid_regs / kvm_dirty_regs / s"): with KVM_SYNC_X86_REGS in
// kvm_valid_regs, KVM stores struct kvm_regs into kvm_run at every exit, and with it in
// kvm_dirty_regs it loads them from there at the next KVM_RUN. Both are plain memory in the
// kvm_run mapping JS already holds, so an exit handler that reads and changes the registers
// (the kvm_pvm emulation path, quirks/emulation.ts) costs no ioctl, and no hand-off to the vCPU
// thread and back, which bench:boot measured at ~2.5 ms per emulation failure on a loaded host.
import type { Regs } from '@vmm/core'
import type { KvmRunView } from './exits.js'
import { decode, encode } from './state/codec.js'
import { KVM_REGS } from './state/layouts.js'

// Offsets in struct kvm_run (include/uapi/linux/kvm.h, x86-64): after the 256-byte exit union.
const OFF_VALID_REGS = 288
const OFF_DIRTY_REGS = 296
const OFF_SYNC_REGS = 304 // struct kvm_sync_regs { struct kvm_regs regs; ... }
/** KVM_SYNC_X86_REGS (arch/x86/include/uapi/asm/kvm.h) */
export const KVM_SYNC_X86_REGS = 1n

export class SyncRegs {
  /** Whether KVM is storing the registers at each exit (from the exit after arm()). */
  private armed = false

  constructor(private readonly run: KvmRunView) {}

  /**
   * The registers at this exit, or undefined when KVM did not store them (the first call arms it,
   * so every later exit has them).
   */
  read(): Regs | undefined {
    if (!this.armed) {
      const dv = this.run.dv
      dv.setBigUint64(OFF_VALID_REGS, dv.getBigUint64(OFF_VALID_REGS, true) | KVM_SYNC_X86_REGS, true)
      this.armed = true
      return undefined
    }
    return decode(KVM_REGS, this.run.u8.subarray(OFF_SYNC_REGS, OFF_SYNC_REGS + KVM_REGS.size))
  }

  /** Makes `regs` the registers the vCPU resumes with (KVM loads them at its next KVM_RUN). */
  write(regs: Regs): void {
    encode(KVM_REGS, regs, this.run.u8.subarray(OFF_SYNC_REGS, OFF_SYNC_REGS + KVM_REGS.size))
    const dv = this.run.dv
    dv.setBigUint64(OFF_DIRTY_REGS, dv.getBigUint64(OFF_DIRTY_REGS, true) | KVM_SYNC_X86_REGS, true)
  }
}
