import { constants as osConstants } from 'node:os'
import { EventFd } from '@vmm/host'
import { isKvmSystemError, KVM_API_VERSION, KvmUnavailableError, unavailableFromOpenError } from './errors.js'
import { dispatchExit, type ExitAction, type ExitHandler, KvmRunView, type VcpuExit } from './exits.js'
import { type NativeBinding, NativeExitKind, type NativeVm, native } from './native.js'
import {
  type CpuidEntry,
  type Fpu,
  KvmCap,
  type KvmCapName,
  type Regs,
  type Sregs,
  type VcpuEvents,
  type VcpuEventsUpdate,
} from './types.js'

/** How long the JS thread keeps polling for the next exit after handling one (the vCPU thread
 * re-enters the guest and is usually back within a few microseconds on the I/O-heavy paths). */
const POLL_SPIN_NS = 50_000
/** The longest the exit pump keeps the event loop busy before yielding to timers and I/O. */
const PUMP_SLICE_MS = 4

/** The system handle: /dev/kvm. */
export class Kvm {
  private closed = false

  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly n: NativeBinding,
  ) {}

  /**
   * Opens /dev/kvm (or `path`) and checks the API version. Any reason KVM cannot be used comes back
   * as one KvmUnavailableError whose `reason` says which.
   */
  static open(path = '/dev/kvm'): Kvm {
    let n: NativeBinding
    try {
      n = native()
    } catch (e) {
      throw new KvmUnavailableError('native-module', path, (e as Error).message, { cause: e })
    }
    let fd: number
    try {
      fd = n.openSystem(path)
    } catch (e) {
      throw unavailableFromOpenError(path, e)
    }
    let version: number
    try {
      version = n.apiVersion(fd)
    } catch (e) {
      n.closeFd(fd)
      const code = isKvmSystemError(e) ? e.code : ''
      throw new KvmUnavailableError(
        'not-kvm',
        path,
        `KVM is not available: ${path} does not answer KVM_GET_API_VERSION (${code || (e as Error).message}); is it the KVM device?`,
        { cause: e },
      )
    }
    if (version !== KVM_API_VERSION) {
      n.closeFd(fd)
      throw new KvmUnavailableError(
        'api-version',
        path,
        `KVM is not available: ${path} speaks API version ${version}, this VMM needs ${KVM_API_VERSION}`,
      )
    }
    return new Kvm(path, fd, n)
  }

  /** Why KVM cannot be used here, or undefined when it can (for tests that must skip with a reason). */
  static unavailableReason(path = '/dev/kvm'): string | undefined {
    try {
      Kvm.open(path).close()
      return undefined
    } catch (e) {
      return (e as Error).message
    }
  }

  get apiVersion(): number {
    return this.n.apiVersion(this.fd)
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, else a capability-specific positive value. */
  checkExtension(cap: KvmCapName | number): number {
    return this.n.checkExtension(this.fd, typeof cap === 'number' ? cap : KvmCap[cap])
  }

  /** Every capability this package knows by name, with the host's answer. */
  capabilities(): Record<KvmCapName, number> {
    const out = {} as Record<KvmCapName, number>
    for (const name of Object.keys(KvmCap) as KvmCapName[]) out[name] = this.checkExtension(name)
    return out
  }

  get vcpuMmapSize(): number {
    return this.n.vcpuMmapSize(this.fd)
  }

  supportedCpuid(): CpuidEntry[] {
    return this.n.supportedCpuid(this.fd)
  }

  msrIndexList(): number[] {
    return this.n.msrIndexList(this.fd, false)
  }

  msrFeatureIndexList(): number[] {
    return this.n.msrIndexList(this.fd, true)
  }

  createVm(): Vm {
    if (this.closed) throw new Error('Kvm handle is closed')
    return new Vm(this, this.n, this.fd)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.n.closeFd(this.fd)
  }
}

/** Host memory for the guest: one contiguous mapping, seen by JS as 1 GiB chunks. */
export interface GuestRam {
  readonly size: number
  readonly hostAddress: bigint
  readonly buffers: readonly ArrayBuffer[]
  readonly chunkSize: number
  /** The memfd behind it, or -1 for anonymous memory. */
  readonly fd: number
  /** Gives the pages back; every view of `buffers` becomes empty. Harmless twice. */
  unmap(): void
}

export interface MemoryRegion {
  slot: number
  guestAddress: number
  size: number
  ram: GuestRam
  /** Offset of the region inside `ram`. */
  offset?: number
  readonly?: boolean
  logDirtyPages?: boolean
}

export type VcpuState = 'idle' | 'running'

export class Vm {
  private readonly nvm: NativeVm
  private readonly vcpuById: (Vcpu | undefined)[] = []
  private readonly rams: GuestRam[] = []
  private readonly eventfds: EventFd[] = []
  private running = 0
  private pumping = false
  private disposed = false

