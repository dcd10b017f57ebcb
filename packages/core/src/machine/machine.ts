// The machine's lifecycle: realize -> load -> start -> pause/resume -> stop -> dispose, its state
// machine, its events and how a run's end is decided (the first reason wins). The other jobs live
// beside it: builder.ts (the composition root), hotplug.ts, exit-policy.ts (what a vCPU exit or a
// guest stopping itself means for the run), drivers.ts (one driver per component capability),
// ../snapshot (what a snapshot holds and how it is written, read and put back).
// Over 400 lines on purpose: snapshot() and restore() need the lifecycle's private state (the VM,
// the built components, the state machine) and are thin calls into ../snapshot; moving them out
// would mean widening that state to the package.
import '../third-party/reflect-metadata.js'
import { MmioBus } from '../bus/mmio-bus.js'
import { PioBus } from '../bus/pio-bus.js'
import { ComponentRegistry } from '../component/registry.js'
import type { GuestStopKind, MachineControl } from '../component/tokens.js'
import { registerBuiltins } from '../components/builtins.js'
import type { ExitAction, Hypervisor, Vcpu, VcpuExit, VirtualMachine } from '../hypervisor.js'
import { printEffective } from '../manifest/print.js'
import { type ResolvedComponent, type ResolvedManifest, resolveManifest } from '../manifest/resolve.js'
import { manifestFromObject, readManifest } from '../manifest/source.js'
import type { SegmentedMemory } from '../memory/guest-memory.js'
import {
  loadSnapshot,
  type RestoreOptions,
  resolveRestoredManifest,
  restoreInto,
  type SnapshotHeader,
  snapshotMachine,
} from '../snapshot/index.js'
import { buildComponent, buildPlatform, type Platform, unmapComponent } from './builder.js'
import * as drive from './drivers.js'
import { exitHandler, guestStopResult, judgeExit } from './exit-policy.js'
import { Hotplug } from './hotplug.js'
import { BootImage, recordingMemory } from './reset.js'
import { ComponentError, describeThrown } from './thrown.js'
import type {
  BuiltComponent,
  ComponentTiming,
  MachineEvent,
  MachineOptions,
  MachineResult,
  MachineState,
} from './types.js'

export { ComponentError, describeThrown } from './thrown.js'
export type * from './types.js'

// Build, load and start errors name the component (issue 13 item 7); one already named is kept.
const blame = (id: string, phase: string, e: unknown): unknown =>
  e instanceof ComponentError || phase === 'dispose' ? e : new ComponentError(id, phase, e)

/**
 * A machine built from a manifest, driven through realize -> load -> start -> pause/resume -> stop
 * -> dispose. Only the composition root (builder.ts) and the component modules touch the DI
 * container (design idea 5).
 */
export class Machine {
  private stateValue: MachineState = 'created'
  private readonly listeners = new Set<(e: MachineEvent) => void>()
  private vm: VirtualMachine | undefined
  private platform: Platform | undefined
  private readonly built: BuiltComponent[] = []
  private runs: Promise<unknown>[] = []
  private result: MachineResult | undefined
  private pausing = false
  /** Set by Machine.restore: guest RAM comes from this snapshot memory file. */
  private ramFile: string | undefined
  /** What reset() puts back (reset.ts), taken when load() is done; why not, where it could not be. */
  private bootImage: BootImage | string = 'the machine has not loaded'
  /** The guest clock (hypervisor feature x86.clock) as it was when the machine paused. */
  private pausedClock: Uint8Array | undefined
  private resolveDone!: (r: MachineResult) => void
  /** Settles once, when every vCPU has stopped for good. */
  readonly done: Promise<MachineResult> = new Promise((r) => {
    this.resolveDone = r
  })
  readonly timings: ComponentTiming[] = []
  readonly pioBus = new PioBus((access) => this.emit({ type: 'unhandled', access }))
  readonly mmioBus = new MmioBus((access) => this.emit({ type: 'unhandled', access }))
  private readonly changes: Hotplug

