// @vmm/kvm as core's Hypervisor: what `vmm run` and embedders use through `hypervisorProvider`.
// The VM translates memory calls and offers core's optional parts (notifiers, GSI routing, x86
// state, boot policy) where KVM_CHECK_EXTENSION says the host has them. Each vCPU is wrapped so
// that exit handlers see core's Vcpu with its x86 part, and so that the host's quirks
// (quirks/index.ts) filter exits before the machine's handler and shape the CPUID it sets.
import type {
  Vcpu as CoreVcpu,
  CpuidEntry,
  DirtyLog,
  ExitHandler,
  GsiRouting,
  Hypervisor,
  HypervisorProvider,
  LegacyPics,
  MemorySlot,
  MsrEntry,
  OpaqueState,
  RamMapping,
  Regs,
  Sregs,
  VcpuExit,
  VcpuSeccomp,
  VirtualMachine,
  VmNotifiers,
  X86VcpuFeatures,
  X86VcpuState,
  X86VmFeatures,
} from '@vmm/core'
import { irqchipState, legacyPics } from './irqchip-state.js'
import { type ExitFilter, type HostQuirks, hostQuirks, type PhysicalReader } from './quirks/index.js'
import { type GuestRam, Kvm, type Vcpu, type Vm } from './vm.js'

/** Addresses KVM needs for Intel's real-mode TSS and identity map, in the 32-bit MMIO gap below
 * 4 GiB (the same places QEMU and Firecracker choose; Documentation/virt/kvm/api.rst). */
const TSS_ADDRESS = 0xfffb_d000
const IDENTITY_MAP_ADDRESS = 0xfffb_c000

export class KvmVirtualMachine implements VirtualMachine {
  private readonly rams = new WeakSet<GuestRam>()
  /** The slots as set, for reading guest RAM from host quirks (the guest profiler). */
  private readonly slots = new Map<number, MemorySlot>()
  private readonly exitFilter: ExitFilter | undefined
  /** vm.x86.irqchip and vm.x86.pit: there once createIrqchip made the in-kernel PIC, IOAPIC and PIT. */
  private irqchipState: OpaqueState | undefined
  private pitState: OpaqueState | undefined
  private picsState: LegacyPics | undefined
  readonly notifiers?: VmNotifiers
  readonly msiRouting?: GsiRouting
  readonly x86: X86VmFeatures
  readonly bootPolicy: HostQuirks['bootPolicy']
  readonly vcpuSeccomp: VcpuSeccomp = {
    confine: (program) => this.vm.setVcpuFilter(program),
  }
  /** Slots whose writes KVM logs (KVM_MEM_LOG_DIRTY_PAGES), kept across setMemorySlot. */
  private readonly tracked = new Set<number>()
  readonly dirtyLog: DirtyLog = {
    track: (slot, enabled) => {
      const s = this.slots.get(slot)
      if (!s) throw new RangeError(`dirty log: no memory slot ${slot}`)
      if (enabled) this.tracked.add(slot)
      else this.tracked.delete(slot)
      this.setMemorySlot(s)
    },
    take: (slot) => {
      if (!this.tracked.has(slot)) throw new Error(`dirty log: slot ${slot} is not tracked (track it first)`)
      return this.vm.getDirtyLog(slot)
    },
  }

  constructor(
    readonly vm: Vm,
    private readonly quirks: HostQuirks = hostQuirks(),
  ) {
    const has = (cap: Parameters<Vm['checkExtension']>[0]) => vm.checkExtension(cap) > 0
    if (has('Ioeventfd') || has('Irqfd')) this.notifiers = kvmNotifiers(vm, has('Ioeventfd'), has('Irqfd'))
    if (has('IrqRouting')) this.msiRouting = { setRoutes: (routes) => vm.setGsiRouting(routes) }
    const self = this
    this.x86 = {
      supportedCpuid: () => vm.kvm.supportedCpuid(),
      ...(has('AdjustClock') ? { clock: clockState(vm) } : {}),
      // Only once the VM has its in-kernel irqchip and PIT (createIrqchip).
      get irqchip() {
        return self.irqchipState
      },
      get pit() {
        return self.pitState
      },
      get pics() {
        return self.picsState
      },
    }
    this.bootPolicy = quirks.bootPolicy
    this.exitFilter = quirks.exitFilter(this.readPhysical)
  }

