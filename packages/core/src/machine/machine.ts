import '../vendor/reflect-metadata.js'
import { GUEST_ADDRESS_LIMIT, type GuestAddress, guestAddress, hex } from '../address.js'
import { isBusDevice, type UnhandledAccess } from '../bus/device.js'
import { MmioBus } from '../bus/mmio-bus.js'
import { PioBus } from '../bus/pio-bus.js'
import type { Component } from '../component/component-type.js'
import { ComponentRegistry } from '../component/registry.js'
import { ComponentResources } from '../component/resources.js'
import { type MachineControl, referenceToken, Tokens } from '../component/tokens.js'
import { registerBuiltins } from '../components/builtins.js'
import type {
  ExitAction,
  ExitHandler,
  Hypervisor,
  MemorySlot,
  RamMapping,
  Vcpu,
  VcpuExit,
  VirtualMachine,
} from '../hypervisor.js'
import { type InterruptLine, IrqChipLine } from '../irq/interrupt-line.js'
import { type ResolvedComponent, type ResolvedManifest, resolveManifest } from '../manifest/resolve.js'
import { manifestFromObject, readManifest } from '../manifest/source.js'
import { AddressSpace, MemoryRegion } from '../memory/address-space.js'
import { FlatMemory } from '../memory/flat-memory.js'
import type { SegmentedMemory } from '../memory/guest-memory.js'
import { RamBacking } from '../memory/ram-backing.js'
import { Container } from '../vendor/inversify.js'

export type MachineState = 'created' | 'realized' | 'loaded' | 'running' | 'paused' | 'stopped' | 'disposed'

/** How a run ended. `code` is what `vmm run` exits with. */
export interface MachineResult {
  readonly status: 'stopped' | 'guest-halt' | 'guest-poweroff' | 'guest-reset' | 'guest-exit' | 'failed'
  readonly code: number
  readonly reason: string
  /** The exit that ended it, if a vCPU exit did. */
  readonly exit?: VcpuExit
  readonly vcpu?: number
}

export type MachineEvent =
  | { readonly type: 'state'; readonly from: MachineState; readonly to: MachineState }
  | { readonly type: 'exit'; readonly vcpu: number; readonly exit: VcpuExit }
  | { readonly type: 'unhandled'; readonly access: UnhandledAccess }
  /** Something a device reported through MachineControl.report, e.g. the guest's boot-timer write. */
  | {
      readonly type: 'device'
      readonly source: string
      readonly name: string
      readonly data: Readonly<Record<string, unknown>>
    }

export interface ComponentTiming {
  readonly id: string
  readonly phase: 'build' | 'load' | 'start' | 'pause' | 'resume' | 'stop' | 'dispose'
  readonly ms: number
}

export interface BuiltComponent {
  readonly id: string
  readonly type: string
  readonly instance: unknown
  readonly resources: ComponentResources
}

export interface MachineOptions {
  readonly hypervisor: Hypervisor
  /** Types to use; a registry with the built-in types when absent. Plugins named by the manifest are added to it. */
  readonly registry?: ComponentRegistry
}

/**
 * A machine built from a manifest, driven through realize -> load -> start -> pause/resume -> stop
 * -> dispose. Only this class and the component modules touch the DI container (design idea 5).
 */
export class Machine {
  private stateValue: MachineState = 'created'
  private readonly listeners = new Set<(e: MachineEvent) => void>()
  private vm: VirtualMachine | undefined
  private memoryValue: SegmentedMemory | undefined
  /** Set with `memoryModel: stacked`. */
  private addressSpace: AddressSpace | undefined
  private readonly built: BuiltComponent[] = []
  private readonly vcpuList: Vcpu[] = []
  private runs: Promise<unknown>[] = []
  private result: MachineResult | undefined
  private pausing = false
  private resolveDone!: (r: MachineResult) => void
  /** Settles once, when every vCPU has stopped for good. */
  readonly done: Promise<MachineResult> = new Promise((r) => {
    this.resolveDone = r
  })
  readonly timings: ComponentTiming[] = []
  readonly pioBus = new PioBus((access) => this.emit({ type: 'unhandled', access }))
  readonly mmioBus = new MmioBus((access) => this.emit({ type: 'unhandled', access }))