  constructor(
    readonly manifest: ResolvedManifest,
    /** What runs the vCPUs ("kvm", "test"): a control plane reports it (QMP query-kvm). */
    readonly hypervisor: Hypervisor,
    /** The types the manifest was resolved with; Machine.hotplug needs them, a control plane lists them. */
    readonly registry?: ComponentRegistry,
  ) {
    this.changes = new Hotplug(manifest, registry, {
      state: () => this.stateValue,
      components: () => this.built,
      expect: (...states) => this.expect(...states),
      build: (c) => this.build(c),
      detach: (b) => this.detach(b),
      timed: this.timed,
      emit: (e) => this.emit(e),
    })
  }

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

  /**
   * A machine from snapshot directory `dir` (Machine.snapshot), paused: built from the pinned
   * manifest with guest RAM mapped copy-on-write from the memory file (the directory is never
   * written), every vCPU, the VM and every component restored. Call resume() to run it. Refuses a
   * bad or foreign snapshot, or one from another host, before any vCPU runs.
   */
  static async restore(dir: string, options: RestoreOptions): Promise<Machine> {
    const snap = loadSnapshot(dir)
    const registry = options.registry ?? registerBuiltins(new ComponentRegistry())
    const manifest = await resolveRestoredManifest(snap, options.overrides ?? [], registry)
    const m = new Machine(manifest, options.hypervisor, registry)
    m.ramFile = snap.memoryFile
    m.bootImage = 'it was restored from a snapshot, so what its loaders wrote is not known'
    try {
      await m.realize()
      await restoreInto({ vm: m.vm!, vcpus: m.vcpus, components: m.built }, snap)
      // Restore replaces load, not start: back ends (a serial console, a socket) attach in start,
      // and the components are then paused as Machine.pause leaves them, so resume finds them so.
      await drive.startComponents(m.built, m.timed)
      await drive.pauseComponents(m.built, m.timed)
    } catch (e) {
      await m.dispose()
      throw e
    }
    m.setState('paused')
    return m
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
    if (!this.platform) throw new Error('the machine is not realized')
    return this.platform.memory
  }

  get vcpus(): readonly Vcpu[] {
    return this.platform?.vcpus ?? []
  }