  /** @internal use Kvm.createVm() */
  constructor(
    readonly kvm: Kvm,
    private readonly n: NativeBinding,
    systemFd: number,
  ) {
    this.nvm = new n.Vm(systemFd, this.pump)
  }

  get vcpus(): readonly Vcpu[] {
    return this.vcpuById.filter((v): v is Vcpu => v !== undefined)
  }

  checkExtension(cap: KvmCapName | number): number {
    return this.nvm.checkExtension(typeof cap === 'number' ? cap : KvmCap[cap])
  }

  /** Maps host memory for guest RAM (anonymous, or a memfd named `memfd` that can be shared). */
  mapMemory(size: number, options: { memfd?: string; hugepages?: boolean } = {}): GuestRam {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 4096 !== 0)
      throw new RangeError(`mapMemory: size ${size} must be a positive multiple of 4096`)
    const m = this.n.mapMemory(size, options.memfd ?? null, options.hugepages ?? false)
    const n = this.n
    let unmapped = false
    const ram: GuestRam = {
      size,
      hostAddress: m.address,
      buffers: m.buffers,
      chunkSize: m.chunkSize,
      fd: m.fd,
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

  /** Creates vCPU `id` on its own thread, named `vcpu<id>`. */
  createVcpu(id: number): Vcpu {
    if (this.disposed) throw new Error('VM is disposed')
    if (!Number.isInteger(id) || id < 0 || id > 0xffff) throw new RangeError(`vCPU id ${id} out of range`)
    const run = this.nvm.createVcpu(id, `vcpu${id}`)
    const v = new Vcpu(this, this.nvm, id, run)
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

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errno) return name
  return `ERRNO_${errno}`
}

export class Vcpu {
  readonly runView: KvmRunView
  private state_: VcpuState = 'idle'
  private settle: { resolve: (e: VcpuExit) => void; reject: (e: unknown) => void } | undefined
  /** @internal the handler of the current run, wrapped to remember the stopping exit */
  handlerProxy: ExitHandler<Vcpu> | undefined
  /** @internal */
  lastExit: VcpuExit | undefined

  /** @internal use Vm.createVcpu() */
  constructor(
    readonly vm: Vm,
    private readonly nvm: NativeVm,
    readonly id: number,
    run: ArrayBuffer,
  ) {
    this.runView = new KvmRunView(run)
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
    this.handlerProxy = {
      pioIn: handler.pioIn.bind(handler),
      pioOut: handler.pioOut.bind(handler),
      mmioRead: handler.mmioRead.bind(handler),
      mmioWrite: handler.mmioWrite.bind(handler),
      onExit: (exit, vcpu) => {
        this.lastExit = exit
        return handler.onExit(exit, vcpu)
      },
    }
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

  // Register access: allowed while the vCPU is idle or inside one of its exit handlers.
  getRegs(): Regs {
    return this.nvm.getRegs(this.id) as unknown as Regs
  }
  setRegs(regs: Regs): void {
    this.nvm.setRegs(this.id, regs as unknown as Record<string, bigint>)
  }
  getSregs(): Sregs {
    return this.nvm.getSregs(this.id) as Sregs
  }
  setSregs(sregs: Sregs): void {
    this.nvm.setSregs(this.id, sregs)
  }
  getFpu(): Fpu {
    return this.nvm.getFpu(this.id) as Fpu
  }
  setFpu(fpu: Fpu): void {
    this.nvm.setFpu(this.id, fpu)
  }
  getMsrs(indices: readonly number[]): bigint[] {
    return this.nvm.getMsrs(this.id, indices)
  }
  setMsrs(entries: readonly { index: number; data: bigint }[]): void {
    this.nvm.setMsrs(this.id, entries)
  }
  setCpuid(entries: readonly CpuidEntry[]): void {
    this.nvm.setCpuid(this.id, entries)
  }
  getCpuid(): CpuidEntry[] {
    return this.nvm.getCpuid(this.id)
  }
  /** The 1 KiB LAPIC register page (KVM_GET_LAPIC). */
  getLapic(): Uint8Array {
    return this.nvm.getLapic(this.id)
  }
  setLapic(regs: Uint8Array): void {
    this.nvm.setLapic(this.id, regs)
  }
  getMpState(): number {
    return this.nvm.getMpState(this.id)
  }
  setMpState(state: number): void {
    this.nvm.setMpState(this.id, state)
  }
  getVcpuEvents(): VcpuEvents {
    return this.nvm.getVcpuEvents(this.id) as VcpuEvents
  }
  /** KVM_SET_VCPU_EVENTS for the parts given, e.g. `{ exception: { injected: 1, nr: 3, ... } }`. */
  setVcpuEvents(update: VcpuEventsUpdate): void {
    this.nvm.setVcpuEvents(this.id, update)
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
}
