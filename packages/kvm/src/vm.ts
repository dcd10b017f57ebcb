// A VM (src/native/vm.cc, vcpu.cc): its memory slots, in-kernel devices, eventfds, the VM-level
// state blobs a snapshot needs, and the exit pump that moves vCPU exits to their handlers.
import { EventFd } from '@vmm/host'
import { errnoName } from './errors.js'
import { exitStats } from './exit-stats.js'
import { dispatchExit, type ExitAction, type VcpuExit } from './exits.js'
import type { Kvm } from './kvm.js'
import type { GuestRam, MemoryRegion } from './memory.js'
import { type NativeBinding, NativeExitKind, type NativeVm } from './native.js'
import { KvmCap, type KvmCapName } from './types.js'
import { Vcpu } from './vcpu.js'

/** How long the JS thread keeps polling for the next exit after handling one (the vCPU thread
 * re-enters the guest and is usually back within a few microseconds on the I/O-heavy paths). */
const POLL_SPIN_NS = 50_000
/** The longest the exit pump keeps the event loop busy before yielding to timers and I/O. */
const PUMP_SLICE_MS = 4

// vm.ts once held every class of the package; modules that import them from here keep working.
export { EventFd } from '@vmm/host'
export { Kvm } from './kvm.js'
export type { GuestRam, MemoryRegion } from './memory.js'
export { Vcpu, type VcpuState } from './vcpu.js'

/** KVM_IRQCHIP_* (include/uapi/linux/kvm.h): the chips of the in-kernel irqchip. */
export type IrqchipId = 0 | 1 | 2

export class Vm {
  private readonly nvm: NativeVm
  private readonly vcpuById: (Vcpu | undefined)[] = []
  private readonly rams: GuestRam[] = []
  private readonly eventfds: EventFd[] = []
  private running = 0
  private pumping = false
  private disposed = false
  private syncRegsCap: boolean | undefined

  /** @internal use Kvm.createVm() */
  constructor(
    readonly kvm: Kvm,
    private readonly n: NativeBinding,
    systemFd: number,
  ) {
    this.nvm = new n.Vm(systemFd, this.pump)
    if (exitStats) {
      // VMM_EXIT_STATS (exit-stats.ts): the time of each exit's handling on this thread, all kinds.
      const stats = exitStats
      const handle = this.handle.bind(this)
      this.handle = (r) => {
        const t0 = performance.now()
        try {
          return handle(r)
        } finally {
          stats.exits++
          stats.handleMs += performance.now() - t0
        }
      }
    }
  }

  get vcpus(): readonly Vcpu[] {
    return this.vcpuById.filter((v): v is Vcpu => v !== undefined)
  }

  checkExtension(cap: KvmCapName | number): number {
    return this.nvm.checkExtension(typeof cap === 'number' ? cap : KvmCap[cap])
  }