  mapRam(size: number): RamMapping {
    const ram = this.vm.mapMemory(size)
    this.rams.add(ram)
    return ram
  }

  mapRamFromFile(size: number, file: string): RamMapping {
    const ram = this.vm.mapMemory(size, { file })
    this.rams.add(ram)
    return ram
  }

  setMemorySlot(slot: MemorySlot): void {
    const ram = slot.mapping as GuestRam
    if (!this.rams.has(ram))
      throw new TypeError(`memory slot ${slot.slot}: its mapping was not made by this VM's mapRam()`)
    this.vm.setUserMemoryRegion({
      slot: slot.slot,
      guestAddress: slot.guestAddress,
      size: slot.size,
      ram,
      offset: slot.mappingOffset,
      readonly: slot.readOnly,
      logDirtyPages: this.tracked.has(slot.slot),
    })
    if (slot.size === 0) {
      this.slots.delete(slot.slot)
      this.tracked.delete(slot.slot)
    } else this.slots.set(slot.slot, slot)
  }

  /** KVM_CREATE_IRQCHIP (PIC, IOAPIC, LAPICs) and the in-kernel PIT, with the TSS and identity map
   * pages KVM wants on Intel hosts before the first vCPU runs. */
  createIrqchip(): void {
    this.vm.setTssAddr(TSS_ADDRESS)
    this.vm.setIdentityMapAddr(IDENTITY_MAP_ADDRESS)
    this.vm.createIrqchip()
    this.vm.createPit2()
    this.irqchipState = irqchipState(this.vm)
    this.picsState = legacyPics(this.vm)
    this.pitState = { get: () => this.vm.getPit2(), set: (bytes) => this.vm.setPit2(bytes) }
  }

  setIrqLine(irq: number, level: boolean): void {
    this.vm.irqLine(irq, level)
  }

  createVcpu(id: number): KvmVcpu {
    return new KvmVcpu(this.vm.createVcpu(id), this.exitFilter, this.quirks)
  }

  dispose(): void {
    this.vm.dispose()
    this.slots.clear()
  }

  /** The 64-bit value at guest physical `address`, through the memory slots. */
  private readonly readPhysical: PhysicalReader = (address) => {
    const pa = Number(address)
    for (const s of this.slots.values()) {
      if (pa < s.guestAddress || pa + 8 > s.guestAddress + s.size) continue
      const offset = s.mappingOffset + pa - s.guestAddress
      const chunk = Math.floor(offset / s.mapping.chunkSize)
      return new DataView(s.mapping.buffers[chunk]!).getBigUint64(offset % s.mapping.chunkSize, true)
    }
    throw new RangeError(`guest physical 0x${address.toString(16)} is not RAM`)
  }
}

/** ioeventfd doorbells and irqfd triggers, each only where the host has it. */
function kvmNotifiers(vm: Vm, ioeventfd: boolean, irqfd: boolean): VmNotifiers {
  return {
    doorbell(doorbell, onWrite) {
      if (!ioeventfd) return undefined
      const eventfd = vm.createEventFd()
      // Without KVM_CAP_IOEVENTFD_ANY_LENGTH the length must be the access width exactly.
      const registration = {
        eventfd,
        address: doorbell.address,
        length: doorbell.length,
        ...(doorbell.datamatch !== undefined ? { datamatch: doorbell.datamatch } : {}),
        ...(doorbell.space === 'pio' ? { pio: true } : {}),
      }
      try {
        vm.ioeventfd(registration)
      } catch {
        // EEXIST: two doorbells at one address (a BAR over another). The write then traps.
        eventfd.close()
        return undefined
      }
      eventfd.onSignal(() => onWrite())
      return {
        dispose: () => {
          vm.ioeventfd({ ...registration, deassign: true })
          eventfd.close()
        },
      }
    },
    interrupt(gsi) {
      if (!irqfd) return undefined
      const eventfd = vm.createEventFd()
      vm.irqfd({ eventfd, gsi })
      return {
        trigger: () => eventfd.write(1n),
        dispose: () => {
          vm.irqfd({ eventfd, gsi, deassign: true })
          eventfd.close()
        },
      }
    },
  }
}