  /** The hypervisor's VM once realized: its optional parts (e.g. `vcpuSeccomp`) for a sandbox. */
  get virtualMachine(): VirtualMachine | undefined {
    return this.vm
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

  private readonly timed: drive.Timed = async (id, phase, f) => {
    const t0 = performance.now()
    try {
      return await f()
    } catch (e) {
      throw blame(id, phase, e)
    } finally {
      this.timings.push({ id, phase, ms: performance.now() - t0 })
    }
  }

  /** Creates the VM, guest RAM, vCPUs and every component, and maps devices onto the buses. */
  async realize(): Promise<void> {
    this.expect('created')
    this.platform = buildPlatform(
      this.manifest,
      this.hypervisor,
      this,
      (vm) => {
        this.vm = vm
      },
      this.ramFile,
    )
    for (const c of this.manifest.components) await this.build(c)
    this.setState('realized')
  }

  /** Builds one resolved component (builder.ts) and adds it to the machine's components. */
  private async build(c: ResolvedComponent): Promise<BuiltComponent> {
    const built = await buildComponent(this.platform!, c, {
      instance: (id) => this.component(id),
      control: this.controlFor(c.id),
      timed: this.timed,
    })
    this.built.push(built)
    return built
  }

  /** The MachineControl component `source` gets: what it reports is reported as coming from it. */
  private controlFor(source: string): MachineControl {
    return {
      guestStopped: (kind, reason) => this.guestStopped(kind, reason, source),
      requestStop: (reason, code) => this.finish({ status: 'guest-exit', code, reason }),
      report: (from, name, data = {}) => this.emit({ type: 'device', source: from, name, data }),
    }
  }

  /**
   * The guest stopped itself, however that was seen (a component through MachineControl, a vCPU
   * exit through the exit policy): one result per kind and, when it is what ends the run, one
   * `guest` event.
   */
  private guestStopped(
    kind: GuestStopKind,
    reason: string,
    source: string,
    cause?: { exit: VcpuExit; vcpu: number },
  ): void {
    if (this.result) return
    this.finish({ ...guestStopResult(kind, reason), ...cause })
    this.emit({ type: 'guest', kind, reason, source })
  }

  /** Takes `b` off its buses and out of the machine's components (Hotplug then stops and disposes it). */
  private detach(b: BuiltComponent): void {
    unmapComponent(this, b)
    const i = this.built.indexOf(b)
    if (i >= 0) this.built.splice(i, 1)
  }

  /**
   * Adds component `id` to the running (or paused) machine: `node` is a manifest node, validated,
   * resolved and allocated against the machine as it is, then built, started and announced to the
   * guest (Hotpluggable.plugged: a PCI device on a bridge with a hot-plug controller). Throws a
   * ManifestError for a bad node, and the component's error when it cannot join; nothing of it
   * stays behind then.
   */
  hotplug(id: string, node: Record<string, unknown>): Promise<void> {
    return this.changes.hotplug(id, node)
  }

  /**
   * Removes component `id` from the running machine: asks the guest to let go of it
   * (Hotpluggable.unplug, e.g. a PCI eject request), then stops and disposes it. Rejects when
   * nothing may remove it (not Hotpluggable, other components reference it) or the guest has not
   * let go within `timeoutMs`; the component is still there then.
   */
  unplug(id: string, timeoutMs = 60_000): Promise<void> {
    return this.changes.unplug(id, timeoutMs)
  }

  /** Lets every component put its images in memory and set initial vCPU state. */
  async load(): Promise<void> {
    this.expect('realized')
    const touched: [number, number][] = []
    const context = {
      memory: recordingMemory(this.memory, touched),
      vcpus: this.vcpus,
      kernelCmdline: drive.kernelCmdlines(this.built),
    }
    await drive.loadComponents(this.built, context, this.timed)
    try {
      this.bootImage = BootImage.capture(this.memory, touched, this.vcpus, this.vm!)
    } catch (e) {
      this.bootImage = `its state after load could not be read (${describeThrown(e)})`
    }
    this.setState('loaded')
  }

  /** Starts the components and every vCPU. Await `done` (or use run()) for the end. */
  async start(): Promise<void> {
    this.expect('loaded')
    await drive.startComponents(this.built, this.timed)
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
    const platform = this.platform!
    const handler = exitHandler({
      pioBus: this.pioBus,
      mmioBus: this.mmioBus,
      addressSpace: platform.addressSpace,
      ownerOfPort: (port) => {
        const device = this.pioBus.lookup(port)?.device
        return this.built.find((b) => b.instance === device)?.id
      },
      fail: (end) => this.finish(end),
      onExit: (exit, vcpu) => this.onExit(exit, vcpu),
    })
    // run() promises never reject by contract; a hypervisor that breaks it still fails the run cleanly.
    this.runs = platform.vcpus.map((v) =>
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

  /** Carries out the exit policy's verdict on one exit. */
  private onExit(exit: VcpuExit, vcpu: Vcpu): ExitAction {
    if (exit.kind !== 'kick') this.emit({ type: 'exit', vcpu: vcpu.id, exit })
    const verdict = judgeExit(exit, vcpu.id, {
      irqchip: this.manifest.machine.irqchip,
      leaving: this.pausing || this.result !== undefined,
    })
    switch (verdict.action) {
      case 'resume':
      case 'stop':
        return verdict.action
      case 'end':
        this.finish({ ...verdict.end, exit, vcpu: vcpu.id })
        return 'stop'
      case 'guest-stopped':
        this.guestStopped(verdict.kind, verdict.reason, `vcpu ${vcpu.id}`, { exit, vcpu: vcpu.id })
        return 'stop'
    }
  }

  /** Stops the components (reverse order) and settles `done`; a component failing to stop fails the run. */
  private async stopAfterRun(): Promise<void> {
    let result = this.result!
    if (this.stateValue === 'running' || this.stateValue === 'paused') {
      try {
        await drive.stopComponents(this.built, this.timed)
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
    for (const v of this.vcpus) v.kick()
  }

  /** Stops the vCPUs, keeping their state, and pauses the components. */
  async pause(): Promise<void> {
    this.expect('running')
    this.pausing = true
    for (const v of this.vcpus) v.kick()
    await Promise.all(this.runs)
    this.pausing = false
    if (this.result) {
      // The guest ended the run while we paused it.
      await this.stopAfterRun()
      return
    }
    await drive.pauseComponents(this.built, this.timed)
    // The guest's clock holds still while paused, as QEMU's kvmclock does on stop/cont
    // (KVM_GET_CLOCK here, KVM_SET_CLOCK at resume): the guest sees no time pass.
    this.pausedClock = this.vm?.x86?.clock?.get()
    this.setState('paused')
  }

  /**
   * The machine as it is now as a manifest (YAML): every resource pinned, what components chose at
   * build pinned too (ConfigPinner: a PCI slot), hot-plugged components in, unplugged ones out.
   * What a snapshot records, so that a restore builds this machine and no other.
   */
  pinnedManifest(): string {
    return printEffective(this.changes.current(), drive.pinnedConfigs(this.built))
  }

  /**
   * Writes the paused machine into snapshot directory `dir` (which must not exist): pinned
   * manifest, vCPU and VM state, every component's state, guest RAM. Refuses, naming why, before
   * writing anything when some part cannot be saved; the machine stays paused either way.
   */
  snapshot(dir: string): Promise<SnapshotHeader> {
    const p = this.platform
    if (!p) throw new Error('the machine is not realized')
    return snapshotMachine(
      {
        state: this.stateValue,
        manifest: this.pinnedManifest(),
        vm: p.vm,
        vcpus: p.vcpus,
        components: this.built,
        ram: p.ram,
        pausedClock: this.pausedClock,
      },
      dir,
    )
  }

  async resume(): Promise<void> {
    this.expect('paused')
    if (this.pausedClock) this.vm?.x86?.clock?.set(this.pausedClock)
    this.pausedClock = undefined
    await drive.resumeComponents(this.built, this.timed)
    this.setState('running')
    this.runVcpus()
  }

  /**
   * Resets the machine in place, as a PC's reset line does (reset.ts): the vCPUs leave the guest,
   * Resettable components go back to power-on, guest RAM holds again exactly what the loaders
   * wrote, the vCPUs and the in-kernel irqchip/PIT are as they were after load; a running machine
   * runs on from there, a paused one stays paused. Refuses, saying why, on a machine restored from
   * a snapshot (what its loaders wrote is not known).
   */
  async reset(): Promise<void> {
    this.expect('running', 'paused')
    const image = this.bootImage
    if (typeof image === 'string') throw new Error(`reset: this machine cannot reset in place: ${image}`)
    if (this.pausing) throw new Error('reset: the machine is pausing; try again once it has')
    const running = this.stateValue === 'running'
    if (running) {
      this.pausing = true
      for (const v of this.vcpus) v.kick()
      await Promise.all(this.runs)
      this.pausing = false
      if (this.result) {
        await this.stopAfterRun()
        throw new Error(`reset: the run ended first (${this.result.reason})`)
      }
      await drive.pauseComponents(this.built, this.timed)
    }
    await drive.resetComponents(this.built, this.timed)
    image.apply(this.memory, this.platform!.ram, this.vcpus, this.vm!)
    if (running) {
      await drive.resumeComponents(this.built, this.timed)
      this.runVcpus()
    }
  }

  /**
   * Asks the guest to shut down cleanly through the first component that can ask (the ACPI power
   * button, the i8042 keyboard's Power key), in build order. Returns that component's id, or undefined
   * when none can (or the machine is not running); the run ends when the guest powers off,
   * and a caller that will not wait for ever follows up with stop().
   */
  requestShutdown(): string | undefined {
    if (this.stateValue !== 'running') return undefined
    return drive.requestShutdown(this.built)
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
    for (const c of this.built) unmapComponent(this, c)
    const errors = await drive.disposeComponents(this.built, this.timed)
    this.built.length = 0
    this.vm?.dispose()
    this.setState('disposed')
    if (errors.length > 0)
      throw new AggregateError(
        errors,
        `components failed to dispose: ${errors.map((e) => (e instanceof Error ? e.message : describeThrown(e))).join('; ')}`,
      )
  }
}
