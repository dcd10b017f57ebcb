// An in-process hypervisor for tests (StratoVirt's `-accel test`): no /dev/kvm, guest RAM in plain
// ArrayBuffers, and vCPUs that execute a small subset of 16-bit real-mode x86 (real-mode.ts). Port
// and MMIO accesses reach the ExitHandler exactly as KVM exits would, so buses, devices, loaders
// and the machine lifecycle can be tested end to end anywhere.
//
// Of the hypervisor's optional parts it offers, when asked (TestHypervisorOptions), the notifiers
// (doorbells as in-process ioeventfds, interrupt triggers recorded) and the GSI routing table
// (recorded). It leaves out x86 vCPU state, the VM's x86 state, dirty logging and a boot policy:
// its vCPUs are a real-mode interpreter with no LAPIC or MSRs.

import type {
  Doorbell,
  ExitHandler,
  GsiRoute,
  GsiRouting,
  Hypervisor,
  InterruptTrigger,
  MemorySlot,
  RamMapping,
  Regs,
  Segment,
  Sregs,
  Vcpu,
  VcpuExit,
  VirtualMachine,
  VmNotifiers,
} from '../hypervisor.js'
import { RamBacking } from '../memory/ram-backing.js'
import { type CpuBus, RealModeCpu } from './real-mode.js'

/**
 * Which optional parts the test VMs offer. Off by default, so device tests see what they always
 * saw (trapped doorbells, interrupts through setIrqLine, a recording MSI router).
 */
export interface TestHypervisorOptions {
  /** vm.notifiers: doorbells served in-process, interrupt triggers recorded in the log. */
  notifiers?: boolean
  /** vm.msiRouting: the GSI routing table, recorded in the log. */
  msiRouting?: boolean
}

export class TestHypervisor implements Hypervisor {
  readonly name = 'test'
  readonly vms: TestVm[] = []

  constructor(private readonly options: TestHypervisorOptions = {}) {}

  createVm(): TestVm {
    const vm = new TestVm(this.options)
    this.vms.push(vm)
    return vm
  }

  dispose(): void {
    for (const vm of this.vms) vm.dispose()
  }
}

/** Everything the test VM was asked to do, for assertions. */
export interface TestVmLog {
  irqchip: boolean
  irqLevels: Map<number, boolean>
  irqEvents: { irq: number; level: boolean }[]
  /** GSIs whose interrupt trigger fired, in order (vm.notifiers). */
  triggered: number[]
  /** Every routing table installed, last one last (vm.msiRouting). */
  gsiRoutes: GsiRoute[][]
}

interface LiveDoorbell {
  readonly doorbell: Doorbell
  readonly ring: () => void
}

/** Whether `data`, written at `address`, rings `d` (KVM_IOEVENTFD's matching, without length 0). */
function rings(d: Doorbell, address: number, data: Uint8Array): boolean {
  if (d.address !== address || d.length !== data.length) return false
  if (d.datamatch === undefined) return true
  let value = 0n
  for (let i = data.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[i]!)
  return value === d.datamatch
}

export class TestVm implements VirtualMachine {
  readonly slots = new Map<number, MemorySlot & { backing: RamBacking }>()
  readonly vcpus: TestVcpu[] = []
  readonly log: TestVmLog = {
    irqchip: false,
    irqLevels: new Map(),
    irqEvents: [],
    triggered: [],
    gsiRoutes: [],
  }
  private readonly mappings = new Map<RamMapping, RamBacking>()
  private readonly doorbells = new Set<LiveDoorbell>()
  disposed = false
  readonly notifiers?: VmNotifiers
  readonly msiRouting?: GsiRouting

  constructor(options: TestHypervisorOptions = {}) {
    if (options.notifiers) this.notifiers = this.makeNotifiers()
    if (options.msiRouting)
      this.msiRouting = {
        setRoutes: (routes) => {
          this.check()
          this.log.gsiRoutes.push(routes.map((r) => ({ ...r })))
        },
      }
  }