/** KVM_GET/SET_CLOCK's nanoseconds as 8 little-endian bytes. */
function clockState(vm: Vm): OpaqueState {
  return {
    get() {
      const out = new Uint8Array(8)
      new DataView(out.buffer).setBigUint64(0, vm.getClock(), true)
      return out
    },
    set(state) {
      if (state.length !== 8) throw new RangeError(`clock state is 8 bytes, not ${state.length}`)
      vm.setClock(new DataView(state.buffer, state.byteOffset, 8).getBigUint64(0, true))
    },
  }
}

/** Core's Vcpu over @vmm/kvm's, with the x86 part and the host's exit filter and CPUID policy. */
export class KvmVcpu implements CoreVcpu {
  readonly x86: X86VcpuFeatures

  constructor(
    readonly vcpu: Vcpu,
    private readonly exitFilter: ExitFilter | undefined,
    quirks: HostQuirks,
  ) {
    this.x86 = x86Vcpu(vcpu, quirks)
  }

  get id(): number {
    return this.vcpu.id
  }
  getRegs(): Regs {
    return this.vcpu.getRegs()
  }
  setRegs(regs: Regs): void {
    this.vcpu.setRegs(regs)
  }
  getSregs(): Sregs {
    return this.vcpu.getSregs()
  }
  setSregs(sregs: Sregs): void {
    this.vcpu.setSregs(sregs)
  }
  kick(): void {
    this.vcpu.kick()
  }

  /** Handlers see this vCPU (core's shape); the exit filter sees each exit first. */
  run(handler: ExitHandler): Promise<VcpuExit> {
    const filter = this.exitFilter
    return this.vcpu.run({
      pioIn: (port, data) => handler.pioIn(port, data, this),
      pioOut: (port, data) => handler.pioOut(port, data, this),
      mmioRead: (address, data) => handler.mmioRead(address, data, this),
      mmioWrite: (address, data) => handler.mmioWrite(address, data, this),
      onExit: (exit, v) => (filter?.(exit, v) ? 'resume' : handler.onExit(exit, this)),
    })
  }
}