  /** The DI container every component's own container descends from. */
  private root: Container | undefined
  /** hotplug and unplug, one at a time: each resolves against what the previous one left. */
  private changes: Promise<unknown> = Promise.resolve()
  /** Components added while the machine ran (Machine.hotplug): their nodes, resources pinned. */
  private readonly hotplugged = new Map<
    string,
    { node: Record<string, unknown>; resolved: ResolvedComponent }
  >()

  constructor(
    readonly manifest: ResolvedManifest,
    private readonly hypervisor: Hypervisor,
    /** The types the manifest was resolved with; Machine.hotplug needs them. */
    private readonly registry?: ComponentRegistry,
  ) {}

  /** Reads, resolves and realizes the manifest in `file`. */
  static async fromFile(file: string, options: MachineOptions): Promise<Machine> {
    const registry = options.registry ?? registerBuiltins(new ComponentRegistry())
    return Machine.realized(await resolveManifest(readManifest(file), registry), options.hypervisor, registry)
  }

  /** Resolves and realizes a manifest given as data; relative paths resolve from the working directory. */
  static async fromObject(manifest: Record<string, unknown>, options: MachineOptions): Promise<Machine> {
    const registry = options.registry ?? registerBuiltins(new ComponentRegistry())
    return Machine.realized(
      await resolveManifest(manifestFromObject(manifest), registry),
      options.hypervisor,
      registry,
    )
  }

  private static async realized(
    manifest: ResolvedManifest,
    hypervisor: Hypervisor,
    registry: ComponentRegistry,
  ): Promise<Machine> {
    const m = new Machine(manifest, hypervisor, registry)
    try {
      await m.realize()
    } catch (e) {
      await m.dispose()
      throw e
    }
    return m
  }

  get state(): MachineState {
    return this.stateValue
  }

  /** Guest memory: a FlatMemory, or with `memoryModel: stacked` the AddressSpace. */
  get memory(): SegmentedMemory {
    if (!this.memoryValue) throw new Error('the machine is not realized')
    return this.memoryValue
  }

  get vcpus(): readonly Vcpu[] {
    return this.vcpuList
  }

  get components(): readonly BuiltComponent[] {
    return this.built
  }

  /** The instance built for manifest node `id`. */
  component<T>(id: string): T {
    const c = this.built.find((b) => b.id === id)
    if (!c)
      throw new Error(`no component "${id}"; the machine has: ${this.built.map((b) => b.id).join(', ')}`)
    return c.instance as T
  }

