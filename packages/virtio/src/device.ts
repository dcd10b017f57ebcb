import type { GuestMemory, SavedState } from '@vmm/core'
import type { DescriptorChain, SplitQueue } from './queue/split-queue.js'

/**
 * What an activated device gets from its transport (MMIO today, PCI later). A device keeps it until
 * reset; after a reset `active` is false and every method is a no-op, so an I/O completion that
 * arrives late cannot touch the rings of a re-initialised queue.
 */
export interface DeviceContext {
  readonly memory: GuestMemory
  /** One per queue the device declared, configured by the driver; only `ready` ones may be used. */
  readonly queues: readonly SplitQueue[]
  /** The features the driver accepted (device and transport bits). */
  readonly features: bigint
  readonly active: boolean
  /** Interrupts the driver for queue `index` if it asked to be told (§2.7.7 / §2.7.10). */
  signalUsed(index: number): void
  /** The device's configuration changed: new config generation and a config interrupt (§2.5.1). */
  configChanged(): void
  /** An error the device cannot recover from: DEVICE_NEEDS_RESET (§2.1.2); the device stops. */
  fail(error: unknown): void
}

/**
 * A virtio device independent of its transport (§5): the transport owns status, features, queue
 * registers and interrupts, and calls these. Nothing here may throw into the transport for a
 * guest's mistake: a device fails the request or calls `context.fail`.
 */
export interface VirtioDevice {
  /** Device type id (§5). */
  readonly deviceType: number
  /** The largest size of each queue; the number of entries is the number of queues. */
  readonly queueSizes: readonly number[]
  /** Device-specific feature bits offered; the transport adds VERSION_1, INDIRECT_DESC and EVENT_IDX. */
  readonly features: bigint
  /** Reads device configuration space (§4.2.2 offset 0x100 on). Bytes past its end read as 0. */
  readConfig(offset: number, data: Uint8Array): void
  writeConfig(offset: number, data: Uint8Array): void
  /**
   * Before the vCPUs first run (the component's Startable.start): wait until host resources are
   * ready, e.g. a socket listens. A rejection fails the start with its error, before the guest runs.
   */
  ready?(): void | Promise<void>
  /** The driver set DRIVER_OK with these queues and features. */
  activate(context: DeviceContext): void
  /** The driver notified queue `index` (§2.7.13.4). Only called while activated. */
  notify(index: number): void
  /** The driver reset the device (§2.1.2 / §4.2.3.1): forget the context and everything in flight. */
  reset(): void
  /**
   * The machine is pausing (the transport already holds doorbells and interrupts): stop touching
   * guest memory from host-side sources (a TAP, sockets, console input) and resolve once work
   * started before the pause (block I/O in flight) has finished. Until `resume`, the device must
   * not write guest memory; host input is held or left in the host's buffers.
   */
  pause?(): void | Promise<void>
  /** Go on from where `pause` stopped, in order: held input first reaches the guest now. */
  resume?(): void
  /**
   * The device's own state for a snapshot of a paused machine (plain data), beyond what the
   * transport saves; a device without it cannot be snapshotted while live. restoreState gets it
   * back, untrusted, right after the restored transport activated the device.
   */
  saveState?(): unknown
  restoreState?(state: SavedState): void
  /** Release host resources (files, sockets); called once when the machine goes away. */
  dispose?(): void | Promise<void>
}

/**
 * Takes every available chain of queue `index`, hands it to `handle` (which returns the bytes it
 * wrote into the chain, or undefined to keep the chain for later completion), returns it to the
 * driver and signals once at the end. A malformed ring or chain fails the device; nothing throws.
 */
export function drainQueue(
  context: DeviceContext,
  index: number,
  handle: (chain: DescriptorChain) => number | undefined,
): void {
  const queue = context.queues[index]
  if (!context.active || !queue?.ready) return
  let used = false
  try {
    for (let chain = queue.pop(context.memory); chain; chain = queue.pop(context.memory)) {
      const written = handle(chain)
      if (written !== undefined) {
        queue.addUsed(context.memory, chain.head, written)
        used = true
      }
    }
  } catch (e) {
    context.fail(e)
    return
  }
  if (used) context.signalUsed(index)
}

/**
 * Takes one chain from queue `index` for a device that fills buffers only when it has something to
 * put in them (received packets, console input); undefined when none, or when the ring is bad (the
 * device then fails).
 */
export function takeChain(context: DeviceContext, index: number): DescriptorChain | undefined {
  const queue = context.queues[index]
  if (!context.active || !queue?.ready) return undefined
  try {
    return queue.pop(context.memory)
  } catch (e) {
    context.fail(e)
    return undefined
  }
}

/** Returns a chain kept by `drainQueue` (an asynchronous completion) and signals the driver. */
export function completeChain(context: DeviceContext, index: number, head: number, written: number): void {
  const queue = context.queues[index]
  if (!context.active || !queue?.ready) return
  try {
    queue.addUsed(context.memory, head, written)
  } catch (e) {
    context.fail(e)
    return
  }
  context.signalUsed(index)
}