function x86Vcpu(v: Vcpu, quirks: HostQuirks): X86VcpuFeatures {
  /** KVM_GET_MSR_INDEX_LIST less what this vCPU cannot read, found once (for getState). */
  let saved: number[] | undefined
  const savedMsrs = (): number[] => {
    if (saved) return saved
    const all = v.vm.kvm.msrIndexList()
    try {
      v.getMsrs(all)
      saved = all
    } catch {
      saved = all.filter((index) => {
        try {
          v.getMsrs([index])
          return true
        } catch {
          return false
        }
      })
    }
    return saved
  }
  const x86: X86VcpuFeatures = {
    setCpuid: (entries: readonly CpuidEntry[]) => v.setCpuid(quirks.cpuid(entries)),
    getCpuid: () => v.getCpuid(),
    getMsrs: (indices) => v.getMsrs(indices),
    setMsrs: (entries) => v.setMsrs(entries),
    getLapic: () => v.getLapic(),
    setLapic: (page) => v.setLapic(page),
    getFpu: () => v.getFpu(),
    setFpu: (fpu) => v.setFpu(fpu),
    getMpState: () => v.getMpState(),
    setMpState: (state) => v.setMpState(state),
    getEvents: () => v.getVcpuEvents(),
    setEvents: (update) => v.setVcpuEvents(update),
    injectException: (vector, errorCode) => v.injectException(vector, errorCode),
    tscKhz: () => v.getTscKhz(),
    getState(): X86VcpuState {
      // docs/snapshot.md: MP_STATE first (reading it runs pending APIC events, which changes the
      // LAPIC and the vCPU), the events last (the other reads can disturb them).
      const mpState = v.getMpState()
      const indices = savedMsrs()
      const values = v.getMsrs(indices)
      const msrs: MsrEntry[] = indices.map((index, i) => ({ index, data: values[i]! }))
      const state: X86VcpuState = {
        mpState,
        regs: v.getRegs(),
        sregs: v.getSregs(),
        fpu: v.getFpu(),
        xsave: v.getXsave(),
        xcrs: v.getXcrs(),
        debugRegs: v.getDebugRegs(),
        lapic: v.getLapic(),
        msrs,
        cpuid: v.getCpuid(),
        tscKhz: v.getTscKhz(),
        events: v.getVcpuEvents(),
      }
      return state
    },
    setState(state) {
      // docs/snapshot.md (Firecracker's order): CPUID, MP_STATE, REGS, SREGS, XSAVE, XCRS,
      // DEBUGREGS, LAPIC, MSRs, events. REGS before the events (setting REGS clears a pending
      // exception, which the events put back); SREGS before the LAPIC (SREGS carries the APIC
      // base); the LAPIC before the MSRs (TSC_DEADLINE only takes once the LAPIC timer is in
      // TSC-deadline mode), and TSC_DEADLINE after IA32_TSC.
      if (state.cpuid) v.setCpuid(state.cpuid)
      v.setMpState(state.mpState)
      v.setRegs(state.regs)
      v.setSregs(state.sregs)
      // XSAVE holds the x87/SSE state too; the FPU struct only where the host gave no XSAVE area.
      if (state.xsave) v.setXsave(state.xsave)
      else v.setFpu(state.fpu)
      if (state.xcrs) v.setXcrs(state.xcrs)
      if (state.debugRegs) v.setDebugRegs(state.debugRegs)
      v.setLapic(state.lapic)
      v.setMsrs(orderMsrs(state.msrs))
      const { exception, interrupt, nmi, sipiVector } = state.events
      v.setVcpuEvents({ exception, interrupt, nmi, sipiVector })
    },
  }
  return x86
}

const IA32_TSC = 0x10
const IA32_TSC_DEADLINE = 0x6e0

/**
 * The MSRs in the order they must be written back: IA32_TSC_DEADLINE after IA32_TSC (the deadline
 * is compared with the TSC as it is when it is written), and a saved deadline of 0 (disarmed, or
 * read as 0 because it had just fired) replaced by the saved TSC, so that a timer interrupt the
 * guest waits for fires at once instead of never (Firecracker's fix_zero_tsc_deadline_msr).
 */
export function orderMsrs(msrs: readonly MsrEntry[]): MsrEntry[] {
  const tsc = msrs.find((m) => m.index === IA32_TSC)
  const rest = msrs.filter((m) => m.index !== IA32_TSC_DEADLINE)
  const deadline = msrs.find((m) => m.index === IA32_TSC_DEADLINE)
  if (!deadline) return rest
  return [...rest, { index: IA32_TSC_DEADLINE, data: deadline.data === 0n && tsc ? tsc.data : deadline.data }]
}

export class KvmHypervisor implements Hypervisor {
  readonly name = 'kvm'
  constructor(readonly kvm: Kvm) {}

  createVm(): KvmVirtualMachine {
    return new KvmVirtualMachine(this.kvm.createVm())
  }

  dispose(): void {
    this.kvm.close()
  }
}

/** Opens /dev/kvm for `vmm run`; a KvmUnavailableError says why when it cannot be used. */
export const hypervisorProvider: HypervisorProvider = {
  open: () => new KvmHypervisor(Kvm.open(process.env.VMM_KVM_DEVICE ?? '/dev/kvm')),
}
