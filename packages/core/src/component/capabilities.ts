// What a component can do beyond being built, one interface per capability. A component class
// implements the ones it has (structurally: the method names are the contract), and the machine
// finds each through its guard and drives it from one function (machine/drivers.ts). A new
// capability is a new interface, guard and driver here, not another optional method found by a
// loop of its own.
import type { Vcpu } from '../hypervisor.js'
import type { GuestMemory } from '../memory/guest-memory.js'

export interface LoadContext {
  readonly memory: GuestMemory
  readonly vcpus: readonly Vcpu[]
  /** Every component's `kernelCmdline`, in build order. */
  readonly kernelCmdline: readonly string[]
}

/** Puts images in guest memory and sets initial vCPU state, once every component is built. */
export interface Loadable {
  load(context: LoadContext): void | Promise<void>
}

/** Starts its own activity (host I/O, timers) before the vCPUs first run; in build order. */
export interface Startable {
  start(): void | Promise<void>
}

/** Ends its own activity when the run ends, in reverse build order; a throw fails the run. */
export interface Stoppable {
  stop(): void | Promise<void>
}

/**
 * Holds still while the machine is paused: after `pause` (called in reverse build order, once every
 * vCPU has left the guest) the component touches neither guest memory nor interrupt lines until
 * `resume` (build order, before the vCPUs run again).
 */
export interface Pausable {
  pause(): void | Promise<void>
  resume(): void | Promise<void>
}

/**
 * Goes back to its power-on state when the machine resets in place (Machine.reset, QMP
 * system_reset): called in build order on a machine whose vCPUs are out of the guest and whose
 * Pausable components are paused; guest RAM is then reloaded, so the component must not keep
 * guest addresses (queues, buffers) it was given before. A virtio device goes to status 0.
 */
export interface Resettable {
  reset(): void | Promise<void>
}

/**
 * A component whose state goes into a snapshot. The contract, for the snapshot work to fill in:
 * - `quiesce` is called on a paused machine (every vCPU out of the guest, every Pausable paused);
 *   it settles what is still in flight (a block request the host has not completed, bytes a
 *   back end has buffered) so that guest memory plus `saveState` describe the device completely.
 *   It may write guest memory (completing a request) but raises no interrupt: the guest sees the
 *   completion after resume or restore.
 * - `saveState` returns the component's state as data `structuredClone` can copy (no handles, no
 *   functions); the machine keys it by component id beside the pinned manifest.
 * - `restoreState` gets that data back on a component built from the same pinned manifest into a
 *   realized machine that has not started, before `load` would run (restore replaces load).
 */
export interface Snapshottable<State = unknown> {
  quiesce(): void | Promise<void>
  saveState(): State | Promise<State>
  restoreState(state: State): void | Promise<void>
}

/**
 * Properties the machine chose for the component while building it that its manifest node left
 * open (a PCI slot: the first free one then), merged into the snapshot's pinned manifest: a
 * restore must build the component there, whatever was plugged or unplugged before the snapshot.
 */
export interface ConfigPinner {
  pinnedConfig(): Record<string, unknown>
}

/** A component added to, or removed from, a running machine (Machine.hotplug / Machine.unplug). */
export interface Hotpluggable {
  /**
   * After start (and pause, on a paused machine): tell the guest it is there (a PCI hot-plug
   * notification). Throw when the guest cannot be told; the machine then removes the component.
   */
  plugged(): void | Promise<void>
  /**
   * Ask the guest to let go of the component (a PCI eject request); resolve once it has, after
   * which the machine stops and disposes it. Components that are not Hotpluggable cannot be
   * removed from a running machine.
   */
  unplug(): Promise<void>
}

/**
 * Asks the guest to shut itself down, as a user at the machine would: press the ACPI power button
 * or the keyboard's Power key. Returns true when this component delivered the request; what the
 * guest does with it is the guest's business (Machine.requestShutdown).
 */
export interface ShutdownRequester {
  requestShutdown(): boolean
}

/**
 * A kernel command-line parameter that announces this component to the guest, for devices the
 * guest cannot discover (`virtio_mmio.device=...`): a boot component appends the ones its command
 * line lacks (LoadContext.kernelCmdline). An empty string contributes nothing.
 */
export interface KernelCmdlineContributor {
  readonly kernelCmdline: string
}

/**
 * Releases what the component holds (fds, sockets, host memory); called once, in reverse build
 * order, or when the component is unplugged. vmm's own, not TC39's `Symbol.dispose` protocol.
 */
export interface Disposable {
  dispose(): void | Promise<void>
}

// The guards look at the instance when asked, not once at build time: a component may gain a
// method after it is built (tests do that to make a component misbehave).
const has = (x: unknown, name: string): boolean =>
  typeof x === 'object' && x !== null && typeof (x as Record<string, unknown>)[name] === 'function'

export const isLoadable = (x: unknown): x is Loadable => has(x, 'load')
export const isStartable = (x: unknown): x is Startable => has(x, 'start')
export const isStoppable = (x: unknown): x is Stoppable => has(x, 'stop')
export const isPausable = (x: unknown): x is Pausable => has(x, 'pause') && has(x, 'resume')
export const isResettable = (x: unknown): x is Resettable => has(x, 'reset')
export const isSnapshottable = (x: unknown): x is Snapshottable =>
  has(x, 'quiesce') && has(x, 'saveState') && has(x, 'restoreState')
export const isConfigPinner = (x: unknown): x is ConfigPinner => has(x, 'pinnedConfig')
export const isHotpluggable = (x: unknown): x is Hotpluggable => has(x, 'plugged') && has(x, 'unplug')
export const isShutdownRequester = (x: unknown): x is ShutdownRequester => has(x, 'requestShutdown')
export const isKernelCmdlineContributor = (x: unknown): x is KernelCmdlineContributor =>
  typeof x === 'object' &&
  x !== null &&
  typeof (x as Partial<KernelCmdlineContributor>).kernelCmdline === 'string'
export const isDisposable = (x: unknown): x is Disposable => has(x, 'dispose')
