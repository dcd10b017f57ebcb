import { randomFillSync } from 'node:crypto'
import type { SavedState } from '@vmm/core'
import { type DeviceContext, drainQueue, type VirtioDevice } from '../../device.js'
import { views } from '../../queue/buffers.js'
import { DeviceType } from '../../spec.js'

/** The most entropy one request gets; Linux asks for far less, and a huge buffer must not stall the loop. */
export const RNG_MAX_REQUEST = 64 * 1024

/**
 * virtio-rng, the entropy device (§5.4): one request queue whose writable buffers the device fills
 * with host randomness (crypto.randomFillSync, the kernel's CSPRNG), straight into guest memory.
 */
export class RngDevice implements VirtioDevice {
  readonly deviceType = DeviceType.ENTROPY
  readonly queueSizes = [256]
  readonly features = 0n
  private context: DeviceContext | undefined

  readConfig(): void {}
  writeConfig(): void {}

  activate(context: DeviceContext): void {
    this.context = context
  }

  notify(): void {
    const context = this.context
    if (!context) return
    drainQueue(context, 0, (chain) => {
      let written = 0
      for (const view of views(context.memory, chain.writable, 0, RNG_MAX_REQUEST)) {
        randomFillSync(view)
        written += view.length
      }
      return written
    })
  }

  reset(): void {
    this.context = undefined
  }

  // A snapshot needs nothing of its own: every request is answered at once (nothing in flight),
  // and the queue's indices are the transport's. Note that a restored clone then draws fresh host
  // entropy for every new request, whatever its siblings drew.
  saveState(): Record<string, never> {
    return {}
  }

  restoreState(state: SavedState): void {
    state.only()
  }
}