  /**
   * Maps host memory for guest RAM (anonymous, or a memfd named `memfd` that can be shared, or
   * with `file` a snapshot's memory file mapped MAP_PRIVATE: loaded lazily, copy-on-write).
   */
  mapMemory(size: number, options: { memfd?: string; hugepages?: boolean; file?: string } = {}): GuestRam {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 4096 !== 0)
      throw new RangeError(`mapMemory: size ${size} must be a positive multiple of 4096`)
    let m: ReturnType<NativeBinding['mapMemory']>
    try {
      m = this.n.mapMemory(size, options.memfd ?? null, options.hugepages ?? false, options.file)
    } catch (e) {
      if (options.file)
        throw new Error(`guest RAM from ${options.file}: ${(e as Error).message}`, { cause: e })
      throw e
    }
    const n = this.n
    let unmapped = false
    const ram: GuestRam = {
      size,
      hostAddress: m.address,
      buffers: m.buffers,
      chunkSize: m.chunkSize,
      fd: m.fd,
      discard(offset, length) {
        if (unmapped) throw new Error('discard: guest RAM is unmapped')
        return n.discardMemory(m.buffers, offset, length)
      },
      unmap() {
        if (unmapped) return
        unmapped = true
        n.unmapMemory(m.buffers)
      },
    }
    this.rams.push(ram)
    return ram
  }

  /** KVM_SET_USER_MEMORY_REGION; a region of size 0 deletes the slot. */
  setUserMemoryRegion(r: MemoryRegion): void {
    const offset = r.offset ?? 0
    if (r.size !== 0 && (offset < 0 || offset + r.size > r.ram.size))
      throw new RangeError(
        `memory slot ${r.slot}: [${offset}, +${r.size}) is outside its RAM mapping of ${r.ram.size} bytes`,
      )
    const flags = (r.logDirtyPages ? 1 : 0) | (r.readonly ? 2 : 0)
    this.nvm.setUserMemoryRegion(
      r.slot,
      flags,
      BigInt(r.guestAddress),
      BigInt(r.size),
      r.ram.hostAddress + BigInt(offset),
    )
  }

  /** In-kernel PIC, IOAPIC and LAPICs; must come before any vCPU. */
  createIrqchip(): void {
    this.nvm.createIrqchip()
  }

  /** In-kernel i8254 PIT (needs the irqchip). flags: 1 = KVM_PIT_SPEAKER_DUMMY. */
  createPit2(flags = 0): void {
    this.nvm.createPit2(flags)
  }

  /** Three pages KVM needs below 4 GiB on Intel (Documentation/virt/kvm/api.rst KVM_SET_TSS_ADDR). */
  setTssAddr(address: number): void {
    this.nvm.setTssAddr(address)
  }

  setIdentityMapAddr(address: number): void {
    this.nvm.setIdentityMapAddr(BigInt(address))
  }

  /** Drives an in-kernel irqchip input (GSI) to `level`. */
  irqLine(irq: number, level: 0 | 1 | boolean): void {
    this.nvm.irqLine(irq, level ? 1 : 0)
  }

  getClock(): bigint {
    return this.nvm.getClock()
  }

  setClock(ns: bigint): void {
    this.nvm.setClock(ns)
  }

  createEventFd(): EventFd {
    const e = EventFd.create()
    this.eventfds.push(e)
    return e
  }

  /** Guest writes of `length` bytes at `address` (a port when pio) signal `fd` without exiting. */
  ioeventfd(o: {
    eventfd: EventFd
    address: number
    length: 0 | 1 | 2 | 4 | 8
    datamatch?: bigint
    pio?: boolean
    deassign?: boolean
  }): void {
    this.nvm.ioeventfd({
      fd: o.eventfd.fd,
      address: BigInt(o.address),
      length: o.length,
      datamatch: o.datamatch ?? null,
      pio: o.pio ?? false,
      deassign: o.deassign ?? false,
    })
  }

  /** Signalling `eventfd` raises `gsi` in the in-kernel irqchip without a syscall from us. */
  irqfd(o: { eventfd: EventFd; gsi: number; resample?: EventFd; deassign?: boolean }): void {
    this.nvm.irqfd({
      fd: o.eventfd.fd,
      gsi: o.gsi,
      resampleFd: o.resample?.fd ?? null,
      deassign: o.deassign ?? false,
    })
  }

  setGsiRouting(entries: Parameters<NativeVm['setGsiRouting']>[0]): void {
    this.nvm.setGsiRouting(entries)
  }

  /**
   * struct kvm_irqchip of chip 0 (PIC master), 1 (PIC slave) or 2 (IOAPIC), as raw bytes
   * (KVM_GET_IRQCHIP; src/state/layouts.ts has its layout). Needs createIrqchip().
   */
  getIrqchip(chip: IrqchipId): Uint8Array {
    return new Uint8Array(this.nvm.getIrqchip(chip))
  }

  /** KVM_SET_IRQCHIP: `bytes` is a struct kvm_irqchip (as getIrqchip gave it); its chip_id is set to `chip`. */
  setIrqchip(chip: IrqchipId, bytes: Uint8Array): void {
    const copy = new Uint8Array(bytes)
    new DataView(copy.buffer).setUint32(0, chip, true) // chip_id
    this.nvm.setIrqchip(copy)
  }

  /** struct kvm_pit_state2 as raw bytes (KVM_GET_PIT2). Needs createPit2(). */
  getPit2(): Uint8Array {
    return new Uint8Array(this.nvm.getPit2())
  }

  /** KVM_SET_PIT2 with a struct kvm_pit_state2 (as getPit2 gave it). */
  setPit2(bytes: Uint8Array): void {
    this.nvm.setPit2(bytes)
  }

  /**
   * The dirty bitmap of memory slot `slot` (KVM_GET_DIRTY_LOG): bit n of byte n / 8 set when the
   * slot's page n was written since the last call, which clears it. The slot needs logDirtyPages.
   */
  getDirtyLog(slot: number): Uint8Array {
    return new Uint8Array(this.nvm.getDirtyLog(slot))
  }

  /** Each vCPU thread installs the seccomp program on itself (vcpu_seccomp.cc). */
  setVcpuFilter(program: Uint8Array): void {
    this.nvm.setVcpuFilter(program)
  }

  /** Creates vCPU `id` on its own thread, named `vcpu<id>`. */
  createVcpu(id: number): Vcpu {
    if (this.disposed) throw new Error('VM is disposed')
    if (!Number.isInteger(id) || id < 0 || id > 0xffff) throw new RangeError(`vCPU id ${id} out of range`)
    const run = this.nvm.createVcpu(id, `vcpu${id}`)
    // KVM_CAP_SYNC_REGS (74): the register classes kvm_run can carry; x86 regs are bit 0.
    this.syncRegsCap ??= (this.nvm.checkExtension(74) & 1) !== 0
    const v = new Vcpu(this, this.nvm, id, run, this.syncRegsCap)
    this.vcpuById[id] = v
    return v
  }

  /** @internal */
  vcpuStarted(): void {
    if (this.running++ === 0) this.nvm.keepAlive(true)
    // Not synchronously: handlers must never run inside the caller's run() (a caller starting
    // several vCPUs in a row would otherwise see exits of the first before starting the next).
    queueMicrotask(this.pump)
  }

  /** @internal */
  vcpuStopped(): void {
    if (--this.running === 0) this.nvm.keepAlive(false)
  }

  /**
   * Moves exits from the vCPU threads to their handlers. Runs when a vCPU starts, when a vCPU
   * thread wakes the idle event loop, and in slices via setImmediate while exits keep coming.
   */
  private readonly pump = (): void => {
    if (this.pumping || this.disposed) return
    this.pumping = true
    try {
      const started = performance.now()
      let r = this.nvm.poll(0)
      for (let handled = 1; ; handled++) {
        if (r < 0) {
          if (this.running === 0 || this.nvm.arm()) return
          r = this.nvm.poll(0)
          continue
        }
        const resumeId = this.handle(r)
        if ((handled & 255) === 0 && performance.now() - started > PUMP_SLICE_MS) {
          if (resumeId >= 0) this.nvm.complete(resumeId, true)
          setImmediate(this.pump)
          return
        }
        r = resumeId >= 0 ? this.nvm.resumeAndPoll(resumeId, POLL_SPIN_NS) : this.nvm.poll(POLL_SPIN_NS)
      }
    } finally {
      this.pumping = false
    }
  }

  /** Handles one exit; returns the vCPU id to resume, or -1 when the vCPU was stopped. */
  private handle(r: number): number {
    const id = r & 0xffff
    const kind = (r - id) / 65536
    const v = this.vcpuById[id]!
    let exit: VcpuExit
    if (kind === NativeExitKind.Kvm) {
      let action: ExitAction
      try {
        action = dispatchExit(v.runView, v.handlerProxy!, v)
      } catch (e) {
        this.nvm.complete(id, false)
        v.finish(undefined, e)
        return -1
      }
      if (action === 'resume') return id
      exit = v.lastExit ?? { kind: 'unknown', reason: v.runView.exitReason, hardwareReason: 0n }
    } else if (kind === NativeExitKind.Kick) {
      exit = { kind: 'kick' }
    } else {
      const errno = this.nvm.exitErrno(id)
      exit = { kind: 'error', code: errnoName(errno), errno: -errno }
    }
    this.nvm.complete(id, false)
    v.finish(exit)
    return -1
  }

  /**
   * Stops every vCPU (their run() promises resolve with { kind: 'disposed' }), joins their
   * threads, closes the VM and eventfds and unmaps guest memory. Harmless twice.
   */
  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    this.nvm.dispose()
    for (const v of this.vcpuById) v?.finish({ kind: 'disposed' })
    for (const e of this.eventfds) e.close()
    for (const r of this.rams) r.unmap()
    this.nvm.keepAlive(false)
  }

  [Symbol.dispose](): void {
    this.dispose()
  }
}