  /** Subscribes to events; returns the unsubscribe function. */
  on(listener: (e: MachineEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private emit(e: MachineEvent): void {
    for (const l of this.listeners) l(e)
  }

  private setState(to: MachineState): void {
    const from = this.stateValue
    this.stateValue = to
    this.emit({ type: 'state', from, to })
  }

  private expect(...states: MachineState[]): void {
    if (!states.includes(this.stateValue)) {
      throw new Error(`machine is ${this.stateValue}; expected ${states.join(' or ')}`)
    }
  }

  private async timed<T>(id: string, phase: ComponentTiming['phase'], f: () => T | Promise<T>): Promise<T> {
    const t0 = performance.now()
    try {
      return await f()
    } finally {
      this.timings.push({ id, phase, ms: performance.now() - t0 })
    }
  }

  /** Creates the VM, guest RAM, vCPUs and every component, and maps devices onto the buses. */
  async realize(): Promise<void> {
    this.expect('created')
    const { machine, components, holes } = this.manifest
    const vm = this.hypervisor.createVm()
    this.vm = vm
    const mapping = vm.mapRam(machine.memory)
    const flat = new FlatMemory(new RamBacking(mapping.buffers, mapping.chunkSize), holes)
    if (machine.memoryModel === 'stacked') {
      // The same RAM layout as regions of a root container; components add theirs (a PCI BAR)
      // through Tokens.AddressSpace, and every re-flatten updates the hypervisor's slots.
      const system = MemoryRegion.container('system', GUEST_ADDRESS_LIMIT)
      for (const seg of flat.memorySegments) {
        system.addSubregion(
          MemoryRegion.ram(`ram@${hex(seg.start)}`, flat.backing, seg.backingOffset, seg.size),
          seg.start,
        )
      }
      this.addressSpace = new AddressSpace(system, ({ removed, added }) => {
        for (const s of removed) vm.setMemorySlot({ ...slotOf(s, mapping), size: 0 })
        for (const s of added) vm.setMemorySlot(slotOf(s, mapping))
      })
      this.memoryValue = this.addressSpace
    } else {
      this.memoryValue = flat
      for (const [slot, seg] of flat.memorySegments.entries()) {
        vm.setMemorySlot(slotOf({ ...seg, slot, guestAddress: guestAddress(seg.start) }, mapping))
      }
    }
    if (machine.irqchip) vm.createIrqchip()
    for (let i = 0; i < machine.vcpus; i++) this.vcpuList.push(vm.createVcpu(i))

    const root = new Container({ defaultScope: 'Singleton' })
    const control: MachineControl = {
      requestStop: (reason, code) => this.finish({ status: 'guest-exit', code, reason }),
      report: (source, name, data = {}) => this.emit({ type: 'device', source, name, data }),
    }
    root.bind(Tokens.GuestMemory).toConstantValue(this.memoryValue)
    root.bind(Tokens.PioBus).toConstantValue(this.pioBus)
    root.bind(Tokens.MmioBus).toConstantValue(this.mmioBus)
    root.bind(Tokens.VirtualMachine).toConstantValue(vm)
    root.bind(Tokens.MachineControl).toConstantValue(control)
    if (this.addressSpace) root.bind(Tokens.AddressSpace).toConstantValue(this.addressSpace)

    this.root = root
    for (const c of components) await this.build(c)
    this.setState('realized')
  }

  /** Builds one resolved component in a child container of the root and maps it onto its buses. */
  private async build(c: ResolvedComponent): Promise<BuiltComponent> {
    const vm = this.vm!
    const irqs = new Map<string, InterruptLine>()
    for (const [name, irq] of c.irqs) {
      irqs.set(name, new IrqChipLine(irq, (n, level) => vm.setIrqLine(n, level)))
    }
    const resources = new ComponentResources(c.id, c.windows, irqs)
    const child = new Container({ parent: this.root!, defaultScope: 'Singleton' })
    child.bind(Tokens.Config).toConstantValue(c.config)
    child.bind(Tokens.Id).toConstantValue(c.id)
    child.bind(Tokens.Resources).toConstantValue(resources)
    for (const [property, targets] of c.references) {
      const instances = targets.map((t) => this.component(t))
      child
        .bind(referenceToken(property))
        .toConstantValue(Array.isArray(c.config[property]) ? instances : instances[0])
    }
    const instance = await this.timed(c.id, 'build', () => {
      child.load(c.type.module)
      return child.get(Tokens.Component)
    })
    const built = { id: c.id, type: c.type.name, instance, resources }
    this.built.push(built)
    // A device is mapped at each of its windows; a component that is not a device maps itself.
    if (isBusDevice(instance)) {
      for (const [, w] of resources.allWindows()) {
        if (w.kind === 'pio') this.pioBus.insert(instance, w.base, w.size)
        else this.mmioBus.insert(instance, w.base, w.size)
      }
    }
    return built
  }

  /** Takes a component off its buses, stops and disposes it, and forgets it. */
  private async remove(b: BuiltComponent): Promise<void> {
    const comp = b.instance as Component
    if (isBusDevice(b.instance)) {
      for (const [, w] of b.resources.allWindows())
        (w.kind === 'pio' ? this.pioBus : this.mmioBus).remove(w.base)
    }
    const i = this.built.indexOf(b)
    if (i >= 0) this.built.splice(i, 1)
    this.hotplugged.delete(b.id)
    try {
      if (comp.stop && (this.stateValue === 'running' || this.stateValue === 'paused'))
        await this.timed(b.id, 'stop', () => comp.stop!())
    } finally {
      if (comp.dispose) await this.timed(b.id, 'dispose', () => comp.dispose!())
    }
  }

  /**
   * Adds component `id` to the running (or paused) machine: `node` is a manifest node, validated,
   * resolved and allocated against the machine as it is, then built, started and announced to the
   * guest (Component.plugged: a PCI device on a bridge with a hot-plug controller). Throws a
   * ManifestError for a bad node, and the component's error when it cannot join; nothing of it
   * stays behind then.
   */
  hotplug(id: string, node: Record<string, unknown>): Promise<void> {
    return this.serialized(() => this.hotplugNow(id, node))
  }

  private serialized<T>(f: () => Promise<T>): Promise<T> {
    const next = this.changes.then(f, f)
    this.changes = next.catch(() => {})
    return next
  }

  private async hotplugNow(id: string, node: Record<string, unknown>): Promise<void> {
    this.expect('running', 'paused')
    if (!this.registry)
      throw new Error(
        'hot-plug needs the machine built with Machine.fromFile or Machine.fromObject (it keeps their registry)',
      )
    if (this.built.some((b) => b.id === id)) throw new Error(`the machine has a component "${id}" already`)
    const source = this.manifest.source
    const components = {
      ...(source.data.components as Record<string, unknown>),
      ...Object.fromEntries([...this.hotplugged].map(([k, v]) => [k, v.node])),
      [id]: structuredClone(node),
    }
    // Plugins are loaded already: resolve against the registry, the nodes as the machine has them.
    const resolved = await resolveManifest(
      { ...source, data: { ...source.data, components }, plugins: [] },
      this.registry,
    )
    const c = resolved.components.find((r) => r.id === id)!
    const built = await this.build(c)
    try {
      const comp = built.instance as Component
      if (comp.start) await this.timed(id, 'start', () => comp.start!())
      if (this.stateValue === 'paused' && comp.pause) await comp.pause()
      if (comp.plugged) await comp.plugged()
    } catch (e) {
      await this.remove(built).catch(() => {})
      throw e
    }
    // Pinned, so that resolving the next addition leaves this one where it is.
    const resources = Object.fromEntries([
      ...[...c.windows].map(([k, w]) => [k, w.base]),
      ...[...c.irqs].map(([k, irq]) => [k, irq]),
    ])
    this.hotplugged.set(id, {
      node: { ...(components[id] as Record<string, unknown>), resources },
      resolved: c,
    })
    this.emit({ type: 'device', source: id, name: 'hotplugged', data: { type: c.type.name } })
  }

  /**
   * Removes component `id` from the running machine: asks the guest to let go of it
   * (Component.unplug, e.g. a PCI eject request), then stops and disposes it. Rejects when nothing
   * may remove it (no unplug, other components reference it) or the guest has not let go within
   * `timeoutMs`; the component is still there then.
   */
  unplug(id: string, timeoutMs = 60_000): Promise<void> {
    return this.serialized(() => this.unplugNow(id, timeoutMs))
  }

  private async unplugNow(id: string, timeoutMs: number): Promise<void> {
    this.expect('running', 'paused')
    const b = this.built.find((x) => x.id === id)
    if (!b)
      throw new Error(`no component "${id}"; the machine has: ${this.built.map((x) => x.id).join(', ')}`)
    const all = [...this.manifest.components, ...[...this.hotplugged.values()].map((h) => h.resolved)]
    const users = all.filter((c) => [...c.references.values()].some((targets) => targets.includes(id)))
    if (users.length > 0)
      throw new Error(`${id} cannot be removed: ${users.map((u) => u.id).join(', ')} refer(s) to it`)
    const comp = b.instance as Component
    if (typeof comp.unplug !== 'function')
      throw new Error(`${id} (${b.type}) cannot be removed from a running machine`)
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the guest did not release ${id} within ${timeoutMs / 1000} s`)),
        timeoutMs,
      )
    })
    try {
      await Promise.race([comp.unplug(), late])
    } finally {
      clearTimeout(timer)
    }
    await this.remove(b)
    this.emit({ type: 'device', source: id, name: 'unplugged', data: { type: b.type } })
  }

  /** Lets every component put its images in memory and set initial vCPU state. */
  async load(): Promise<void> {
    this.expect('realized')
    const kernelCmdline = this.built
      .map((c) => (c.instance as Component).kernelCmdline)
      .filter((p): p is string => typeof p === 'string' && p !== '')
    const context = { memory: this.memory, vcpus: this.vcpuList, kernelCmdline }
    for (const c of this.built) {
      const comp = c.instance as Component
      if (comp.load) await this.timed(c.id, 'load', () => comp.load!(context))
    }
    this.setState('loaded')
  }

  private async each(phase: 'start' | 'pause' | 'resume' | 'stop', reverse = false): Promise<void> {
    const list = reverse ? [...this.built].reverse() : this.built
    for (const c of list) {
      const f = (c.instance as Component)[phase]
      if (f) await this.timed(c.id, phase, () => f.call(c.instance))
    }
  }

  /** Starts the components and every vCPU. Await `done` (or use run()) for the end. */
  async start(): Promise<void> {
    this.expect('loaded')
    await this.each('start')
    this.setState('running')
    this.runVcpus()
  }

  /** realize (if needed), load, start, and wait for the guest or stop() to end the run. */
  async run(): Promise<MachineResult> {
    if (this.stateValue === 'created') await this.realize()
    await this.load()
    await this.start()
    return this.done
  }

  private runVcpus(): void {
    const handler = this.exitHandler()
    // run() promises never reject by contract; a hypervisor that breaks it still fails the run cleanly.
    this.runs = this.vcpuList.map((v) =>
      v.run(handler).catch((e: unknown) => {
        this.finish({
          status: 'failed',
          code: 1,
          reason: `vCPU ${v.id} failed: ${(e as Error).message}`,
          vcpu: v.id,
        })
      }),
    )
    void Promise.all(this.runs).then(() => {
      if (this.pausing) return
      this.finish({ status: 'stopped', code: 0, reason: 'stopped' })
      return this.stopAfterRun()
    })
  }

  /** Stops the components (reverse order) and settles `done`; a component failing to stop fails the run. */
  private async stopAfterRun(): Promise<void> {
    let result = this.result!
    if (this.stateValue === 'running' || this.stateValue === 'paused') {
      try {
        await this.each('stop', true)
      } catch (e) {
        result = {
          status: 'failed',
          code: 1,
          reason: `${result.reason}; then stopping failed: ${(e as Error).message}`,
        }
      }
      this.setState('stopped')
    }
    this.resolveDone(result)
  }

  /** Records how the run ended (the first reason wins) and makes every vCPU leave the guest. */
  private finish(result: MachineResult): void {
    if (this.result) return
    this.result = result
    for (const v of this.vcpuList) v.kick()
  }

  /** Stops the vCPUs, keeping their state, and pauses the components. */
  async pause(): Promise<void> {
    this.expect('running')
    this.pausing = true
    for (const v of this.vcpuList) v.kick()
    await Promise.all(this.runs)
    this.pausing = false
    if (this.result) {
      // The guest ended the run while we paused it.
      await this.stopAfterRun()
      return
    }
    await this.each('pause', true)
    this.setState('paused')
  }

  async resume(): Promise<void> {
    this.expect('paused')
    await this.each('resume')
    this.setState('running')
    this.runVcpus()
  }

  /**
   * Asks the guest to shut down cleanly through the first component that can ask (the ACPI power
   * button, the i8042 keyboard's Power key), in build order. Returns that component's id, or undefined
   * when none can (or the machine is not running); the run ends when the guest powers off,
   * and a caller that will not wait for ever follows up with stop().
   */
  requestShutdown(): string | undefined {
    if (this.stateValue !== 'running') return undefined
    for (const c of this.built) {
      const instance = c.instance as Component
      if (typeof instance.requestShutdown === 'function' && instance.requestShutdown()) return c.id
    }
    return undefined
  }

  /** Ends the run from outside; resolves with the result once everything has stopped. */
  async stop(): Promise<MachineResult> {
    if (this.stateValue === 'paused') {
      this.finish({ status: 'stopped', code: 0, reason: 'stopped' })
      await this.stopAfterRun()
    } else if (this.stateValue === 'running') {
      this.finish({ status: 'stopped', code: 0, reason: 'stopped' })
    } else {
      this.expect('running', 'paused')
    }
    return this.done
  }

  /** Stops if needed, then releases components (reverse build order), buses and the VM. Idempotent. */
  async dispose(): Promise<void> {
    if (this.stateValue === 'disposed') return
    if (this.stateValue === 'running' || this.stateValue === 'paused') await this.stop()
    const errors: unknown[] = []
    for (const c of [...this.built].reverse()) {
      const comp = c.instance as Component
      for (const [, w] of c.resources.allWindows()) {
        const bus = w.kind === 'pio' ? this.pioBus : this.mmioBus
        if (isBusDevice(c.instance)) bus.remove(w.base)
      }
      try {
        if (comp.dispose) await this.timed(c.id, 'dispose', () => comp.dispose!())
      } catch (e) {
        errors.push(e)
      }
    }
    this.built.length = 0
    this.vm?.dispose()
    this.setState('disposed')
    if (errors.length > 0) throw new AggregateError(errors, 'components failed to dispose')
  }

  private exitHandler(): ExitHandler {
    // Device code must not take the vCPU loop down: a throw fails the run with the device named.
    // Written out per access kind, without a closure per call: this is the path of every exit.
    const failed = (what: string, address: number, e: unknown, data?: Uint8Array) => {
      data?.fill(0xff)
      this.finish({
        status: 'failed',
        code: 1,
        reason: `${what} ${hex(address)}: device threw: ${(e as Error).message}`,
      })
    }
    const { pioBus, mmioBus } = this
    return {
      pioIn: (port, data) => {
        try {
          pioBus.read(port, data)
        } catch (e) {
          failed('port read', port, e, data)
        }
      },
      pioOut: (port, data) => {
        try {
          pioBus.write(port, data)
        } catch (e) {
          failed('port write', port, e)
        }
      },
      // MMIO regions of the stacked address space first (they move, e.g. BARs), then the bus.
      mmioRead: (address, data) => {
        try {
          if (!this.addressSpace?.mmioRead(address, data)) mmioBus.read(address, data)
        } catch (e) {
          failed('MMIO read', address, e, data)
        }
      },
      mmioWrite: (address, data) => {
        try {
          if (!this.addressSpace?.mmioWrite(address, data)) mmioBus.write(address, data)
        } catch (e) {
          failed('MMIO write', address, e)
        }
      },
      onExit: (exit, vcpu) => this.onExit(exit, vcpu),
    }
  }

  private onExit(exit: VcpuExit, vcpu: Vcpu): ExitAction {
    if (exit.kind !== 'kick') this.emit({ type: 'exit', vcpu: vcpu.id, exit })
    const end = (r: Omit<MachineResult, 'exit' | 'vcpu'>): ExitAction => {
      this.finish({ ...r, exit, vcpu: vcpu.id })
      return 'stop'
    }
    switch (exit.kind) {
      case 'kick':
        return this.pausing || this.result ? 'stop' : 'resume'
      case 'irq-window-open':
        return 'resume'
      case 'hlt':
        // With the in-kernel irqchip KVM waits for an interrupt itself; without it nothing can wake
        // the vCPU, so a halt is the guest saying it is done (how raw test guests end).
        return this.manifest.machine.irqchip
          ? 'resume'
          : end({ status: 'guest-halt', code: 0, reason: 'guest halted' })
      case 'system-event':
        if (exit.name === 'shutdown')
          return end({ status: 'guest-poweroff', code: 0, reason: 'guest powered off' })
        if (exit.name === 'reset')
          return end({ status: 'guest-reset', code: 0, reason: 'guest requested a reset' })
        return end({ status: 'failed', code: 1, reason: `guest system event: ${exit.name}` })
      case 'shutdown':
        return end({ status: 'failed', code: 1, reason: `vCPU ${vcpu.id}: triple fault (shutdown)` })
      case 'internal-error': {
        const bytes = [...exit.instructionBytes].map((b) => b.toString(16).padStart(2, '0')).join(' ')
        return end({
          status: 'failed',
          code: 1,
          reason: `vCPU ${vcpu.id}: internal error ${exit.suberror}${bytes ? ` at instruction bytes ${bytes}` : ''}`,
        })
      }
      case 'fail-entry':
        return end({
          status: 'failed',
          code: 1,
          reason: `vCPU ${vcpu.id}: VM entry failed (hardware reason ${hex(Number(exit.hardwareReason))})`,
        })
      case 'error':
        return end({ status: 'failed', code: 1, reason: `vCPU ${vcpu.id}: running failed with ${exit.code}` })
      case 'disposed':
        return end({ status: 'stopped', code: 0, reason: 'the VM was disposed' })
      default:
        return end({ status: 'failed', code: 1, reason: `vCPU ${vcpu.id}: unexpected ${exit.kind} exit` })
    }
  }
}

/** A hypervisor memory slot for a piece of guest RAM; all of it comes from the machine's one mapping. */
function slotOf(
  s: { slot: number; guestAddress: GuestAddress; size: number; backingOffset: number; readOnly: boolean },
  mapping: RamMapping,
): MemorySlot {
  return {
    slot: s.slot,
    guestAddress: s.guestAddress,
    size: s.size,
    mapping,
    mappingOffset: s.backingOffset,
    readOnly: s.readOnly,
  }
}
