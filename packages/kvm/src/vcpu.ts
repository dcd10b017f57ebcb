// A vCPU (src/native/vcpu.cc, vcpu_state.cc): running it on its own thread until an exit handler
// says stop, kicking it, and its state. Each state call moves one kernel struct whole (one native
// call, one buffer) and decodes or encodes it with its layout table (src/state/layouts.ts).
import { kvmSystemError } from './errors.js'
import { exitStats } from './exit-stats.js'
import { type ExitHandler, KvmRunView, type VcpuExit } from './exits.js'
import type { NativeVm } from './native.js'
import { decode, encode } from './state/codec.js'
import {
  decodeCpuid,
  decodeMsrs,
  encodeCpuid,
  encodeMsrs,
  KVM_FPU,
  KVM_MP_STATE,
  KVM_REGS,
  KVM_SREGS,
  KVM_VCPU_EVENTS,
  VcpuEventValid,
} from './state/layouts.js'
import { SyncRegs } from './sync-regs.js'
import type { CpuidEntry, Fpu, Regs, Sregs, VcpuEvents, VcpuEventsUpdate } from './types.js'
import type { Vm } from './vm.js'

export type VcpuState = 'idle' | 'running'

export class Vcpu {
  readonly runView: KvmRunView
  private state_: VcpuState = 'idle'
  private settle: { resolve: (e: VcpuExit) => void; reject: (e: unknown) => void } | undefined
  /** @internal the handler of the current run, wrapped to remember the stopping exit */
  handlerProxy: ExitHandler<Vcpu> | undefined
  /** @internal */
  lastExit: VcpuExit | undefined
  private readonly syncRegs: SyncRegs | undefined

  /** @internal use Vm.createVcpu() */
  constructor(
    readonly vm: Vm,
    private readonly nvm: NativeVm,
    readonly id: number,
    run: ArrayBuffer,
    syncRegs = false,
  ) {
    this.runView = new KvmRunView(run)
    if (syncRegs) this.syncRegs = new SyncRegs(this.runView)
  }

  get state(): VcpuState {
    return this.state_
  }

  /**
   * Runs the vCPU until an exit handler says 'stop', kick() stops it, KVM_RUN fails, or the VM
   * is disposed; resolves with that exit. Rejects if a handler throws (the vCPU is stopped).
   */
  run(handler: ExitHandler<Vcpu>): Promise<VcpuExit> {
    if (this.state_ !== 'idle') return Promise.reject(new Error(`vCPU ${this.id} is already running`))
    this.lastExit = undefined
    const proxy: ExitHandler<Vcpu> = {
      pioIn: handler.pioIn.bind(handler),
      pioOut: handler.pioOut.bind(handler),
      mmioRead: handler.mmioRead.bind(handler),
      mmioWrite: handler.mmioWrite.bind(handler),
      onExit: (exit, vcpu) => {
        this.lastExit = exit
        return handler.onExit(exit, vcpu)
      },
    }
    this.handlerProxy = exitStats ? exitStats.wrap(proxy) : proxy
    const done = new Promise<VcpuExit>((resolve, reject) => {
      this.settle = { resolve, reject }
    })
    this.nvm.start(this.id)
    this.state_ = 'running'
    this.vm.vcpuStarted()
    return done
  }

  /** Kicks the vCPU out of the guest (for pause and stop); its run() resolves with { kind: 'kick' }. */
  kick(): void {
    if (this.state_ === 'running') this.nvm.kick(this.id)
  }

  /** @internal */
  finish(exit: VcpuExit | undefined, error?: unknown): void {
    if (this.state_ !== 'running') return
    this.state_ = 'idle'
    this.handlerProxy = undefined
    this.vm.vcpuStopped()
    const s = this.settle!
    this.settle = undefined
    if (exit) s.resolve(exit)
    else s.reject(error)
  }

