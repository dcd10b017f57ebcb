// Hot-plug: components added to and removed from a running machine, one change at a time, each
// resolved through the same resolver as boot against the machine as it is then.
import type { ComponentRegistry } from '../component/registry.js'
import { type ResolvedComponent, type ResolvedManifest, resolveManifest } from '../manifest/resolve.js'
import {
  announce,
  disposeComponents,
  pauseComponents,
  release,
  startComponents,
  stopComponents,
  type Timed,
} from './drivers.js'
import type { BuiltComponent, MachineEvent, MachineState } from './types.js'

/** What hot-plug needs from the machine it changes. */
export interface HotplugHost {
  state(): MachineState
  components(): readonly BuiltComponent[]
  /** Expects the machine to be in one of `states`; throws otherwise. */
  expect(...states: MachineState[]): void
  /** Builds `c` and adds it to the machine's components. */
  build(c: ResolvedComponent): Promise<BuiltComponent>
  /** Takes a component off its buses and out of the machine's components. */
  detach(b: BuiltComponent): void
  readonly timed: Timed
  emit(e: MachineEvent): void
}

export class Hotplug {
  /** hotplug and unplug, one at a time: each resolves against what the previous one left. */
  private changes: Promise<unknown> = Promise.resolve()
  /** Components added while the machine ran: their nodes, resources pinned. */
  private readonly added = new Map<string, { node: Record<string, unknown>; resolved: ResolvedComponent }>()

  constructor(
    private readonly manifest: ResolvedManifest,
    /** The types the manifest was resolved with; undefined for a machine built from a ResolvedManifest. */
    private readonly registry: ComponentRegistry | undefined,
    private readonly host: HotplugHost,
  ) {}

  /**
   * The machine as it is now, for a snapshot's pinned manifest: the manifest's components still
   * built (an unplugged one is gone) and then every hot-plugged one, in the order they were built,
   * so that a restore builds the same components in the same order.
   */
  current(): ResolvedManifest {
    const built = new Set(this.host.components().map((b) => b.id))
    return {
      ...this.manifest,
      components: [
        ...this.manifest.components.filter((c) => built.has(c.id)),
        ...[...this.added.values()].map((a) => a.resolved),
      ],
    }
  }

  /** See Machine.hotplug. */
  hotplug(id: string, node: Record<string, unknown>): Promise<void> {
    return this.serialized(() => this.add(id, node))
  }

  /** See Machine.unplug. */
  unplug(id: string, timeoutMs: number): Promise<void> {
    return this.serialized(() => this.take(id, timeoutMs))
  }

  private serialized<T>(f: () => Promise<T>): Promise<T> {
    const next = this.changes.then(f, f)
    this.changes = next.catch(() => {})
    return next
  }

  private async add(id: string, node: Record<string, unknown>): Promise<void> {
    const host = this.host
    host.expect('running', 'paused')
    if (!this.registry)
      throw new Error(
        'hot-plug needs the machine built with Machine.fromFile or Machine.fromObject (it keeps their registry)',
      )
    if (host.components().some((b) => b.id === id))
      throw new Error(`the machine has a component "${id}" already`)
    const source = this.manifest.source
    const components = {
      ...(source.data.components as Record<string, unknown>),
      ...Object.fromEntries([...this.added].map(([k, v]) => [k, v.node])),
      [id]: structuredClone(node),
    }
    // Plugins are loaded already: resolve against the registry, the nodes as the machine has them.
    const resolved = await resolveManifest(
      { ...source, data: { ...source.data, components }, plugins: [] },
      this.registry,
    )
    const c = resolved.components.find((r) => r.id === id)!
    const built = await host.build(c)
    try {
      await this.join(built)
    } catch (e) {
      await this.remove(built).catch(() => {})
      throw e
    }
    // Pinned, so that resolving the next addition leaves this one where it is.
    const resources = Object.fromEntries([
      ...[...c.windows].map(([k, w]) => [k, w.base]),
      ...[...c.irqs].map(([k, irq]) => [k, irq]),
    ])
    this.added.set(id, {
      node: { ...(components[id] as Record<string, unknown>), resources },
      resolved: c,
    })
    host.emit({ type: 'device', source: id, name: 'hotplugged', data: { type: c.type.name } })
  }

  private async take(id: string, timeoutMs: number): Promise<void> {
    const host = this.host
    host.expect('running', 'paused')
    const b = host.components().find((x) => x.id === id)
    if (!b)
      throw new Error(
        `no component "${id}"; the machine has: ${host
          .components()
          .map((x) => x.id)
          .join(', ')}`,
      )
    const all = [...this.manifest.components, ...[...this.added.values()].map((h) => h.resolved)]
    const users = all.filter((c) => [...c.references.values()].some((targets) => targets.includes(id)))
    if (users.length > 0)
      throw new Error(`${id} cannot be removed: ${users.map((u) => u.id).join(', ')} refer(s) to it`)
    await release(b, timeoutMs)
    await this.remove(b)
    host.emit({ type: 'device', source: id, name: 'unplugged', data: { type: b.type } })
  }

  /** A component built on a running or paused machine: start it, pause it if the machine is, announce it. */
  private async join(b: BuiltComponent): Promise<void> {
    await startComponents([b], this.host.timed)
    if (this.host.state() === 'paused') await pauseComponents([b], this.host.timed)
    await announce(b)
  }

  /** Takes a component off its buses, stops and disposes it, and forgets it. */
  private async remove(b: BuiltComponent): Promise<void> {
    const { host } = this
    host.detach(b)
    this.added.delete(b.id)
    // Disposed even when it fails to stop; a failure to dispose is the one reported then.
    let stopFailure: { error: unknown } | undefined
    try {
      const state = host.state()
      if (state === 'running' || state === 'paused') await stopComponents([b], host.timed)
    } catch (error) {
      stopFailure = { error }
    }
    const [disposeError] = await disposeComponents([b], host.timed)
    if (disposeError !== undefined) throw disposeError
    if (stopFailure) throw stopFailure.error
  }
}
