// A PCI function's saved state (for Snapshottable components on a host bridge): its configuration
// space as the guest and the device left it (Command, the BAR values the guest programmed, every
// capability's registers, MSI's pending bits), the level the device drives INTx at, and the MSI-X
// table and PBA. What the guest cannot write is the device's identity and layout; a saved space
// that differs there is another device's (or another version's), and is refused naming the offset.
import { hex, type SavedState } from '@vmm/core'
import type { ConfigSpace } from './config-space.js'
import type { MsixState } from './msi.js'

export interface PciFunctionState {
  /** The whole configuration space (256 bytes, 4 KiB for PCI Express). */
  config: Uint8Array
  /** The device asserts INTx (PciDevice.setIntx). */
  intx: boolean
  msix: MsixState | null
}

/**
 * Checks `saved` against `config`: every bit software cannot write (neither wmask nor w1cmask)
 * and the device model does not set itself (`deviceOwned`, e.g. Status.InterruptStatus) must be
 * what this function has. Throws through `s`, naming the first offset that differs.
 */
export function checkReadOnlyBits(
  config: ConfigSpace,
  saved: Uint8Array,
  deviceOwned: Uint8Array,
  s: SavedState,
): void {
  for (let at = 0; at < config.size; at++) {
    const fixed = ~(config.wmask[at]! | config.w1cmask[at]! | deviceOwned[at]!) & 0xff
    if ((saved[at]! ^ config.bytes[at]!) & fixed)
      s.refuse(
        'config',
        `byte ${hex(at)} is ${hex(saved[at]!)}, this function's read-only bits there are ${hex(config.bytes[at]! & fixed)} (mask ${hex(fixed)}): the state of another device?`,
      )
  }
}