  // State access: allowed while the vCPU is idle or inside one of its exit handlers (the ioctls
  // run on the vCPU's own thread either way).
  getRegs(): Regs {
    return decode(KVM_REGS, this.nvm.getVcpuState(this.id, 'kvm_regs'))
  }
  setRegs(regs: Regs): void {
    this.nvm.setVcpuState(this.id, 'kvm_regs', encode(KVM_REGS, regs))
  }
  /**
   * For an exit handler that changes the registers and resumes (no other state access between):
   * the registers at this exit and the way to set them, through kvm_run's synchronized area when
   * KVM offers it (sync-regs.ts: no ioctl), else getRegs/setRegs.
   */
  exitRegs(): Regs {
    return this.syncRegs?.read() ?? this.getRegs()
  }
  setExitRegs(regs: Regs): void {
    if (this.syncRegs) this.syncRegs.write(regs)
    else this.setRegs(regs)
  }
  getSregs(): Sregs {
    return decode(KVM_SREGS, this.nvm.getVcpuState(this.id, 'kvm_sregs'))
  }
  setSregs(sregs: Sregs): void {
    this.nvm.setVcpuState(this.id, 'kvm_sregs', encode(KVM_SREGS, sregs))
  }
  getFpu(): Fpu {
    return decode(KVM_FPU, this.nvm.getVcpuState(this.id, 'kvm_fpu'))
  }
  setFpu(fpu: Fpu): void {
    this.nvm.setVcpuState(this.id, 'kvm_fpu', encode(KVM_FPU, fpu))
  }
  /** KVM_GET_MSRS; throws naming the first MSR KVM does not have. */
  getMsrs(indices: readonly number[]): bigint[] {
    const msrs = encodeMsrs(indices.map((index) => ({ index })))
    const got = this.nvm.msrs(this.id, false, msrs)
    if (got < indices.length)
      throw kvmSystemError(
        'KVM_GET_MSRS',
        'EINVAL',
        `KVM_GET_MSRS: MSR 0x${hex(indices[got]!)} is not supported`,
      )
    return decodeMsrs(msrs).map((e) => e.data)
  }
  /** KVM_SET_MSRS; throws naming the first MSR KVM refused. */
  setMsrs(entries: readonly { index: number; data: bigint }[]): void {
    const got = this.nvm.msrs(this.id, true, encodeMsrs(entries))
    if (got < entries.length)
      throw kvmSystemError(
        'KVM_SET_MSRS',
        'EINVAL',
        `KVM_SET_MSRS: MSR 0x${hex(entries[got]!.index)} was refused`,
      )
  }
  setCpuid(entries: readonly CpuidEntry[]): void {
    this.nvm.setCpuid(this.id, encodeCpuid(entries.slice(0, 256)))
  }
  getCpuid(): CpuidEntry[] {
    return decodeCpuid(this.nvm.getCpuid(this.id))
  }
  /** The 1 KiB LAPIC register page (KVM_GET_LAPIC, struct kvm_lapic_state). */
  getLapic(): Uint8Array {
    return new Uint8Array(this.nvm.getVcpuState(this.id, 'kvm_lapic_state'))
  }
  setLapic(regs: Uint8Array): void {
    if (regs.byteLength !== 1024) throw new RangeError('setLapic: expected 1024 bytes')
    this.nvm.setVcpuState(this.id, 'kvm_lapic_state', regs)
  }
  getMpState(): number {
    return decode(KVM_MP_STATE, this.nvm.getVcpuState(this.id, 'kvm_mp_state')).mpState
  }
  setMpState(state: number): void {
    this.nvm.setVcpuState(this.id, 'kvm_mp_state', encode(KVM_MP_STATE, { mpState: state }))
  }
  getVcpuEvents(): VcpuEvents {
    return decode(KVM_VCPU_EVENTS, this.nvm.getVcpuState(this.id, 'kvm_vcpu_events'))
  }
  /**
   * KVM_SET_VCPU_EVENTS for the parts given, e.g. `{ exception: { injected: 1, nr: 3, ... } }`:
   * written over the struct KVM just gave, with only the KVM_VCPUEVENT_VALID_* flags of the parts
   * given, so the rest stays as it is.
   */
  setVcpuEvents(update: VcpuEventsUpdate): void {
    const bytes = new Uint8Array(this.nvm.getVcpuState(this.id, 'kvm_vcpu_events'))
    let flags = 0
    if (update.interrupt) flags |= VcpuEventValid.Shadow
    if (update.nmi) flags |= VcpuEventValid.NmiPending
    if (update.sipiVector !== undefined) flags |= VcpuEventValid.SipiVector
    encode(KVM_VCPU_EVENTS, { ...update, flags } as VcpuEvents, bytes)
    this.nvm.setVcpuState(this.id, 'kvm_vcpu_events', bytes)
  }
  /** Injects exception `vector` (e.g. 3 for #BP, 6 for #UD) at the next entry. */
  injectException(vector: number, errorCode?: number): void {
    this.setVcpuEvents({
      exception: {
        injected: 1,
        nr: vector,
        hasErrorCode: errorCode === undefined ? 0 : 1,
        pending: 0,
        errorCode: errorCode ?? 0,
      },
    })
  }
  getTscKhz(): number {
    return this.nvm.getTscKhz(this.id)
  }

  // Whole-struct state for snapshots, as raw bytes of the kernel struct (src/state/layouts.ts).
  /** struct kvm_xsave (KVM_GET_XSAVE, or KVM_GET_XSAVE2 where the area is larger than 4 KiB). */
  getXsave(): Uint8Array {
    return new Uint8Array(this.nvm.getVcpuState(this.id, 'kvm_xsave'))
  }
  setXsave(bytes: Uint8Array): void {
    this.nvm.setVcpuState(this.id, 'kvm_xsave', bytes)
  }
  /** struct kvm_xcrs (KVM_GET_XCRS): XCR0. */
  getXcrs(): Uint8Array {
    return new Uint8Array(this.nvm.getVcpuState(this.id, 'kvm_xcrs'))
  }
  setXcrs(bytes: Uint8Array): void {
    this.nvm.setVcpuState(this.id, 'kvm_xcrs', bytes)
  }
  /** struct kvm_debugregs (KVM_GET_DEBUGREGS): DR0-3, DR6, DR7. */
  getDebugRegs(): Uint8Array {
    return new Uint8Array(this.nvm.getVcpuState(this.id, 'kvm_debugregs'))
  }
  setDebugRegs(bytes: Uint8Array): void {
    this.nvm.setVcpuState(this.id, 'kvm_debugregs', bytes)
  }
}

function hex(n: number): string {
  return n.toString(16)
}
