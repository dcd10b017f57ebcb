// The command layer: typed verbs over one Machine and the events it emits, transport-neutral
// (the QMP server in qmp/ is one adapter; a REST adapter could be another). Each verb declares
// its arguments (args.ts), which are checked before the verb runs; verbs never block the vCPUs
// (pause and hot-plug are the Machine's own asynchronous operations).
import type { Machine, MachineResult } from '@vmm/core'
import { type ArgsSpec, validateArgs } from './args.js'
import type { Backend } from './backends.js'
import { CommandError } from './errors.js'
import { type ControlEvent, controlEvents } from './events.js'
import type { TypeSpec } from './introspect.js'
import { VERBS } from './verbs.js'

/** What we are, for query-version and a QMP greeting. */
export interface VersionInfo {
  /** The QEMU version we answer as: the QMP dialect we follow (clients gate features on it). */
  readonly qemu: { readonly major: number; readonly minor: number; readonly micro: number }
  readonly package: string
}

export const DEFAULT_VERSION: VersionInfo = {
  qemu: { major: 7, minor: 2, micro: 0 },
  package: 'vmm-0.1.0 (TypeScript VMM on KVM; QMP per QEMU 7.2)',
}

/** A balloon as the controller sees it (virtio-balloon's device, found by shape). */
export interface BalloonSource {
  readonly actualPages: number
  watchActual?(listener: (pages: number) => void): () => void
}

/** Who the machine is, for query-name and query-uuid (QEMU's -name and -uuid). */
export interface MachineIdentity {
  readonly name?: string
  readonly uuid?: string
}

export interface Verb {
  readonly args: ArgsSpec
  /** What `return` holds, for query-qmp-schema; absent: `{}`. */
  readonly returns?: TypeSpec
  readonly description: string
  run(c: Controller, args: Record<string, unknown>): unknown | Promise<unknown>
}

/**
 * One machine's control surface. `execute(name, args)` runs a verb by name (what a wire protocol
 * calls); `on(listener)` gets the events. Several transports and clients may share one.
 */
export class Controller {
  private readonly listeners = new Set<(e: ControlEvent) => void>()
  private readonly unsubscribe: () => void
  /** blockdev-add / netdev_add / chardev-add back ends, by name. */
  readonly backends = new Map<string, Backend>()
  /** Nodes added through device_add, for query-block. */
  readonly added = new Map<string, Record<string, unknown>>()
  /** Why the host ended the run, when it did (quit, system_powerdown ...): the SHUTDOWN reason. */
  hostReason: string | undefined
  private shutdownSent = false
  private balloonWatch: ReturnType<typeof setInterval> | undefined
  private readonly balloonSubscribed = new Map<BalloonSource, () => void>()

  constructor(
    readonly machine: Machine,
    readonly version: VersionInfo = DEFAULT_VERSION,
    readonly identity: MachineIdentity = {},
  ) {
    this.unsubscribe = machine.on((e) => {
      for (const ce of controlEvents(e)) this.emit(ce)
    })
    void machine.done.then((r) => this.ended(r))
  }

  /** The verbs' names, for query-commands. */
  get commands(): readonly string[] {
    return Object.keys(VERBS)
  }

  /** Subscribes to events; returns the unsubscribe function. */
  on(listener: (e: ControlEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  emit(e: Omit<ControlEvent, 'at'> & { at?: number }): void {
    const event: ControlEvent = { ...e, at: e.at ?? Date.now() }
    if (event.event === 'SHUTDOWN') {
      if (this.shutdownSent) return
      this.shutdownSent = true
    }
    for (const l of this.listeners) {
      try {
        l(event)
      } catch {
        // One listener's failure is its own business; the others still hear the event.
      }
    }
  }

  /**
   * Checks `args` against the verb's declaration, then runs it. Throws CommandError:
   * CommandNotFound for an unknown name, GenericError for bad arguments (before any side
   * effect) or a verb that fails, DeviceNotFound / DeviceNotActive where QEMU uses them.
   */
  async execute(name: string, args?: unknown): Promise<unknown> {
    const verb = Object.hasOwn(VERBS, name) ? VERBS[name] : undefined
    if (!verb) throw new CommandError('CommandNotFound', `The command ${name} has not been found`)
    const checked = validateArgs(name, verb.args, args)
    return (await verb.run(this, checked)) ?? {}
  }

  /** Argument declaration of a verb, or undefined. */
  verb(name: string): Verb | undefined {
    return Object.hasOwn(VERBS, name) ? VERBS[name] : undefined
  }

  /**
   * BALLOON_CHANGED {actual} whenever the guest's balloon changes: from the device itself where it
   * reports its `actual` (virtio-balloon's watchActual, once per device), else by polling until
   * `target` is reached.
   */
  watchBalloon(device: BalloonSource, ram: number, target: number, page: number): void {
    const bytes = (pages: number) => ram - pages * page
    if (typeof device.watchActual === 'function') {
      if (this.balloonSubscribed.has(device)) return
      this.balloonSubscribed.set(
        device,
        device.watchActual((pages) =>
          this.emit({ event: 'BALLOON_CHANGED', data: { actual: bytes(pages) } }),
        ),
      )
      return
    }
    if (this.balloonWatch) clearInterval(this.balloonWatch)
    let last = device.actualPages
    const deadline = Date.now() + 60_000
    this.balloonWatch = setInterval(() => {
      const now = device.actualPages
      if (now !== last) this.emit({ event: 'BALLOON_CHANGED', data: { actual: bytes(now) } })
      last = now
      if (bytes(now) === target || Date.now() > deadline || this.machine.state === 'stopped') {
        clearInterval(this.balloonWatch)
        this.balloonWatch = undefined
      }
    }, 100)
    this.balloonWatch.unref?.()
  }

  /** The run ended: one SHUTDOWN, whoever ended it (a guest's own comes first through its event). */
  private ended(r: MachineResult): void {
    const guest = r.status.startsWith('guest-')
    this.emit({
      event: 'SHUTDOWN',
      data: { guest, reason: guest ? 'guest-shutdown' : (this.hostReason ?? 'host-signal') },
    })
    if (this.balloonWatch) clearInterval(this.balloonWatch)
  }

  /** Stops listening to the machine. */
  close(): void {
    this.unsubscribe()
    for (const off of this.balloonSubscribed.values()) off()
    this.balloonSubscribed.clear()
    this.listeners.clear()
    if (this.balloonWatch) clearInterval(this.balloonWatch)
  }
}