  private makeNotifiers(): VmNotifiers {
    return {
      doorbell: (doorbell, onWrite) => {
        this.check()
        const space = doorbell.space ?? 'mmio'
        // KVM refuses a second ioeventfd on the same address, length and match (EEXIST).
        for (const live of this.doorbells) {
          const d = live.doorbell
          if ((d.space ?? 'mmio') === space && d.address === doorbell.address && d.length === doorbell.length)
            if (
              d.datamatch === undefined ||
              doorbell.datamatch === undefined ||
              d.datamatch === doorbell.datamatch
            )
              return undefined
        }
        // Like an eventfd: writes before the event loop's turn coalesce into one wake-up.
        let pending = false
        const live: LiveDoorbell = {
          doorbell: { ...doorbell, space },
          ring: () => {
            if (pending) return
            pending = true
            setImmediate(() => {
              pending = false
              if (this.doorbells.has(live)) onWrite()
            })
          },
        }
        this.doorbells.add(live)
        return { dispose: () => this.doorbells.delete(live) }
      },
      interrupt: (gsi): InterruptTrigger => {
        this.check()
        let live = true
        return {
          trigger: () => {
            if (live && !this.disposed) this.log.triggered.push(gsi)
          },
          dispose: () => {
            live = false
          },
        }
      },
    }
  }

  /** Offers a guest write to the doorbells; true when one took it (the write does not exit). */
  ringDoorbell(space: 'mmio' | 'pio', address: number, data: Uint8Array): boolean {
    for (const live of this.doorbells) {
      if (live.doorbell.space === space && rings(live.doorbell, address, data)) {
        live.ring()
        return true
      }
    }
    return false
  }

  mapRam(size: number): RamMapping {
    this.check()
    // Small chunks so tests exercise accesses that straddle chunks.
    const backing = RamBacking.allocate(size, Math.min(size, 1 << 30))
    const buffers: ArrayBuffer[] = []
    for (let at = 0; at < size; at += backing.chunkSize) {
      buffers.push(backing.view(at, Math.min(backing.chunkSize, size - at))!.buffer as ArrayBuffer)
    }
    const mapping: RamMapping = { buffers, chunkSize: backing.chunkSize, size }
    this.mappings.set(mapping, backing)
    return mapping
  }

  setMemorySlot(slot: MemorySlot): void {
    this.check()
    if (slot.size === 0) {
      this.slots.delete(slot.slot)
      return
    }
    const backing =
      this.mappings.get(slot.mapping) ?? new RamBacking(slot.mapping.buffers, slot.mapping.chunkSize)
    if (slot.mappingOffset + slot.size > backing.size)
      throw new RangeError(`slot ${slot.slot} runs past its mapping`)
    this.slots.set(slot.slot, { ...slot, backing })
  }

  createIrqchip(): void {
    this.check()
    this.log.irqchip = true
  }

  setIrqLine(irq: number, level: boolean): void {
    this.check()
    if (!this.log.irqchip) throw new Error('setIrqLine needs createIrqchip first')
    this.log.irqLevels.set(irq, level)
    this.log.irqEvents.push({ irq, level })
  }

  createVcpu(id: number): TestVcpu {
    this.check()
    if (this.vcpus.some((v) => v.id === id)) throw new Error(`vCPU ${id} exists`)
    const vcpu = new TestVcpu(id, this)
    this.vcpus.push(vcpu)
    return vcpu
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    for (const v of this.vcpus) v.kick()
    this.slots.clear()
    this.mappings.clear()
    this.doorbells.clear()
  }

  /** The slot holding guest `address`, as KVM would resolve it. */
  slotAt(address: number): (MemorySlot & { backing: RamBacking }) | undefined {
    for (const s of this.slots.values()) {
      if (address >= s.guestAddress && address < s.guestAddress + s.size) return s
    }
    return undefined
  }

  private check(): void {
    if (this.disposed) throw new Error('VM is disposed')
  }
}

function segment(selector: number, base: number, code: boolean): Segment {
  return {
    base: BigInt(base),
    limit: 0xffff,
    selector,
    type: code ? 11 : 3,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  }
}

/** How many instructions run between yields to the event loop, so kicks and timers get a turn. */
const SLICE = 4096

export class TestVcpu implements Vcpu {
  readonly cpu = new RealModeCpu()
  private kicked = false
  private running = false
  /**
   * Waiting, as a vCPU in KVM's in-kernel LAPIC would after a hlt the handler resumed, or as an
   * application processor (id != 0) with an irqchip does until INIT/SIPI. The interpreter has no
   * interrupts, so only a kick ends the wait.
   */
  private halted: boolean
  /** Instructions executed, for tests. */
  steps = 0

  constructor(
    readonly id: number,
    private readonly vm: TestVm,
  ) {
    this.halted = id !== 0 && vm.log.irqchip
  }

  getRegs(): Regs {
    const c = this.cpu
    const r = (i: number) => BigInt(c.reg16(i))
    return {
      rax: r(0),
      rcx: r(1),
      rdx: r(2),
      rbx: r(3),
      rsp: r(4),
      rbp: r(5),
      rsi: r(6),
      rdi: r(7),
      r8: 0n,
      r9: 0n,
      r10: 0n,
      r11: 0n,
      r12: 0n,
      r13: 0n,
      r14: 0n,
      r15: 0n,
      rip: BigInt(c.ip),
      rflags: BigInt(c.flags),
    }
  }

  setRegs(regs: Regs): void {
    const c = this.cpu
    const order = [regs.rax, regs.rcx, regs.rdx, regs.rbx, regs.rsp, regs.rbp, regs.rsi, regs.rdi]
    order.forEach((v, i) => {
      c.setReg16(i, Number(v & 0xffffn))
    })
    c.ip = Number(regs.rip & 0xffffn)
    c.flags = Number(regs.rflags & 0xffffn)
  }

  getSregs(): Sregs {
    const c = this.cpu
    const data = segment(c.ds, c.ds * 16, false)
    const zero = { base: 0n, limit: 0xffff }
    return {
      cs: segment(c.cs, c.csBase, true),
      ds: data,
      es: { ...data },
      fs: { ...data },
      gs: { ...data },
      ss: { ...data },
      tr: segment(0, 0, false),
      ldt: segment(0, 0, false),
      gdt: zero,
      idt: { ...zero },
      cr0: 0x60000010n,
      cr2: 0n,
      cr3: 0n,
      cr4: 0n,
      cr8: 0n,
      efer: 0n,
      apic_base: 0xfee00900n,
      interrupt_bitmap: [0n, 0n, 0n, 0n],
    }
  }

  setSregs(sregs: Sregs): void {
    if ((sregs.cr0 & 1n) !== 0n) throw new Error('the test hypervisor only runs real mode (CR0.PE = 0)')
    this.cpu.cs = sregs.cs.selector
    this.cpu.csBase = Number(sregs.cs.base)
    this.cpu.ds = sregs.ds.selector
  }

  kick(): void {
    this.kicked = true
  }

  async run(handler: ExitHandler): Promise<VcpuExit> {
    if (this.running) throw new Error(`vCPU ${this.id} is already running`)
    this.running = true
    try {
      return await this.loop(handler)
    } finally {
      this.running = false
    }
  }

  private async loop(handler: ExitHandler): Promise<VcpuExit> {
    const vm = this.vm
    const bus: CpuBus = {
      load: (address, data) => {
        const slot = vm.slotAt(address)
        if (slot === undefined || address + data.length > slot.guestAddress + slot.size) {
          handler.mmioRead(address, data, this)
        } else slot.backing.copyOut(slot.mappingOffset + address - slot.guestAddress, data)
      },
      store: (address, data) => {
        const slot = vm.slotAt(address)
        if (slot === undefined || slot.readOnly || address + data.length > slot.guestAddress + slot.size) {
          if (!vm.ringDoorbell('mmio', address, data)) handler.mmioWrite(address, data, this)
        } else slot.backing.copyIn(slot.mappingOffset + address - slot.guestAddress, data)
      },
      in: (port, data) => handler.pioIn(port, data, this),
      out: (port, data) => {
        if (!vm.ringDoorbell('pio', port, data)) handler.pioOut(port, data, this)
      },
    }
    for (;;) {
      for (let i = 0; i < SLICE; i++) {
        if (vm.disposed) return { kind: 'disposed' }
        let exit: VcpuExit | undefined
        if (this.kicked) {
          this.kicked = false
          exit = { kind: 'kick' }
        } else if (this.halted) {
          await new Promise((resolve) => setTimeout(resolve, 1))
          continue
        } else {
          this.steps++
          exit = this.cpu.step(bus)
        }
        if (exit !== undefined && handler.onExit(exit, this) === 'stop') return exit
        if (exit?.kind === 'hlt') this.halted = true
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
}
